"""Normal training samples, and synthetic irregularities made from them (AVID regions, ALOCC patches).

AVID trains on normal data only. Its inpainter is meant to remove irregularities and its
detector to find them, yet neither sees one in training, and measured on the walkway the detector
learnt to spot inpainting artefacts instead (region AUC 0.59–0.76). So, besides the paper's
objective, training pastes synthetic irregularities made from the normal data itself into some
inputs, with per-cell labels:

- ``fast``: a region whose temporal channels come from a 2–3× longer frame stride (the same place
  moving faster than anything normal there);
- ``reverse``: a region whose temporal channels are in reverse order (motion against the flow);
- ``foreign``: a region copied from another frame and another place (something out of place);
- ``flip`` (single images): a region flipped upside down and left to right.

Video draws ``fast``, ``reverse`` and ``foreign``; single images ``flip`` and ``foreign``.

D learns to score those cells irregular (besides real vs inpainted), and I learns to inpaint them
back to the clean input. Test data is never involved.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from occ.runtime.preprocess import AVID_OFFSETS, PatchGrid, avid_triplet

VIDEO_KINDS = ("fast", "reverse", "foreign")
IMAGE_KINDS = ("flip", "foreign")
MOTION_KINDS = ("fast", "reverse")  # ALOCC patches, see motion_patches


@dataclass
class SampleStore:
    """Normal samples addressed by row: ``(clip, t)`` of averaged-frame sequences, or image rows.

    Attributes:
        sequences: per clip, normalized averaged frames ``I'`` ``(T, H, W)`` (video), else None.
        index: ``(N, 2)`` rows of ``(clip, t)`` for video, ``(N, 1)`` rows for images.
        images: ``(N, C, H, W)`` normalized images, else None.
    """

    sequences: list[np.ndarray] | None
    index: np.ndarray
    images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def triplet(self, clip: int, t: int, offsets: tuple[int, ...] = AVID_OFFSETS) -> np.ndarray:
        return avid_triplet(self.sequences[clip], t, offsets)

    def inputs(self, rows: np.ndarray) -> np.ndarray:
        """The normal network inputs of the given rows, ``(B, C, H, W)``."""
        if self.images is not None:
            return self.images[self.index[rows, 0]]
        return np.stack([self.triplet(c, t) for c, t in self.index[rows]])


class IrregularityMaker:
    """Pastes synthetic irregular regions into a batch and returns per-cell normality labels.

    Args:
        store: where the normal samples (and foreign content) come from.
        cell: region cell of the detector, pixels.
        probability: fraction of samples that get irregular regions.
        max_regions: most regions per sample.
        rng: random generator (seeded by the training loop).
        min_change: mean absolute change (normalized units) that makes a cell irregular.
        kinds: which irregularities to draw from (None: ``VIDEO_KINDS`` for video, ``IMAGE_KINDS``
            for single images).
    """

    def __init__(self, store: SampleStore, cell: int, probability: float, max_regions: int, rng: np.random.Generator,
                 min_change: float = 0.02, kinds: tuple[str, ...] | None = None):
        self.store, self.cell, self.probability, self.max_regions, self.rng = store, cell, probability, max_regions, rng
        self.min_change = min_change
        images = store.images is not None
        allowed = IMAGE_KINDS if images else VIDEO_KINDS
        unknown = set(kinds or ()) - set(allowed)
        if unknown:
            raise ValueError(f"unknown AVID irregularity kind(s) {sorted(unknown)} for {'single images' if images else 'video'}; "
                             f"choose from {list(allowed)}")
        self.kinds = tuple(kinds) if kinds else allowed

    def __call__(self, rows: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(pseudo inputs, labels)``; labels ``(B, H/cell, W/cell)`` are 1 for normal cells, 0 for irregular."""
        batch, _, height, width = clean.shape
        pseudo = clean.copy()
        for b in range(batch):
            if self.rng.random() >= self.probability:
                continue
            for _ in range(self.rng.integers(1, self.max_regions + 1)):
                h = int(self.rng.integers(self.cell, min(4 * self.cell, height) + 1))
                w = int(self.rng.integers(self.cell, min(4 * self.cell, width) + 1))
                top, left = int(self.rng.integers(0, height - h + 1)), int(self.rng.integers(0, width - w + 1))
                kind = self.kinds[self.rng.integers(len(self.kinds))]
                pseudo[b, :, top : top + h, left : left + w] = self._content(kind, rows[b], clean[b], top, left, h, w)
        # A cell is irregular only where the pasted content visibly differs: a 'fast' or 'reverse'
        # region over static background changes nothing and stays labelled normal.
        change = np.abs(pseudo - clean).mean(axis=1)
        cells = change.reshape(batch, height // self.cell, self.cell, width // self.cell, self.cell).mean(axis=(2, 4))
        return pseudo, (cells < self.min_change).astype(np.float32)

    def _content(self, kind: str, row: int, clean: np.ndarray, top: int, left: int, h: int, w: int) -> np.ndarray:
        region = (slice(None), slice(top, top + h), slice(left, left + w))
        if kind == "flip":
            return clean[region][:, ::-1, ::-1]
        if kind == "foreign":
            other = self.store.inputs(np.array([self.rng.integers(len(self.store))]))[0]
            src_top = int(self.rng.integers(0, clean.shape[1] - h + 1))
            src_left = int(self.rng.integers(0, clean.shape[2] - w + 1))
            return other[:, src_top : src_top + h, src_left : src_left + w]
        clip, t = self.store.index[row]
        if kind == "reverse":
            return clean[region][::-1]
        stride = int(self.rng.integers(2, 4))  # 2–3× the normal temporal stride
        offsets = tuple(k * stride for k in AVID_OFFSETS)
        return self.store.triplet(clip, t, offsets)[region]


def motion_patches(frames: np.ndarray, grid: PatchGrid, count: int, rng: np.random.Generator,
                   kinds: tuple[str, ...] = ("fast",), strides: tuple[int, ...] = (3, 4),
                   min_change: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """ALOCC's synthetic irregularities: patches whose motion is not the scene's.

    ``fast``: the motion channel spans ``k`` frames instead of one, ``I_t − I_{t−k}``;
    ``reverse``: time runs backwards, ``⟨I_{t−1}, I_{t−1} − I_t⟩``.

    Args:
        frames: one clip's normalized ``⟨I_t, I_t − I_{t−1}⟩`` frames, ``(T, 2, H, W)``; the appearance
            channel's normalization cancels in a difference, so ``I_t − I_{t−k}`` comes from it.
        grid: where the patches are.
        count: most patches to return.
        strides: frame gaps ``k`` to draw from (the normal gap is 1).
        min_change: mean absolute change of the motion channel (normalized units) that makes a patch
            irregular; a patch over static background changes nothing and is not taken.

    Returns:
        ``(irregular, clean)``: the irregular patches and the normal patches at the same place and
        time, each ``(N, 2, size, size)`` float32 with ``N <= count``.
    """
    s = grid.size
    irregular, clean = [], []
    if len(frames) > max(strides) and count > 0:
        boxes = grid.boxes()
        for _ in range(8):  # candidates in rounds: most patches of a clip are background
            times = rng.integers(max(strides), len(frames), size=4 * count)
            places = rng.integers(0, len(boxes), size=4 * count)
            gaps = rng.choice(strides, size=4 * count)
            chosen_kinds = rng.integers(0, len(kinds), size=4 * count)
            for t, p, k, kind in zip(times, places, gaps, chosen_kinds):
                top, left = boxes[p, 0], boxes[p, 1]
                normal = frames[t, :, top : top + s, left : left + s]
                if kinds[kind] == "reverse":
                    odd = np.stack([frames[t - 1, 0, top : top + s, left : left + s], -normal[1]])
                else:
                    odd = np.stack([normal[0], normal[0] - frames[t - k, 0, top : top + s, left : left + s]])
                if np.abs(odd - normal).mean() >= min_change:
                    irregular.append(odd)
                    clean.append(normal)
                    if len(irregular) == count:
                        break
            if len(irregular) == count:
                break
    if not irregular:
        empty = np.zeros((0, 2, s, s), np.float32)
        return empty, empty
    return np.stack(irregular), np.stack(clean)
