"""Overlays of scores, masks and boxes on frames, drawn with OpenCV (no plotting library on a camera box)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..manifest import Manifest
from ..scoring.decide import FrameResult, frame_threshold
from ..scoring.zones import Zone
from .sinks import SinkHealth


def render_overlay(frame: np.ndarray, result: FrameResult, manifest: Manifest, zones: list[Zone] | tuple = ()) -> np.ndarray:
    """BGR frame with, where the model flags, a heat-map of its location scores, the mask's contour
    and one box per flagged object; the score and the threshold it is held against in the corner;
    the outline of each zone (ignore zones grey, sensitivity zones blue).

    Normal frames stay unpainted but for the zone outlines, so that colour inside a zone never
    means "flagged here".
    """
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height, width = gray.shape
    canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if result.mask is not None and result.mask.any():
        flagged = cv2.resize(result.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
        heat = cv2.applyColorMap(_heat(result.location_scores, width, height), cv2.COLORMAP_JET)
        blended = cv2.addWeighted(canvas, 0.55, heat, 0.45, 0)
        canvas[flagged] = blended[flagged]
        contours, _ = cv2.findContours(flagged.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, (0, 0, 255), 1)
    for x1, y1, x2, y2 in result.boxes:  # source-frame pixels
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 255), 1)
    for zone in zones:  # source-frame pixels, as configured
        corners = np.round(np.asarray(zone.points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [corners], True, ZONE_COLOURS[zone.ignore], 1, cv2.LINE_8)
    _legend(canvas, result, frame_threshold(manifest))
    return canvas


ZONE_COLOURS = {True: (160, 160, 160), False: (255, 128, 0)}  # BGR: ignore zones grey, sensitivity zones blue


def _heat(location_scores: np.ndarray, width: int, height: int) -> np.ndarray:
    """Location scores scaled to 0–255 over the frame's own range, at the frame's size."""
    scores = np.nan_to_num(np.asarray(location_scores, np.float32), nan=0.0)
    low, high = float(scores.min()), float(scores.max())
    heat = np.zeros_like(scores) if high <= low else (scores - low) / (high - low)
    return cv2.resize((heat * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)


def _legend(canvas: np.ndarray, result: FrameResult, threshold: float) -> None:
    """``score 0.83 / threshold 0.61`` on a dark strip in the top-left corner, red when flagged."""
    text = f"score {result.score:.2f} / threshold {threshold:.2f}"
    scale = max(0.3, min(0.5, canvas.shape[1] / 500))
    (text_width, text_height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, 0), (text_width + 6, text_height + baseline + 6), (0, 0, 0), -1)
    colour = (0, 0, 255) if result.decision else (0, 200, 0)
    cv2.putText(canvas, text, (3, text_height + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


class OverlayWriter:
    """Writes overlays to a folder of PNGs, or to an MJPG ``.avi`` when the path ends so.

    The output is checked when the writer is made (a folder that cannot be written fails then, in
    one line); a frame that cannot be written later (disk full) is skipped and counted.
    """

    def __init__(self, path: str | Path, manifest: Manifest, fps: float = 10.0, on_error=None, zones: list[Zone] | tuple = ()):
        self.path = Path(path)
        self.manifest = manifest
        self.zones = list(zones)  # outlined on every frame
        self.fps = fps
        self._video: cv2.VideoWriter | None = None
        self._count = 0
        if self.path.suffix.lower() not in (".avi", ""):
            raise ValueError(f"{self.path}: overlay output must be a .avi file or a folder")
        folder = self.path if self.path.suffix.lower() != ".avi" else self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "not writable", str(folder))
        self.health = SinkHealth(str(self.path), on_error)

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        image = render_overlay(frame, result, self.manifest, self.zones)
        if self.path.suffix.lower() == ".avi":
            if self._video is None:
                self._video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"MJPG"), self.fps,
                                              (image.shape[1], image.shape[0]))
                if not self._video.isOpened():
                    self._video = None
                    raise OSError(5, "OpenCV cannot write this video", str(self.path))
            self._video.write(image)  # OpenCV reports no write errors for video; the file's size tells
        elif cv2.imwrite(str(self.path / f"{self._count:06d}.png"), image):
            self.health.recovered()
        else:
            self.health.failed(OSError(28, "image not written (disk full or not writable?)"), "overlay frame skipped; ")
        self._count += 1

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
