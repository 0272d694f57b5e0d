"""Thresholds from normal data, for every scoring contract: what training sets and ``occ calibrate``
resets. Each rule here mirrors the graph's (:mod:`occ.train.avid_graph`) in numpy, block by block."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..files import now_iso
from ..manifest import AvidScoring, Manifest, Threshold

# A soft intersection caps the region's multiple of its threshold at e^10: past that a region is
# as irregular as it gets, and the blocks' values stay inside FP16's range (the graph's max-pools).
LOG_MULTIPLE_CAP = 10.0


# A threshold at false-alarm rate r from n normal frames rests on the n·r frames beyond it; with
# fewer than this many it is mostly chance (at 1 %: fewer than 300 frames).
MIN_FRAMES_BEYOND_THRESHOLD = 3


def sample_size_warning(name: str, threshold: Threshold) -> str | None:
    """A one-line warning when ``threshold`` rests on too few normal frames, else None."""
    rate, count = threshold.target_false_alarm_rate, threshold.n_samples
    if not rate or not count or count * rate >= MIN_FRAMES_BEYOND_THRESHOLD:
        return None
    needed = int(np.ceil(MIN_FRAMES_BEYOND_THRESHOLD / rate))
    return (f"{name} was set at {rate:.1%} false alarms from only {count} normal frames ({count * rate:.1f} beyond it): "
            f"it is mostly chance; calibrate on at least {needed} frames")


def threshold_warnings(manifest: Manifest) -> list[str]:
    """:func:`sample_size_warning` for each of the manifest's thresholds."""
    return [w for name, t in manifest.thresholds.items() if (w := sample_size_warning(name, t))]


def quantile_threshold(normal_scores: np.ndarray, false_alarm_rate: float, data: str) -> Threshold:
    """Threshold such that a fraction ``false_alarm_rate`` of normal scores lies above it; at 0,
    the largest normal score (none of the frames it was set on fires)."""
    normal_scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    if not 0 <= false_alarm_rate < 1:
        raise ValueError(f"false-alarm rate must be in [0, 1), got {false_alarm_rate}")
    if normal_scores.size == 0:
        raise ValueError("no normal scores to calibrate on")
    value = float(np.quantile(normal_scores, 1.0 - false_alarm_rate))
    return Threshold(value=value, data=data, target_false_alarm_rate=false_alarm_rate,
                     n_samples=int(normal_scores.size), date=now_iso(), method="quantile" if false_alarm_rate else "largest normal frame")


def check_rate(false_alarm_rate: float, scoring: AvidScoring) -> None:
    """Refuse a rate outside [0, 1), and 0 where α and ζ are solved for a share of frames that fire."""
    if not 0 <= false_alarm_rate < 1:
        raise ValueError(f"false-alarm rate must be in [0, 1), got {false_alarm_rate}")
    if false_alarm_rate == 0 and (scoring.gate, scoring.frame_score) != ("binary", "peak"):
        raise ValueError(f"a false-alarm rate of 0 needs the binary gate and the peak frame score (α at the largest normal frame): "
                         f"the {scoring.gate} gate with the {scoring.frame_score} frame score needs a rate above 0")


def alocc_thresholds(frame_scores: np.ndarray, false_alarm_rate: float, data: str) -> dict[str, Threshold]:
    """τ: the ``1 − false_alarm_rate`` quantile of normal frame scores (at 0, the largest)."""
    return {"tau": quantile_threshold(frame_scores, false_alarm_rate, data)}


def solve_for_false_alarms(fired_rate: Callable[[float], float], false_alarm_rate: float, low: float, high: float) -> float:
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


# ---- AVID, block by block ----------------------------------------------------------------------------
def block_peaks(maps: np.ndarray, cell: int) -> np.ndarray:
    """``(N, H, W)`` → ``(N, H / cell, W / cell)``: the largest value in each block."""
    n, h, w = maps.shape
    return maps.reshape(n, h // cell, cell, w // cell, cell).max(axis=(2, 4))


def region_multiple(regions: np.ndarray, zeta: float) -> np.ndarray:
    """A region's evidence in units of its threshold: ``odds(1 − O) / odds(1 − ζ)``."""
    regions = np.clip(np.asarray(regions, np.float64), 1e-12, 1 - 1e-12)
    return (regions / (1 - regions)) / ((1 - zeta) / zeta)


def _binary_values(peaks, regions, alpha, zeta, scoring: AvidScoring) -> np.ndarray:
    return np.where(np.asarray(regions, np.float64) >= 1 - zeta, peaks / alpha, 0.0)


def _soft_values(peaks, regions, alpha, zeta, scoring: AvidScoring) -> np.ndarray:
    w = scoring.residual_weight
    multiple = np.minimum(region_multiple(regions, zeta), np.exp(LOG_MULTIPLE_CAP))
    return (np.asarray(peaks, np.float64) / alpha) ** w * multiple ** (1.0 - w)


_GATE_VALUES = {"binary": _binary_values, "soft": _soft_values}


def block_values(residual_peaks: np.ndarray, regions: np.ndarray, alpha: float, zeta: float, scoring: AvidScoring) -> np.ndarray:
    """Each block's largest intersection value (in units of α, before the mask is extended over
    objects), from its residual peak and its ``1 − O``, by the contract's gate."""
    return _GATE_VALUES[scoring.gate](np.asarray(residual_peaks, np.float64), regions, alpha, zeta, scoring)


def frame_evidence(values: np.ndarray, floor: float) -> np.ndarray:
    """``(N, ...)`` block values → ``(N,)``: Σ max(0, v − floor) / (1 − floor)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    return np.maximum(values - floor, 0.0).sum(axis=1) / (1.0 - floor)


def frame_peak(values: np.ndarray) -> np.ndarray:
    """``(N, ...)`` block values → ``(N,)``: the largest."""
    return np.asarray(values, np.float64).reshape(len(values), -1).max(axis=1)


def frame_scores(values: np.ndarray, scoring: AvidScoring) -> np.ndarray:
    """The graph's frame score from block values ``(N, rows, cols)``."""
    if scoring.frame_score == "evidence":
        return frame_evidence(values, scoring.evidence_floor)
    return frame_peak(values)


def _binary_gate_thresholds(scoring: AvidScoring, peaks: np.ndarray, regions: np.ndarray, rate: float):
    """ζ vetoes the ``region_quantile`` of normal regions D is surest of; α then makes ``rate`` of
    the normal frames fire (for ``peak``: the quantile of the frames' largest gated residual; at 0,
    the largest, which that frame itself reaches: it scores exactly 1)."""
    zeta = float(np.clip(1.0 - np.quantile(regions, scoring.region_quantile), 1e-6, 1 - 1e-6))
    gated = np.where(regions >= 1.0 - zeta, peaks, 0.0)
    largest = frame_peak(gated)
    if scoring.frame_score == "peak":
        alpha = max(float(np.quantile(largest, 1 - rate)), 1e-6)
        how = f"quantile {1 - rate:g} of the frames' largest gated residual" if rate else "largest normal frame (its largest gated residual)"
    else:
        alpha = solve_for_false_alarms(lambda a: float((frame_scores(gated / a, scoring) >= 1).mean()), rate,
                                       1e-9, max(float(largest.max()), 1e-6) * 1e3)
        how = f"frame score ({scoring.frame_score}) of {rate:g} of normal frames at 1"
    return alpha, how, zeta, f"1 − quantile {scoring.region_quantile:g} of normal 1−O"


def _soft_gate_thresholds(scoring: AvidScoring, peaks: np.ndarray, regions: np.ndarray, rate: float):
    """The region score ranks and the residual outlines: α is the median normal block peak of the
    residual, and ζ alone sets the false-alarm rate (by bisection on odds(1 − ζ))."""
    alpha = max(float(np.median(peaks)), 1e-12)

    def fired(odds_zeta: float) -> float:
        return float((frame_scores(block_values(peaks, regions, alpha, 1.0 / (1.0 + odds_zeta), scoring), scoring) >= 1).mean())

    odds_zeta = solve_for_false_alarms(fired, rate, 1e-30, 1e30)
    return (alpha, "median over normal blocks of the residual's peak", 1.0 / (1.0 + odds_zeta),
            f"frame score ({scoring.frame_score}) of {rate:g} of normal frames at 1")


_GATE_THRESHOLDS = {"binary": _binary_gate_thresholds, "soft": _soft_gate_thresholds}


def avid_thresholds(scoring: AvidScoring, peaks: np.ndarray, regions: np.ndarray, false_alarm_rate: float,
                    data: str) -> dict[str, Threshold]:
    """α and ζ from normal frames such that ``false_alarm_rate`` of them fire, by the contract's
    gate: ``peaks`` are the residual's block peaks (:func:`block_peaks`) and ``regions`` the
    region map ``1 − O``, both ``(N, rows, cols)``. A rate of 0 (binary gate, ``peak`` frame
    score) puts α at the largest normal frame's gated residual."""
    check_rate(false_alarm_rate, scoring)
    if len(peaks) == 0:
        raise ValueError("no normal frames to calibrate on")
    peaks = np.asarray(peaks, np.float64)
    regions = np.asarray(regions, np.float64)
    alpha, alpha_how, zeta, zeta_how = _GATE_THRESHOLDS[scoring.gate](scoring, peaks, regions, false_alarm_rate)
    common = dict(data=data, target_false_alarm_rate=false_alarm_rate, n_samples=int(len(peaks)), date=now_iso())
    return {"alpha": Threshold(value=alpha, method=alpha_how, **common), "zeta": Threshold(value=zeta, method=zeta_how, **common)}
