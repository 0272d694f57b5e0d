"""Drift watch: has the live score distribution moved away from the normal footage's? numpy only.

The two-sample Kolmogorov–Smirnov statistic between a window of live frame scores and the
reference scores (the calibration footage's, or the stream's first ``reference_windows`` windows).

- Frame scores are autocorrelated: one score in ``every`` frames is kept, and the test counts an
  effective sample size, ``n (1 - ρ) / (1 + ρ)`` for an AR(1) series, with ``ρ`` the lag-1
  autocorrelation of the reference's kept scores.
- The threshold spends a budget of false drift alarms: ``false_alarms`` per ``budget_days`` over
  the tests a camera makes in that time (one per window of fresh kept scores), each test at the
  Kolmogorov distribution's asymptotic quantile for its share of the budget.
- While an event is open (or the view is changed) nothing is added: an anomaly is not drift.

The KS statistic is written here (a ``searchsorted`` over the pooled sample, a few lines) because
scipy is not a runtime dependency: a camera box installs numpy and OpenCV only.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DriftLimits:
    """Every limit of the drift watch, with its default.

    Args:
        every: one frame score in this many is kept (neighbouring frames' scores are alike).
        window: kept scores per test (300 at the defaults: 5 minutes at 10 frames/s).
        false_alarms: false drift alarms allowed ...
        budget_days: ... in this many days of footage.
        fps: frames per second of the camera (to count the tests in the budget).
        reference_windows: with no reference scores given, windows of the stream's start that make it.
    """

    every: int = 10
    window: int = 300
    false_alarms: float = 1.0
    budget_days: float = 30.0
    fps: float = 10.0
    reference_windows: int = 4

    @property
    def test_false_alarm_rate(self) -> float:
        """Each test's share of the budget."""
        tests = self.budget_days * 86400 * self.fps / (self.every * self.window)
        return min(1.0, self.false_alarms / tests)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance between the empirical distribution functions of two samples."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    pooled = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, pooled, "right") / len(a) - np.searchsorted(b, pooled, "right") / len(b)).max())


def lag1_autocorrelation(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64) - np.mean(x)
    energy = float((x * x).sum())
    return float((x[1:] * x[:-1]).sum() / energy) if energy > 0 else 0.0


def effective_size(n: int, rho: float) -> float:
    """Samples of an AR(1) series with lag-1 autocorrelation ``rho`` worth as many independent ones."""
    rho = min(max(rho, 0.0), 0.99)
    return max(1.0, n * (1 - rho) / (1 + rho))


def ks_threshold(rate: float, n: float, m: float) -> float:
    """The KS statistic two samples of sizes ``n`` and ``m`` from one distribution exceed with
    probability ``rate`` (the Kolmogorov distribution's asymptotic tail, ``2 exp(-2 c²)``)."""
    return math.sqrt(-0.5 * math.log(rate / 2)) * math.sqrt((n + m) / (n * m))


@dataclass
class DriftState:
    """The drift watch after one frame: ``drifting``, the last test's ``statistic`` and the
    ``threshold``, whether drift ``started`` or ``ended`` on this frame, and ``frozen`` (nothing added)."""

    drifting: bool = False
    statistic: float | None = None
    threshold: float | None = None
    started: bool = False
    ended: bool = False
    frozen: bool = False

    def to_json(self) -> dict:
        return {"state": "started" if self.started else "ended" if self.ended else "ongoing",
                "statistic": None if self.statistic is None else round(self.statistic, 4),
                "threshold": None if self.threshold is None else round(self.threshold, 4)}


class DriftWatch:
    """One camera's drift watch: :meth:`update` once per frame with its score.

    Args:
        reference: normal frame scores in stream order (the calibration footage's); None: the
            stream's first ``limits.reference_windows`` windows.
        limits: the watch's limits.
    """

    def __init__(self, reference: np.ndarray | None = None, limits: DriftLimits = DriftLimits()):
        self.limits = limits
        self.reference: np.ndarray | None = None
        self.threshold: float | None = None
        self._learning: list[float] = []
        self._window: deque[float] = deque(maxlen=limits.window)
        self._fresh = 0
        self._frames = 0
        self.state = DriftState()
        if reference is not None:
            self._set_reference(np.asarray(reference, np.float64)[:: limits.every])

    def _set_reference(self, kept: np.ndarray) -> None:
        if len(kept) < 2:
            raise ValueError("the drift watch needs at least 2 kept reference scores")
        rho = lag1_autocorrelation(kept)
        self.reference = kept
        self.threshold = ks_threshold(self.limits.test_false_alarm_rate, effective_size(self.limits.window, rho),
                                      effective_size(len(kept), rho))

    def update(self, score: float, hold: bool = False) -> DriftState:
        """Add one frame's score; ``hold`` (an event is open, the view is changed) freezes the watch."""
        state = self.state = DriftState(self.state.drifting, self.state.statistic, self.threshold, frozen=hold)
        if hold:
            return state
        self._frames += 1
        if (self._frames - 1) % self.limits.every:
            return state
        if self.reference is None:
            self._learning.append(float(score))
            if len(self._learning) >= self.limits.reference_windows * self.limits.window:
                self._set_reference(np.array(self._learning))
                self._learning = []
                state.threshold = self.threshold
            return state
        self._window.append(float(score))
        self._fresh += 1
        if len(self._window) == self.limits.window and self._fresh >= self.limits.window:
            self._fresh = 0
            state.statistic = ks_statistic(np.fromiter(self._window, np.float64), self.reference)
            drifting = state.statistic > self.threshold
            state.started, state.ended = drifting and not state.drifting, state.drifting and not drifting
            state.drifting = drifting
        return state
