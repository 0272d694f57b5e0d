"""Real normal inputs to verify an export on, read from a data spec (no torch)."""
from __future__ import annotations

import numpy as np

from occ.evaluation.datasets.common import DatasetError
from occ.evaluation.datasets.footage import is_footage
from occ.evaluation.datasets.spec import load_video_data
from occ.runtime.detector import graph_feed
from occ.runtime.manifest import Manifest
from occ.runtime.preprocess import PatchGrid, preprocess_clip


def samples_from_data(manifest: Manifest, data_spec: str, clips: int = 2, frames: int = 16) -> np.ndarray:
    """Network inputs of the first ``frames`` frames of ``clips`` test clips of ``data_spec`` (normal
    footage without test clips: of its validation part; a data set's: of its training clips), as the model takes them: ``(N, C, H, W)`` frames
    (AVID) or ``(N, P, C, s, s)`` patch grids (ALOCC)."""
    size = (manifest.input.height, manifest.input.width) if is_footage(data_spec) else None
    data = load_video_data(data_spec, splits=("test", "validation"), size=size)
    chosen = (data.test or data.validation or load_video_data(data_spec, splits=("train",), size=size).train)[:clips]
    if not chosen:
        raise DatasetError(f"{data_spec}: no clips to take samples from")
    inputs = np.concatenate([preprocess_clip(clip.frames[:frames], manifest.input) for clip in chosen])
    if manifest.method == "alocc":
        return PatchGrid.from_spec(manifest.patches, manifest.input).extract_clip(inputs)
    return inputs


def sample_feed(manifest: Manifest, samples: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's feed for samples as :func:`samples_from_data` (and a checkpoint) hold them:
    ALOCC's patch grids flattened to one batch of patches; AVID's frames with the manifest's α, ζ."""
    if manifest.method == "alocc":
        return {"patches": np.ascontiguousarray(samples.reshape(-1, *samples.shape[2:]))}
    return graph_feed(samples, manifest)
