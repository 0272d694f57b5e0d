"""Per-location statistics of normal outputs: scene-aware scores for fixed cameras."""
from __future__ import annotations

import numpy as np

from ..manifest import AloccScoring, LocationStats

def location_stats(normal_scores: np.ndarray, absolute_floor: float = 0.0) -> LocationStats:
    """Per-location mean and deviation of normal scores, ``(frames, locations)`` in.

    The deviation of a location is ``sqrt(std_loc² + std_all²)``, ``std_all`` the spread of all
    normal scores pooled over locations, floored at ``absolute_floor`` (in the scores' own unit).
    A location where training footage rarely moved (the edge of a walkway) has a tiny ``std_loc``:
    alone, it made an ordinary passer-by there score 17 deviations on held-out Ped2 clips, and the
    stored threshold fired on every frame of them (docs/accuracy-log.md, 2026-12-06).
    """
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    mean = normal_scores.mean(axis=0)
    deviation = np.sqrt(normal_scores.std(axis=0) ** 2 + normal_scores.std() ** 2)
    return LocationStats(mean=mean.tolist(), std=np.maximum(deviation, max(absolute_floor, 1e-12)).tolist())


def normalize_by_location(scores: np.ndarray, stats: LocationStats | None) -> np.ndarray:
    """Scene-aware scores: ``(score − mean[loc]) / std[loc]`` over the last axis (locations)."""
    scores = np.asarray(scores, dtype=np.float32)
    if stats is None:
        return scores
    mean = np.asarray(stats.mean, np.float32)
    std = np.asarray(stats.std, np.float32)
    if mean.shape[-1] != scores.shape[-1]:
        raise ValueError(f"scene statistics cover {mean.shape[-1]} locations, scores have {scores.shape[-1]}")
    return (scores - mean) / std


def patch_scores(outputs: dict[str, np.ndarray], scoring: AloccScoring) -> np.ndarray:
    """ALOCC's patch scores ``Σ_k w_k · z_k`` from graph outputs shaped ``(frames, patches)``."""
    total = None
    for name, weight in scoring.terms.items():
        term = np.float32(weight) * normalize_by_location(outputs[name], scoring.location_stats.get(name))
        total = term if total is None else total + term
    return total


def alocc_frame_scores(patch_scores: np.ndarray) -> np.ndarray:
    """ALOCC's frame score: its largest patch score (last axis: patches). Every consumer calls this."""
    return np.asarray(patch_scores).max(axis=-1)
