"""Scoring as pure functions: per-location normalization, frame reduction, threshold calibration.

Statistics live in the manifest (``scoring``), written at training or calibration, read here.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .manifest import Threshold, now_iso

# A location whose normal scores barely vary would turn tiny wobbles into huge z-scores.
STD_FLOOR_FRACTION = 0.25


def location_stats(normal_scores: np.ndarray, absolute_floor: float = 0.0) -> dict[str, list[float]]:
    """Per-location mean and standard deviation of normal scores, ``(frames, locations)`` in.

    The standard deviation is floored at a fraction of the median over locations, and at
    ``absolute_floor`` (in the scores' own unit): a term whose normal outputs barely vary (an
    undertrained discriminator) would otherwise turn meaningless wobbles into huge z-scores.
    """
    normal_scores = np.asarray(normal_scores, dtype=np.float64)
    mean = normal_scores.mean(axis=0)
    std = normal_scores.std(axis=0)
    floor = max(STD_FLOOR_FRACTION * float(np.median(std)) + 1e-6, absolute_floor)
    return {"mean": mean.tolist(), "std": np.maximum(std, floor).tolist()}


def normalize_by_location(scores: np.ndarray, stats: dict[str, Any] | None) -> np.ndarray:
    """Scene-aware scores: ``(score − mean[loc]) / std[loc]`` over the last axis (locations)."""
    scores = np.asarray(scores, dtype=np.float32)
    if not stats:
        return scores
    mean = np.asarray(stats["mean"], np.float32)
    std = np.asarray(stats["std"], np.float32)
    if mean.shape[-1] != scores.shape[-1]:
        raise ValueError(f"scene statistics cover {mean.shape[-1]} locations, scores have {scores.shape[-1]}")
    return (scores - mean) / std


def reduce_frame(location_scores: np.ndarray) -> np.ndarray:
    """Frame score = the worst (highest) location score, over the last axis."""
    return np.max(location_scores, axis=-1)


def quantile_threshold(normal_scores: np.ndarray, false_alarm_rate: float, data: str) -> Threshold:
    """Threshold such that a fraction ``false_alarm_rate`` of normal scores lies above it."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false-alarm rate must be in (0, 1), got {false_alarm_rate}")
    if normal_scores.size == 0:
        raise ValueError("no normal scores to calibrate on")
    value = float(np.quantile(normal_scores, 1.0 - false_alarm_rate))
    return Threshold(value=value, data=data, target_false_alarm_rate=false_alarm_rate,
                     n_samples=int(normal_scores.size), date=now_iso(), method="quantile")


def fused_location_scores(outputs: dict[str, np.ndarray], scoring: dict[str, Any]) -> np.ndarray:
    """Weighted sum of per-location normalized graph outputs: ``Σ w_k · z_k``.

    ``scoring["terms"]`` maps graph output names (``score`` = −D(R(X)), ``reconstruction_error``)
    to weights; ``scoring["location_stats"]`` maps the same names to per-location statistics (no
    statistics: the raw output is used).
    """
    terms = scoring.get("terms") or {"score": 1.0}
    stats = scoring.get("location_stats") or {}
    total = None
    for name, weight in terms.items():
        term = np.float32(weight) * normalize_by_location(outputs[name], stats.get(name))
        total = term if total is None else total + term
    return total


# D vetoes the regions it is surest are normal: the 20 % most normal of normal data's regions. A
# wider veto (0.5, the first choice) cut pixel-level localization on the walkway (pixel EER 20.8 %
# → 19.1 % and 14.8 % → 11.4 % on two models) with frame-level results unchanged there and on Ped2
# (docs/accuracy.md).
REGION_QUANTILE = 0.2


# The frame score's two reductions (``AvidConfig.frame_score``). ``peak``: the intersection's largest
# value, so the frame fires exactly when the mask is not empty (the paper's frame-level rule).
# ``evidence``: what every block holds above a floor, summed, for images where several regions can
# be irregular at once (a digit grid with a few 3s in it): Σ_b max(0, v_b − f) / (1 − f), with v_b
# the block's largest intersection value before the mask is extended over objects. A single block
# at the mask's level counts 1, so a non-empty mask always fires the frame. The floor was chosen on
# a development set from the MNIST training split (docs/accuracy.md): 0.15–0.3 equally good, a
# block counts once it holds a quarter of a mask block's evidence.
FRAME_SCORES = ("peak", "evidence")
EVIDENCE_FLOOR = 0.25
# A soft intersection caps the region's multiple of its threshold at e^10: past that a region is
# as irregular as it gets, and the blocks' values stay inside FP16's range (the graph's max-pools).
LOG_MULTIPLE_CAP = 10.0


def block_values(residual_peaks: np.ndarray, regions: np.ndarray, alpha: float, zeta: float, graded: bool,
                 residual_weight: float | None = None) -> np.ndarray:
    """Each block's largest intersection value, from its residual peak and its ``1 − O``, before
    the mask is extended over objects: ``min(peak / α, odds(1 − O) / odds(1 − ζ))`` with a graded
    gate, or with a ``residual_weight`` w their weighted geometric mean ``(peak / α)^w · (odds(1 − O)
    / odds(1 − ζ))^(1 − w)`` (the second factor capped at e^LOG_MULTIPLE_CAP); ``peak / α`` inside
    the blocks with ``O <= ζ`` and 0 elsewhere without a graded gate."""
    residual_peaks = np.asarray(residual_peaks, np.float64)
    regions = np.clip(np.asarray(regions, np.float64), 1e-12, 1 - 1e-12)
    if not graded:
        return np.where(regions >= 1 - zeta, residual_peaks / alpha, 0.0)
    multiple = (regions / (1 - regions)) / ((1 - zeta) / zeta)
    if residual_weight is None:
        return np.minimum(residual_peaks / alpha, multiple)
    multiple = np.minimum(multiple, np.exp(LOG_MULTIPLE_CAP))
    return (residual_peaks / alpha) ** residual_weight * multiple ** (1.0 - residual_weight)


def frame_evidence(values: np.ndarray, floor: float = EVIDENCE_FLOOR) -> np.ndarray:
    """``(N, ...)`` block values → ``(N,)``: Σ max(0, v − floor) / (1 − floor) (``evidence`` frame score)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    return np.maximum(values - floor, 0.0).sum(axis=1) / (1.0 - floor)


def block_peaks(residual: np.ndarray, cell: int) -> np.ndarray:
    """``(N, H, W)`` → ``(N, H / cell, W / cell)``: the largest value in each block."""
    n, h, w = residual.shape
    return residual.reshape(n, h // cell, cell, w // cell, cell).max(axis=(2, 4))


def solve_for_false_alarms(fired_rate, false_alarm_rate: float, low: float, high: float) -> float:
    """The smallest threshold in [low, high] (log-space bisection) at which ``fired_rate``, a
    non-increasing function of the threshold, is at most ``false_alarm_rate``."""
    for _ in range(80):
        middle = float(np.sqrt(low * high))
        if fired_rate(middle) > false_alarm_rate:
            low = middle
        else:
            high = middle
        if high / low < 1 + 1e-7:
            break
    return high


def calibrate_avid_thresholds(residual: np.ndarray, regions: np.ndarray, cell: int, false_alarm_rate: float, data: str,
                              pixel_quantile: float | None = None, region_quantile: float = REGION_QUANTILE,
                              frame_score: str = "peak") -> dict[str, Threshold]:
    """α and ζ from normal frames: residual maps ``(N, H, W)`` and region maps ``1 − O`` ``(N, rows, cols)``.

    ζ makes D's gate pass the regions D finds least normal: ``1 − ζ`` is the ``region_quantile``
    quantile of normal ``1 − O`` values (0.2: D vetoes the fifth of normal regions it is surest of).
    α is then the ``1 − false_alarm_rate`` quantile, over normal frames, of the largest residual
    inside the gate, so that fraction of normal frames gets a non-empty mask; with the
    ``evidence`` frame score, α is where that fraction of normal frames has evidence ≥ 1.
    ``pixel_quantile`` is accepted for configuration compatibility and unused.
    """
    check_frame_score(frame_score)
    gate = float(np.quantile(regions, region_quantile))
    zeta = float(np.clip(1.0 - gate, 1e-6, 1 - 1e-6))
    gated = np.where(regions >= 1.0 - zeta, block_peaks(residual, cell), 0.0)
    frame = gated.reshape(len(residual), -1).max(axis=1)
    common = dict(data=data, target_false_alarm_rate=false_alarm_rate, n_samples=int(len(residual)), date=now_iso())
    if frame_score == "evidence":
        alpha = solve_for_false_alarms(lambda a: float((frame_evidence(gated / a) >= 1).mean()), false_alarm_rate,
                                        1e-9, max(float(frame.max()), 1e-6) * 1e3)
        method = f"evidence of {false_alarm_rate:g} of normal frames at 1"
    else:
        alpha = max(float(np.quantile(frame, 1 - false_alarm_rate)), 1e-6)
        method = f"quantile {1 - false_alarm_rate:g} of the frames' largest gated residual"
    return {"alpha": Threshold(value=alpha, method=method, **common),
            "zeta": Threshold(value=zeta, method=f"1 − quantile {region_quantile:g} of normal 1−O", **common)}


def has_graded_gate(manifest) -> bool:
    """Whether an AVID model gates with a region memory and a graded gate (``AvidConfig.region_memory``)."""
    return bool((manifest.training.get("config") or {}).get("region_memory"))


def calibrate_graded_thresholds(residual: np.ndarray, regions: np.ndarray, cell: int, false_alarm_rate: float,
                                data: str, frame_score: str = "peak", residual_weight: float | None = None) -> dict[str, Threshold]:
    """α and ζ for a graded gate (``AvidGraph.graded_gate``), from normal frames.

    The region score ranks and the residual outlines: α is the median over normal blocks of the
    residual's peak in the block (a block passes the residual gate when its content leaves at
    least a typical residual), and ζ alone sets the false-alarm rate: per frame, the largest
    region odds among the blocks that pass α; its ``1 − false_alarm_rate`` quantile is
    odds(1 − ζ), so that ``false_alarm_rate`` of the normal frames get a non-empty mask (Eq. 4).
    The frame score, the largest ``min(residual / α, odds(1 − O) / odds(1 − ζ))``, is then the
    region evidence wherever the residual is not unusually small. (Balancing the two parts at
    their medians instead, both scaled to the false-alarm rate, let the weaker residual decide;
    docs/accuracy.md.) With the ``evidence`` frame score or a soft intersection (``residual_weight``,
    :func:`block_values`), ζ is where ``false_alarm_rate`` of the normal frames have a frame score
    ≥ 1, found by bisection.
    """
    check_frame_score(frame_score)
    n = len(residual)
    peaks = block_peaks(residual, cell)
    regions = np.clip(regions.astype(np.float64), 1e-12, 1 - 1e-12)
    odds = regions / (1.0 - regions)
    alpha = max(float(np.median(peaks)), 1e-12)
    common = dict(data=data, target_false_alarm_rate=false_alarm_rate, n_samples=int(n), date=now_iso())
    if frame_score == "evidence" or residual_weight is not None:
        def frame_scores(odds_zeta: float) -> np.ndarray:
            values = block_values(peaks, regions, alpha, 1.0 / (1.0 + odds_zeta), True, residual_weight)
            return frame_evidence(values) if frame_score == "evidence" else values.reshape(n, -1).max(axis=1)

        odds_zeta = solve_for_false_alarms(lambda oz: float((frame_scores(oz) >= 1).mean()), false_alarm_rate, 1e-30, 1e30)
        method = f"graded gate: frame score ({frame_score}) of {false_alarm_rate:g} of normal frames at 1"
    else:
        # a frame fires at ζ iff some block has peak >= α and odds >= odds(1 − ζ)
        critical = np.where(peaks >= alpha, odds, 0.0).reshape(n, -1).max(axis=1)
        odds_zeta = max(float(np.quantile(critical, 1 - false_alarm_rate)), 1e-12)
        method = f"graded gate: quantile {1 - false_alarm_rate:g} of the largest region odds among blocks that pass alpha"
    return {"alpha": Threshold(value=alpha, method="graded gate: median over normal blocks of the residual's peak", **common),
            "zeta": Threshold(value=1.0 / (1.0 + odds_zeta), method=method, **common)}


def frame_score_of(manifest) -> str:
    """An AVID model's frame score (``AvidConfig.frame_score``); models from before it: ``peak``."""
    return (manifest.training.get("config") or {}).get("frame_score") or "peak"


def residual_weight_of(manifest) -> float | None:
    """A graded gate's soft-intersection weight (``AvidConfig.residual_weight``); None: the minimum."""
    return (manifest.training.get("config") or {}).get("residual_weight")


def check_frame_score(frame_score: str) -> None:
    """A frame score's name must be one of :data:`FRAME_SCORES` (ValueError, one line)."""
    if frame_score not in FRAME_SCORES:
        raise ValueError(f"frame score must be one of {', '.join(FRAME_SCORES)}, got {frame_score!r}")
