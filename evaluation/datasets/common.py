"""The clip record every reader returns."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetError(ValueError):
    """Data that cannot be read; the message names the file and the problem in one line."""


@dataclass
class Clip:
    """One video clip.

    Attributes:
        name: the clip's folder or file name (``Test001``).
        frames: ``(T, H, W)`` uint8 gray frames.
        labels: ``(T,)`` bool frame labels (True = anomalous), or None for unlabelled clips.
        masks: ``(T, H, W)`` bool pixel ground truth, or None where the data has none.
        fps: the frame rate the clip was recorded at (frames per second), or None where the
            reader does not know it; it turns frame counts into time (false alarms per hour).
    """

    name: str
    frames: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    fps: float | None = None

    def __len__(self) -> int:
        return len(self.frames)


def data_name(text: str) -> str:
    """Footage's name as a model's manifest may record it: a path becomes its last part (the
    training machine's folders ship inside every model and say nothing on the camera), a URL loses
    its user and password; other specs (``walkway:seed=3``) stay as they are."""
    if text.startswith("file://"):
        return data_name(text[len("file://"):])
    if "://" in text:
        return re.sub(r"//[^/@]*@", "//", text)
    if "/" in text or "\\" in text:
        return Path(text.replace("\\", "/").rstrip("/")).name or text
    return text


def labels_from_ranges(ranges: list[tuple[int, int]], length: int) -> np.ndarray:
    """Frame labels from 1-based inclusive ranges (the UCSD ``gt_frame`` convention)."""
    labels = np.zeros(length, bool)
    for first, last in ranges:
        labels[first - 1 : last] = True
    return labels


def ranges_from_labels(labels: np.ndarray) -> list[tuple[int, int]]:
    """1-based inclusive ranges of True runs in ``labels``."""
    padded = np.r_[False, np.asarray(labels, bool), False].astype(np.int8)
    edges = np.diff(padded)
    starts = np.nonzero(edges == 1)[0]
    stops = np.nonzero(edges == -1)[0]
    return [(int(a) + 1, int(b)) for a, b in zip(starts, stops)]


def clip_rows(train: list[Clip], test: list[Clip], kinds: list[str] | None = None) -> list[dict]:
    """One summary row per clip: split, name, frames, size, anomalous frames, pixel masks."""
    rows = []
    for split, clips in (("train", train), ("test", test)):
        for i, clip in enumerate(clips):
            rows.append({"split": split, "clip": clip.name, "frames": len(clip), "size": f"{clip.frames.shape[1]}x{clip.frames.shape[2]}",
                         "anomalous_frames": int(clip.labels.sum()) if clip.labels is not None else None,
                         "pixel_masks": clip.masks is not None, "anomaly": kinds[i] if kinds and split == "test" else ""})
    return rows
