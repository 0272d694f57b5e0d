"""The preprocessing reference (numpy): the single definition that training and every runtime path
(CPU, CUDA kernels, Triton client) are checked against.

Order of operations for one raw frame ``F_t`` (uint8, gray or BGR):

1. ``G_t = luma(F_t)`` (OpenCV BGR→GRAY, BT.601 weights), kept in float32;
2. ``I_t = resize(G_t, (height, width))`` in float32 (OpenCV INTER_LINEAR by default);
3. temporal rule, in 0..255 units:
   - ``none``: ``X_t = ⟨I_t⟩``;
   - ``avid_triplet``: ``I'_t = (I_t + I_{t-1}) / 2`` and ``X_t = ⟨I'_{t-4}, I'_{t-2}, I'_t⟩``;
   - ``frame_diff``: ``X_t = ⟨I_t, I_t − I_{t-1}⟩`` (signed, so a patch also sees which way
     things move);
   at the start of a clip missing frames are the first frame (``I_{-k} := I_0``, ``I'_{-k} := I'_0``),
   so every frame gets a score;
4. normalization ``(v − norm_mean) / norm_std`` (0..255 → −1..1 by default); a difference
   channel is only divided by ``norm_std`` (it is already centred on zero).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from ..manifest import InputSpec, PatchSpec

_CV_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
# Offsets (frames back from t) of the three AVID channels, oldest first.
AVID_OFFSETS = (4, 2, 0)


class FrameError(ValueError):
    """A frame has a shape or type the preprocessing cannot take."""


def to_gray(frame: np.ndarray) -> np.ndarray:
    """Luma of a uint8 frame (H×W, H×W×1, H×W×3 BGR or H×W×4 BGRA) as float32 H×W."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise FrameError(f"frames must be uint8 numpy arrays, got {getattr(frame, 'dtype', type(frame))}")
    if frame.ndim == 2:
        return frame.astype(np.float32)
    if frame.ndim == 3 and frame.shape[2] == 1:
        return frame[:, :, 0].astype(np.float32)
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        b, g, r = (frame[:, :, i].astype(np.float32) for i in range(3))
        # BT.601, as cv2.COLOR_BGR2GRAY, but kept in float so no rounding happens before resize.
        return 0.114 * b + 0.587 * g + 0.299 * r
    raise FrameError(f"frame shape {frame.shape} is not H×W, H×W×1, H×W×3 or H×W×4")


def nv12_to_gray(buffer: np.ndarray, height: int, width: int, full_range: bool = False) -> np.ndarray:
    """The luma plane of a packed NV12 buffer (``height * 3 / 2`` rows of ``width`` bytes) as uint8.

    NV12 (what Jetson cameras deliver) is usually limited range (16..235); unless ``full_range``,
    it is expanded to 0..255 and rounded, so it matches the luma of the same scene as BGR.
    """
    if buffer.dtype != np.uint8 or buffer.size != height * width * 3 // 2:
        raise FrameError(f"an NV12 {height}x{width} frame is {height * width * 3 // 2} uint8 bytes, "
                         f"got {buffer.size} of {buffer.dtype}")
    luma = buffer.reshape(-1)[: height * width].reshape(height, width).astype(np.float32)
    if full_range:
        return luma.astype(np.uint8)
    return np.clip(np.rint((luma - 16.0) * np.float32(255.0 / 219.0)), 0, 255).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int, interpolation: str = "bilinear") -> np.ndarray:
    """Resize a float32 H×W image; a no-op when the size already matches."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=False)
    return cv2.resize(image, (width, height), interpolation=_CV_INTERPOLATION[interpolation])


def channel_means(spec: InputSpec) -> np.ndarray:
    """The value subtracted from each channel before dividing by ``norm_std``."""
    means = np.full(spec.channels, spec.norm_mean, np.float32)
    if spec.temporal == "frame_diff":
        means[1] = 0.0
    return means


def normalize(stacked: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Step 4 on ``(..., C, H, W)`` values in 0..255 units."""
    means = channel_means(spec)[:, None, None]
    return ((stacked - means) / np.float32(spec.norm_std)).astype(np.float32)


def resize_frame(frame: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Steps 1–2 of the reference: luma, then resize to the network size (float32, 0..255)."""
    return resize(to_gray(frame), spec.height, spec.width, spec.interpolation)


def stack_clip(resized: np.ndarray, temporal: str) -> np.ndarray:
    """Step 3 for a whole clip at once: ``(T, H, W)`` resized frames → ``(T, C, H, W)``, 0..255."""
    if resized.ndim != 3:
        raise FrameError(f"a clip must be T×H×W, got shape {resized.shape}")
    resized = resized.astype(np.float32, copy=False)
    if temporal == "none":
        return resized[:, None]
    if temporal == "frame_diff":
        previous = np.concatenate([resized[:1], resized[:-1]], axis=0)
        return np.stack([resized, resized - previous], axis=1)
    if temporal == "avid_triplet":
        averaged = averaged_frames(resized)
        return np.stack([avid_triplet(averaged, t) for t in range(len(averaged))])
    raise FrameError(f"unknown temporal rule {temporal!r}")


def averaged_frames(resized: np.ndarray) -> np.ndarray:
    """AVID's ``I'_t = (I_t + I_{t−1}) / 2`` of a clip ``(T, H, W)`` (``I_{−1} := I_0``), in the input's units."""
    resized = resized.astype(np.float32, copy=False)
    previous = np.concatenate([resized[:1], resized[:-1]], axis=0)
    return (resized + previous) * np.float32(0.5)


def normalized_averages(frames: np.ndarray | list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Steps 1–2, AVID's averaging and step 4 for a whole clip: the normalized ``I'`` sequence
    ``(T, H, W)`` its triplets are cut from (training stores clips this way, a third of the size)."""
    averaged = averaged_frames(np.stack([resize_frame(f, spec) for f in frames]))
    return ((averaged - np.float32(spec.norm_mean)) / np.float32(spec.norm_std)).astype(np.float32)


def avid_triplet(averaged: np.ndarray, t: int, offsets: tuple[int, ...] = AVID_OFFSETS) -> np.ndarray:
    """``⟨I'_{t−4}, I'_{t−2}, I'_t⟩`` from averaged frames ``(T, H, W)``, missing ones clamped to
    the first frame; other ``offsets`` give other strides (training's synthetic fast motion)."""
    return np.stack([averaged[max(t - k, 0)] for k in offsets])


def preprocess_clip(frames: np.ndarray | list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """The whole reference for a clip: raw frames → normalized ``(T, C, H, W)`` float32."""
    resized = np.stack([resize_frame(f, spec) for f in frames]) if len(frames) else np.zeros((0, spec.height, spec.width), np.float32)
    return normalize(stack_clip(resized, spec.temporal), spec)


class FramePreprocessor:
    """Streaming form of :func:`preprocess_clip`: push frames one at a time, get ``(C, H, W)``.

    Holds only the few resized frames the temporal rule needs. Call :meth:`reset` at a clip
    boundary or after a stream reconnects.
    """

    def __init__(self, spec: InputSpec):
        spec.validate()
        self.spec = spec
        self._previous: np.ndarray | None = None
        self._averages: deque[np.ndarray] = deque(maxlen=max(AVID_OFFSETS) + 1)

    def reset(self) -> None:
        self._previous = None
        self._averages.clear()

    def push(self, frame: np.ndarray) -> np.ndarray:
        current = resize_frame(frame, self.spec)
        previous = current if self._previous is None else self._previous
        self._previous = current
        temporal = self.spec.temporal
        if temporal == "none":
            stacked = current[None]
        elif temporal == "frame_diff":
            stacked = np.stack([current, current - previous])
        else:
            self._averages.append((current + previous) * np.float32(0.5))
            stacked = avid_triplet(self._averages, len(self._averages) - 1)
        return normalize(stacked, self.spec)


@dataclass(frozen=True)
class PatchGrid:
    """Where ALOCC cuts its patches on the resized frame (origins: :meth:`PatchSpec.origins`)."""

    tops: tuple[int, ...]
    lefts: tuple[int, ...]
    size: int

    @classmethod
    def from_spec(cls, patches: PatchSpec, spec: InputSpec) -> "PatchGrid":
        tops, lefts = patches.origins(spec)
        return cls(tops=tops, lefts=lefts, size=patches.size)

    @property
    def rows(self) -> int:
        return len(self.tops)

    @property
    def cols(self) -> int:
        return len(self.lefts)

    @property
    def count(self) -> int:
        return self.rows * self.cols

    def boxes(self) -> np.ndarray:
        """``(count, 4)`` int array of ``[top, left, bottom, right]`` per patch, row-major."""
        tops, lefts = np.meshgrid(self.tops, self.lefts, indexing="ij")
        tops, lefts = tops.ravel(), lefts.ravel()
        return np.stack([tops, lefts, tops + self.size, lefts + self.size], axis=1)

    def extract(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` → ``(count, C, size, size)``, row-major over the grid."""
        s = self.size
        return np.stack([image[:, t : t + s, l : l + s] for t in self.tops for l in self.lefts])

    def extract_clip(self, images: np.ndarray) -> np.ndarray:
        """``(T, C, H, W)`` → ``(T, count, C, size, size)``."""
        s = self.size
        return np.stack([images[:, :, t : t + s, l : l + s] for t in self.tops for l in self.lefts], axis=1)

    def to_map(self, patch_values: np.ndarray) -> np.ndarray:
        """Per-patch values ``(..., count)`` → ``(..., rows, cols)``."""
        return patch_values.reshape(*patch_values.shape[:-1], self.rows, self.cols)

    def paint(self, patch_values: np.ndarray, height: int, width: int) -> np.ndarray:
        """Pixel map where each pixel holds the maximum value of the patches covering it (NaN if none)."""
        out = np.full((height, width), -np.inf, np.float32)
        for value, (t, l, b, r) in zip(patch_values, self.boxes()):
            np.maximum(out[t:b, l:r], value, out=out[t:b, l:r])
        out[np.isneginf(out)] = np.nan
        return out

