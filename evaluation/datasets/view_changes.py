"""Changes of a camera's whole view applied to recorded frames: a covered lens, a moved camera, lost
focus, a lighting jump, a frozen or a black stream, a slow creep. The scene guard's tests and
``occ-bench guard --ped2`` inject them into real footage with :func:`injected`. (The walkway day
draws its own changes into the scene before the sensor noise: :mod:`.walkway_day`.)

Each takes a stack of uint8 frames (``N×H×W``) and returns a new one of the same shape.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

Change = Callable[[np.ndarray], np.ndarray]


def covered(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """A hand over the lens: a dark, flat frame with the sensor's noise."""
    noise = np.random.default_rng(seed).normal(0, 2.0, frames.shape)
    return np.clip(12 + noise, 0, 255).astype(np.uint8)


def shifted(frames: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The camera moved: the view shifted by whole pixels (a moved camera blurs nothing), the edge reflected."""
    matrix = np.float32([[1, 0, round(dx)], [0, 1, round(dy)]])
    return np.stack([cv2.warpAffine(f, matrix, (f.shape[1], f.shape[0]), borderMode=cv2.BORDER_REFLECT) for f in frames])


def blurred(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Lost focus: a Gaussian blur of ``sigma`` pixels."""
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in frames])


def gained(frames: np.ndarray, gain: float) -> np.ndarray:
    """A lighting jump: every pixel times ``gain``, clipped."""
    return np.clip(frames.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def frozen(frames: np.ndarray) -> np.ndarray:
    """A frozen stream: the first frame, repeated."""
    return np.repeat(frames[:1], len(frames), axis=0)


def black(frames: np.ndarray) -> np.ndarray:
    """A black stream (a dead sensor, a cut cable behind an encoder)."""
    return np.zeros_like(frames)


def crept(frames: np.ndarray, per_minute: float, fps: float = 10.0) -> np.ndarray:
    """A camera creeping sideways by ``per_minute`` of the width per minute, from the first frame on,
    linearly interpolated in floats (OpenCV's warpAffine moves in steps of 1/32 pixel)."""
    width = frames.shape[2]
    out = []
    for i, frame in enumerate(frames.astype(np.float32)):
        x = np.clip(np.arange(width) + per_minute * width * i / (60 * fps), 0, width - 1)
        left = np.minimum(x.astype(int), width - 2)
        weight = x - left
        out.append(frame[:, left] * (1 - weight) + frame[:, left + 1] * weight)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def injected(frames: np.ndarray, at: int, change: Change) -> np.ndarray:
    """A copy of ``frames`` with ``change`` applied from frame ``at`` on."""
    out = frames.copy()
    out[at:] = change(frames[at:])
    return out
