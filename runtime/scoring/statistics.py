"""Per-location statistics of normal outputs: scene-aware scores for fixed cameras."""
from __future__ import annotations

import numpy as np

from ..manifest import AloccScoring, LocationStats

# A location whose normal scores barely vary would turn tiny wobbles into huge z-scores.
STD_FLOOR_FRACTION = 0.25


def location_stats(normal_scores: np.ndarray, absolute_floor: float = 0.0) -> LocationStats:
    """Per-location mean and standard deviation of normal scores, ``(frames, locations)`` in.

    The standard deviation is floored at a fraction of the median over locations, and at
    ``absolute_floor`` (in the scores' own unit): a term whose normal outputs barely vary (an
    undertrained discriminator) would otherwise turn meaningless wobbles into huge z-scores.
    """
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    mean = normal_scores.mean(axis=0)
    std = normal_scores.std(axis=0)
    floor = max(STD_FLOOR_FRACTION * float(np.median(std)) + 1e-6, absolute_floor)
    return LocationStats(mean=mean.tolist(), std=np.maximum(std, floor).tolist())


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
