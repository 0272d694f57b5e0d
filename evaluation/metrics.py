"""Evaluation metrics (numpy only). Scores are anomaly scores: higher means more anomalous.

Frame level: ROC AUC pooled over all frames (micro) or averaged over videos (macro), equal error
rate, F1 at a threshold; at a fixed threshold, false alarms per hour of normal footage and the
detection delay of each anomalous event. Pixel level: the criterion of Mahadevan et al. (CVPR
2010): an anomalous frame counts as detected only if at least 40 % of its ground-truth pixels are
detected; any detection on a normal frame is a false positive.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


class MetricError(ValueError):
    """The inputs cannot give the asked metric (e.g. only one class present)."""


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise MetricError(f"{labels.size} labels but {scores.size} scores")
    if not np.all(np.isfinite(scores)):
        raise MetricError("scores contain NaN or infinity")
    if labels.all() or not labels.any():
        raise MetricError("ROC needs both normal and anomalous samples")
    return labels, scores


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and thresholds (decision: ``score >= threshold``).

    Starts at (0, 0) with threshold +inf; tied scores form a single step.
    """
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tps = np.cumsum(labels)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    tpr = np.r_[0.0, tps / labels.sum()]
    fpr = np.r_[0.0, fps / (~labels).sum()]
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann–Whitney form, ties count one half)."""
    labels, scores = _check(labels, scores)
    ranks = _average_ranks(scores)
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def equal_error_rate(labels, scores) -> tuple[float, float]:
    """The rate where false-positive rate equals miss rate, and the threshold closest to it.

    Linear interpolation between the two ROC points that bracket ``fpr = 1 − tpr``.
    """
    fpr, tpr, thresholds = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # rises from -1 to +1
    i = int(np.argmax(diff >= 0))
    if diff[i] == 0 or i == 0:
        return float(fpr[i]), float(thresholds[i])
    d0, d1 = diff[i - 1], diff[i]
    w = -d0 / (d1 - d0)
    rate = fpr[i - 1] + w * (fpr[i] - fpr[i - 1])
    threshold = thresholds[i] if w >= 0.5 else thresholds[i - 1]
    return float(rate), float(threshold)


def f1_score(labels, predictions) -> float:
    """F1 of the positive class (``labels`` True) given boolean ``predictions``."""
    labels = np.asarray(labels).astype(bool).ravel()
    predictions = np.asarray(predictions).astype(bool).ravel()
    tp = np.sum(labels & predictions)
    fp = np.sum(~labels & predictions)
    fn = np.sum(labels & ~predictions)
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 1.0


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` index ranges of the maximal runs of True in one clip."""
    edges = np.diff(np.r_[0, flags.astype(np.int8), 0])
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist()))


def _clip_pairs(videos_labels: Sequence, videos_decisions: Sequence) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(videos_labels) != len(videos_decisions):
        raise MetricError(f"{len(videos_labels)} clips of labels but {len(videos_decisions)} clips of decisions")
    pairs = []
    for index, (labels, decisions) in enumerate(zip(videos_labels, videos_decisions)):
        labels = np.asarray(labels).astype(bool).ravel()
        decisions = np.asarray(decisions).astype(bool).ravel()
        if labels.shape != decisions.shape:
            raise MetricError(f"clip {index}: {labels.size} labels but {decisions.size} decisions")
        pairs.append((labels, decisions))
    return pairs


@dataclass
class FalseAlarmRate:
    """False alarms per hour of normal footage (:func:`false_alarms_per_hour`), with the exact 95 %
    Poisson interval of the rate (:func:`poisson_rate_interval`) and the frame rate it used."""

    false_alarms: int
    normal_hours: float
    normal_minutes: float
    per_hour: float
    per_hour_low: float
    per_hour_high: float
    fps: float


def false_alarms_per_hour(videos_labels: Sequence[np.ndarray], videos_decisions: Sequence[np.ndarray], fps: float) -> FalseAlarmRate:
    """False alarms per hour of normal footage, from per-frame decisions at a fixed threshold.

    An alarm is a maximal run of consecutive frames decided anomalous within one clip (runs never
    cross clip boundaries). A false alarm is an alarm none of whose frames is labelled anomalous.
    The rate is the number of false alarms divided by the hours of normal footage: the number of
    frames labelled normal / ``fps`` / 3600. (The service's episode rule, K frames on and J off,
    can merge or drop short runs; this counts the detector's raw decisions.)

    Args:
        videos_labels: per clip, frame labels (True = anomalous).
        videos_decisions: per clip, frame decisions (True = decided anomalous), same lengths.
        fps: the footage's frame rate, frames per second.

    Returns:
        The count, the hours (and minutes) of normal footage, the rate and its interval, and ``fps``.

    Raises:
        MetricError: clip counts or lengths differ, ``fps`` is not a positive number, or no frame
            is labelled normal.
    """
    pairs = _clip_pairs(videos_labels, videos_decisions)
    if isinstance(fps, bool) or not (isinstance(fps, (int, float, np.number)) and math.isfinite(fps) and fps > 0):
        raise MetricError(f"fps must be a positive number of frames per second, got {fps!r}")
    false_alarms = sum(1 for labels, decisions in pairs for start, stop in _runs(decisions) if not labels[start:stop].any())
    normal_frames = sum(int((~labels).sum()) for labels, _ in pairs)
    if normal_frames == 0:
        raise MetricError("false alarms per hour need frames labelled normal; there are none")
    hours = normal_frames / float(fps) / 3600.0
    low, high = poisson_rate_interval(false_alarms, hours)
    return FalseAlarmRate(false_alarms=int(false_alarms), normal_hours=hours, normal_minutes=hours * 60.0,
                          per_hour=false_alarms / hours, per_hour_low=low, per_hour_high=high, fps=float(fps))


def _poisson_cdf(count: int, mean: float) -> float:
    """P(X ≤ count) for X ~ Poisson(mean), summed in log space (exact for the counts alarms reach)."""
    if mean <= 0:
        return 1.0
    i = np.arange(count + 1, dtype=np.float64)
    log_terms = i * math.log(mean) - mean - np.array([math.lgamma(k + 1) for k in i])
    return float(min(1.0, np.exp(log_terms).sum()))


def _solve_mean(condition, high: float) -> float:
    """The Poisson mean in [0, high] where the monotone ``condition`` changes from False to True (bisection)."""
    low = 0.0
    for _ in range(200):
        middle = (low + high) / 2
        if condition(middle):
            high = middle
        else:
            low = middle
        if high - low <= 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


def poisson_rate_interval(count: int, exposure_hours: float, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Garwood) two-sided interval of a rate per hour from ``count`` events in
    ``exposure_hours``: the Poisson means whose tail probabilities beyond ``count`` are
    ``(1 − confidence) / 2``. With 0 events the lower end is 0.

    A rate from 23 s of footage is not a rate an operator can plan on; the interval says so: one
    alarm in 0.0064 h is 157 per hour, anywhere from 4 to 870 at 95 %.

    Args:
        count: events observed (alarms), ≥ 0.
        exposure_hours: hours of footage they were counted over, > 0.
        confidence: the interval's coverage, in (0, 1).

    Returns:
        ``(low, high)`` in events per hour.
    """
    if count < 0 or exposure_hours <= 0 or not 0 < confidence < 1:
        raise MetricError(f"a rate interval needs count ≥ 0, hours > 0 and confidence in (0, 1), got {count}, "
                          f"{exposure_hours}, {confidence}")
    tail = (1.0 - confidence) / 2.0
    count = int(count)
    bound = count + 10.0 * math.sqrt(count + 1) + 10.0
    # upper: the mean at which seeing ≤ count events becomes as unlikely as the tail
    upper = _solve_mean(lambda mean: _poisson_cdf(count, mean) <= tail, bound)
    # lower: the mean at which seeing ≥ count events becomes as likely as the tail
    lower = 0.0 if count == 0 else _solve_mean(lambda mean: 1.0 - _poisson_cdf(count - 1, mean) >= tail, bound)
    return lower / exposure_hours, upper / exposure_hours


@dataclass
class DetectionDelay:
    """How many frames each anomalous event ran before its first alarm (:func:`detection_delays`)."""

    events: int
    detected: int
    missed: int
    delays: list[int]  # detected events, in clip and frame order
    median_frames: float | None  # None when no event was detected
    mean_frames: float | None


def detection_delays(videos_labels: Sequence[np.ndarray], videos_decisions: Sequence[np.ndarray]) -> DetectionDelay:
    """How many frames each anomalous event runs before its first alarm, at a fixed threshold.

    An anomalous event is a maximal run of frames labelled anomalous within one clip (events never
    cross clip boundaries). Its delay is the number of frames from the event's first frame to the
    first frame within the event decided anomalous: 0 means caught on its first frame (also when an
    alarm that began before the event is still on). An event with no frame decided anomalous is
    missed and has no delay. The median and mean are over the detected events only.

    Args:
        videos_labels: per clip, frame labels (True = anomalous).
        videos_decisions: per clip, frame decisions (True = decided anomalous), same lengths.

    Returns:
        The events, how many were detected and missed, the detected events' delays in frames and
        their median and mean.

    Raises:
        MetricError: clip counts or lengths differ.
    """
    events, delays = 0, []
    for labels, decisions in _clip_pairs(videos_labels, videos_decisions):
        for start, stop in _runs(labels):
            events += 1
            hits = np.nonzero(decisions[start:stop])[0]
            if hits.size:
                delays.append(int(hits[0]))
    return DetectionDelay(events=events, detected=len(delays), missed=events - len(delays), delays=delays,
                          median_frames=float(np.median(delays)) if delays else None,
                          mean_frames=float(np.mean(delays)) if delays else None)


def minmax_per_video(videos: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Rescale each video's scores to 0..1 on its own (labelled 'per-video normalized' in reports).

    Uses the video's own extremes, so it needs the whole video: an offline protocol, not a live one.
    """
    out = []
    for scores in videos:
        scores = np.asarray(scores, dtype=np.float64)
        span = scores.max() - scores.min()
        out.append((scores - scores.min()) / span if span > 0 else np.zeros_like(scores))
    return out


def smooth_scores(scores: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average over ``window`` frames (odd), edges averaged over what exists."""
    if window <= 1:
        return np.asarray(scores, dtype=np.float64)
    if window % 2 == 0:
        raise MetricError(f"smoothing window must be odd, got {window}")
    scores = np.asarray(scores, dtype=np.float64)
    kernel = np.ones(window)
    total = np.convolve(scores, kernel, mode="same")
    count = np.convolve(np.ones_like(scores), kernel, mode="same")
    return total / count


@dataclass
class FrameLevelReport:
    """Frame-level ROC measures of one scoring variant (:func:`frame_level`)."""

    micro_auc: float
    macro_auc: float  # NaN when no video holds both classes
    eer: float
    eer_threshold: float
    videos_in_macro: int


def frame_level(videos_labels: Sequence[np.ndarray], videos_scores: Sequence[np.ndarray]) -> FrameLevelReport:
    """Micro AUC and EER over all frames pooled; macro AUC over videos that hold both classes."""
    labels = np.concatenate([np.asarray(v, bool) for v in videos_labels])
    scores = np.concatenate([np.asarray(v, np.float64) for v in videos_scores])
    per_video = [
        roc_auc(l, s) for l, s in zip(videos_labels, videos_scores) if 0 < np.sum(l) < len(l)
    ]
    eer, threshold = equal_error_rate(labels, scores)
    return FrameLevelReport(
        micro_auc=roc_auc(labels, scores),
        macro_auc=float(np.mean(per_video)) if per_video else float("nan"),
        eer=eer,
        eer_threshold=threshold,
        videos_in_macro=len(per_video),
    )


@dataclass
class PixelLevel:
    """ROC AUC and EER under the pixel-level criterion (:func:`pixel_level`)."""

    auc: float
    eer: float
    criterion: str = "40 % of ground-truth pixels"


def pixel_level(labels: np.ndarray, scores: np.ndarray) -> PixelLevel:
    """AUC and EER of per-frame ``labels`` and ``scores`` from :func:`pixel_level_scores`, pooled over clips."""
    return PixelLevel(auc=roc_auc(labels, scores), eer=equal_error_rate(labels, scores)[0])


def pixel_level_scores(score_maps: np.ndarray, gt_masks: np.ndarray, coverage: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """Reduce per-pixel anomaly maps to one score per frame for the pixel-level criterion.

    A frame is flagged at threshold ``t`` when its map has pixels ``>= t``. For an anomalous frame,
    the criterion needs ``ceil(coverage · n_gt)`` of its ``n_gt`` ground-truth pixels flagged, which
    holds exactly when ``t`` is at most the ``ceil(coverage · n_gt)``-th largest map value inside
    the ground truth; for a normal frame any flagged pixel is a false positive, so its score is the
    map's maximum. ROC analysis on these per-frame scores is the pixel-level ROC.

    Returns:
        ``(labels, scores)``: per-frame ground truth (any anomalous pixel) and reduced scores.
    """
    score_maps = np.asarray(score_maps, dtype=np.float64)
    gt_masks = np.asarray(gt_masks, dtype=bool)
    if score_maps.shape != gt_masks.shape:
        raise MetricError(f"score maps {score_maps.shape} and masks {gt_masks.shape} differ in shape")
    labels = gt_masks.reshape(len(gt_masks), -1).any(axis=1)
    scores = np.empty(len(score_maps))
    for i, (smap, gt) in enumerate(zip(score_maps, gt_masks)):
        if labels[i]:
            inside = np.sort(smap[gt])[::-1]
            scores[i] = inside[math.ceil(coverage * inside.size) - 1]
        else:
            scores[i] = smap.max()
    return labels, scores


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    _, inverse, counts = np.unique(values[order], return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = ((ends - counts + ends + 1) / 2.0)[inverse]
    return ranks
