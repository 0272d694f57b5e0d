"""Overlays of scores, masks and boxes on frames, drawn with OpenCV (no plotting library on a camera box)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..manifest import Manifest
from ..scoring.decide import FrameResult
from .sinks import SinkHealth


def render_overlay(frame: np.ndarray, result: FrameResult, manifest: Manifest) -> np.ndarray:
    """BGR frame with a heat-map of location scores, the mask contour, boxes and the score."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    height, width = gray.shape
    canvas = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    scores = np.nan_to_num(np.asarray(result.location_scores, np.float32), nan=0.0)
    low, high = float(scores.min()), float(scores.max())
    heat = np.zeros_like(scores) if high <= low else (scores - low) / (high - low)
    heat = cv2.resize((heat * 255).astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    canvas = cv2.addWeighted(canvas, 0.7, cv2.applyColorMap(heat, cv2.COLORMAP_JET), 0.3, 0)
    if result.mask is not None and result.mask.any():
        mask = cv2.resize(result.mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, (0, 0, 255), 1)
    for x1, y1, x2, y2 in result.boxes:  # source-frame pixels
        cv2.rectangle(canvas, (x1, y1), (x2 - 1, y2 - 1), (0, 255, 255), 1)
    colour = (0, 0, 255) if result.decision else (0, 200, 0)
    cv2.putText(canvas, f"{result.score:.2f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return canvas


class OverlayWriter:
    """Writes overlays to a folder of PNGs, or to an MJPG ``.avi`` when the path ends so.

    The output is checked when the writer is made (a folder that cannot be written fails then, in
    one line); a frame that cannot be written later (disk full) is skipped and counted.
    """

    def __init__(self, path: str | Path, manifest: Manifest, fps: float = 10.0, on_error=None):
        self.path = Path(path)
        self.manifest = manifest
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
        image = render_overlay(frame, result, self.manifest)
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
