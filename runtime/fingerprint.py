"""A content fingerprint of footage: which frames a model was trained on, small enough to ship in
its manifest, so that ``occ calibrate`` can refuse to set thresholds on the model's own training
frames (thresholds from frames a model has fit flag the rest of the world).

Design:

- **One 64-bit hash per frame.** The frame's luma (BT.601, as the preprocessing computes it) is
  averaged over a 16 × 16 grid of cells (rows and columns past a multiple of 16 are left out) and
  each cell mean is quantized to 64 levels (steps of 4 grey values); BLAKE2b of those 256 bytes,
  cut to 8 bytes, is the hash. Decoding the same file again gives the same pixels, so the same
  hash; sensor noise, moving people and lighting make frames captured at other times differ in
  some cell, so two captures of a static scene rarely share one. It is not a perceptual hash:
  re-encoded, resized or cropped copies of the training footage are not recognized. The guard is
  for the mistake the issue names (the training folder or clip given again), not for evasion.
- **A bottom-k sketch of the set.** Of the distinct hashes of all training frames only the
  :data:`SKETCH_SIZE` smallest are kept (22 KB of base64 in the manifest, whatever the footage's length).
  Every training hash below the largest kept one is kept, so a frame whose hash falls below it is
  a training frame exactly when its hash is in the sketch: the share of such frames among new
  footage estimates, without bias, the share of training frames in it (Broder's containment
  estimate). With fewer distinct training frames than the sketch holds, all are kept and the
  test is exact for every frame.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Iterable

import numpy as np

from .preprocess.reference import to_gray

GRID = 16
QUANTUM = 4  # grey values per quantization step
SKETCH_SIZE = 2048
SCHEME = f"blake2b-64 of a {GRID}x{GRID} luma grid quantized in steps of {QUANTUM}, bottom-{SKETCH_SIZE} sketch"
# New footage at least this share of whose checked frames are training frames is training footage.
TRAINING_SHARE = 0.5


def frame_hash(frame: np.ndarray) -> int:
    """The frame's 64-bit content hash (see the module docstring); ``frame`` is uint8 grey or BGR(A)."""
    gray = to_gray(frame)
    rows, cols = min(GRID, gray.shape[0]), min(GRID, gray.shape[1])
    height, width = gray.shape[0] // rows * rows, gray.shape[1] // cols * cols
    cells = gray[:height, :width].reshape(rows, height // rows, cols, width // cols).mean(axis=(1, 3))
    levels = np.floor(cells / QUANTUM).astype(np.uint8)
    return int.from_bytes(hashlib.blake2b(levels.tobytes(), digest_size=8).digest(), "little")


@dataclass
class Fingerprint:
    """A bottom-k sketch of footage's frame hashes (what the manifest stores under
    ``training.footage``).

    Args:
        frames: frames hashed.
        distinct: distinct hashes among them.
        sketch: the smallest distinct hashes (at most :data:`SKETCH_SIZE`), sorted, as base64 of
            little-endian uint64.
        scheme: how the hashes were made.
    """

    frames: int
    distinct: int
    sketch: str
    scheme: str = SCHEME

    @classmethod
    def of(cls, frames: Iterable[np.ndarray]) -> "Fingerprint":
        """The fingerprint of every frame in ``frames`` (uint8 grey or BGR images, any number of clips)."""
        hashes = [frame_hash(frame) for frame in frames]
        distinct = np.unique(np.array(hashes, np.uint64))
        kept = distinct[:SKETCH_SIZE].astype("<u8")
        return cls(frames=len(hashes), distinct=int(len(distinct)), sketch=base64.b64encode(kept.tobytes()).decode("ascii"))

    @classmethod
    def from_dict(cls, data: Any) -> "Fingerprint | None":
        """The fingerprint a manifest stored, or None where it has none (or one of another scheme)."""
        if not isinstance(data, dict) or data.get("scheme") != SCHEME:
            return None
        try:
            return cls(frames=int(data["frames"]), distinct=int(data["distinct"]), sketch=str(data["sketch"]))
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hashes(self) -> np.ndarray:
        return np.frombuffer(base64.b64decode(self.sketch), "<u8").astype(np.uint64)

    def overlap(self, hashes: Iterable[int]) -> "Overlap":
        """How many of the frames with these hashes the sketch can check, and how many of those are
        training frames."""
        kept = self.hashes()
        values = np.array(list(hashes), np.uint64)
        complete = self.distinct <= len(kept)
        checked = values if complete or not len(kept) else values[values <= kept[-1]]
        return Overlap(frames=int(len(values)), checked=int(len(checked)), training=int(np.isin(checked, kept).sum()))


@dataclass
class Overlap:
    """New footage against a training fingerprint.

    Args:
        frames: frames of the new footage.
        checked: those the sketch can say yes or no for (all, when the sketch holds every training
            hash).
        training: checked frames that are training frames.
    """

    frames: int
    checked: int
    training: int

    @property
    def share(self) -> float | None:
        """The estimated share of training frames in the new footage (None: none could be checked)."""
        return self.training / self.checked if self.checked else None

    @property
    def is_training_footage(self) -> bool:
        share = self.share
        return share is not None and share >= TRAINING_SHARE
