"""The clip record every reader returns."""
from __future__ import annotations

from dataclasses import dataclass

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
    """

    name: str
    frames: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frames)


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
