"""Drift watch: has the live score distribution moved away from the calibration footage's? numpy only.

The scores follow what legitimately changes over a day, the light above all (a frame score at
night is not a daytime one), so the reference is the calibration footage's scores *at each light*,
and a window of live scores is compared with it light for light:

- Reference (:class:`DriftReference`, learnt by ``occ calibrate`` and stored in the manifest's
  ``drift``): the kept frames' brightness (:func:`frame_light`) cut into ``light_bins`` bins of
  equal counts, and in each bin ``quantiles`` quantiles of the frame score.
- Each kept live frame's score becomes its share of the reference's scores in its light bin below
  it (the probability integral transform, linear between quantiles, a random point over ties):
  uniform on [0, 1] while nothing drifts, at night as at noon. A frame lit more than
  ``light_margin`` beyond the brightest or darkest of the reference's has no reference score; it
  counts as beyond them all (1), so light the calibration never saw is drift too.
- Test: the one-sample Kolmogorov–Smirnov statistic of the last ``window`` kept values against the
  uniform distribution, each time ``stride`` fresh values have come.
- Threshold: frame scores are autocorrelated (one minute's are alike, and a window spans a few
  minutes), so the KS quantile for independent values is far too low, and an AR(1) correction
  breaks down when the scores follow the light (their lag-1 autocorrelation nears 1). Instead the
  calibration footage tests itself: each of its windows against a reference learnt from the rest.
  The Kolmogorov distribution, scaled to those statistics (matching their root mean square: its
  tail's shape, the spread measured), gives the statistic a test passes at its share of the
  budget, ``false_alarms`` per ``budget_days`` over the tests a camera makes in that time.
- While an event is open or the scene guard holds the camera nothing is added: an anomaly, or a
  changed view the guard already reports, is not drift.

The KS statistic and the Kolmogorov tail are written here (a few lines each) because scipy is not
a runtime dependency: a camera box installs numpy and OpenCV only.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..files import now_iso
from ..manifest import DriftView, ManifestError

KOLMOGOROV_RMS = math.pi / math.sqrt(12)  # root mean square of the Kolmogorov distribution (E[K²] = π²/12)
UNSEEN = 1.0  # the transformed value of a frame lit as the reference never was


@dataclass(frozen=True)
class DriftLimits:
    """Every limit of the drift watch, with its default.

    Args:
        every: one frame in this many is kept (neighbouring frames' scores are alike).
        window: kept frames per test (300 at the defaults: 5 minutes at 10 frames/s).
        stride: fresh kept frames between tests (60: a test a minute).
        false_alarms: false drift alarms allowed ...
        budget_days: ... in this many days of footage.
        fps: frames per second of the camera (to count the tests in the budget).
        light_bins: brightness bins of the reference.
        quantiles: score quantiles per bin (from the lowest to the highest score).
        light_margin: a brightness this share beyond the reference's range has no reference.
        reference_windows: the least footage a reference is learnt from, in windows; with no
            reference given, the watch learns one from this many windows of the stream's start.
    """

    every: int = 10
    window: int = 300
    stride: int = 60
    false_alarms: float = 1.0
    budget_days: float = 30.0
    fps: float = 10.0
    light_bins: int = 8
    quantiles: int = 21
    light_margin: float = 0.1
    reference_windows: int = 4

    @property
    def tests_in_budget(self) -> float:
        return self.budget_days * 86400 * self.fps / (self.every * self.stride)

    @property
    def test_false_alarm_rate(self) -> float:
        """Each test's share of the budget."""
        return min(1.0, self.false_alarms / self.tests_in_budget)


def frame_light(image: np.ndarray) -> float:
    """A frame's brightness: the mean of every 4th row and column (grey levels; a colour frame's
    channels alike), measured the same way by ``occ calibrate`` and the service."""
    return float(np.asarray(image)[::4, ::4].mean())


def uniform_ks_statistic(values: np.ndarray) -> float:
    """Largest distance between the empirical distribution function of ``values`` (in [0, 1]) and the uniform one."""
    u = np.sort(np.asarray(values, np.float64))
    n = len(u)
    steps = np.arange(1, n + 1) / n
    return float(max((steps - u).max(), (u - (steps - 1 / n)).max()))


def kolmogorov_quantile(rate: float) -> float:
    """The value the Kolmogorov distribution exceeds with probability ``rate`` (its tail
    ``2 Σ (-1)^(k-1) exp(-2 k² c²)``, solved by bisection; at small rates ``sqrt(-ln(rate / 2) / 2)``)."""
    def tail(c: float) -> float:
        return 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * c * c) for k in range(1, 101))

    low, high = 0.2, 10.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if tail(middle) > rate else (low, middle)
    return high


class DriftReference:
    """The calibration footage's frame scores at each light: ``light_edges`` (``bins + 1``
    brightness edges, the outer two the darkest and brightest kept frames) and ``score_quantiles``
    (``bins`` rows of ``quantiles`` scores); ``spread``: the root mean square of the footage's own
    window statistics over the Kolmogorov distribution's (the test threshold's scale)."""

    def __init__(self, light_edges: np.ndarray, score_quantiles: np.ndarray, spread: float, frames: int = 0,
                 limits: DriftLimits = DriftLimits()):
        self.light_edges = np.asarray(light_edges, np.float64)
        self.score_quantiles = np.asarray(score_quantiles, np.float64)
        self.spread, self.frames, self.limits = float(spread), int(frames), limits
        self._levels = np.linspace(0.0, 1.0, self.score_quantiles.shape[1])
        self._rng = np.random.default_rng(0)

    @classmethod
    def learn(cls, scores: np.ndarray, light: np.ndarray, limits: DriftLimits = DriftLimits()) -> "DriftReference":
        """From normal footage's frame scores and :func:`frame_light` in stream order (every frame;
        one in ``limits.every`` is kept). Each window of ``limits.window`` kept frames, one every
        ``limits.stride``, is tested against a reference from the others; their statistics set the
        spread. ValueError with less than ``limits.reference_windows`` windows of kept frames."""
        return cls.from_kept(np.asarray(scores, np.float64)[:: limits.every], np.asarray(light, np.float64)[:: limits.every], limits)

    @classmethod
    def from_kept(cls, scores: np.ndarray, light: np.ndarray, limits: DriftLimits = DriftLimits()) -> "DriftReference":
        """As :meth:`learn`, from the kept frames alone."""
        scores, light = np.asarray(scores, np.float64), np.asarray(light, np.float64)
        if len(scores) != len(light):
            raise ValueError(f"{len(scores)} kept scores for {len(light)} brightness values")
        if len(scores) < limits.reference_windows * limits.window:
            raise ValueError(f"the drift reference needs {limits.reference_windows * limits.window} kept frames "
                             f"({limits.reference_windows * limits.window * limits.every} frames), got {len(scores)}")
        edges = _light_edges(light, limits.light_bins)
        statistics = []
        for start in range(0, len(scores) - limits.window + 1, limits.stride):
            rest = np.ones(len(scores), bool)
            rest[start:start + limits.window] = False
            rest_edges = _light_edges(light[rest], limits.light_bins)
            others = cls(rest_edges, _score_quantiles(scores[rest], light[rest], rest_edges, limits), 1.0, int(rest.sum()), limits)
            inside = slice(start, start + limits.window)
            statistics.append(uniform_ks_statistic(others.transform(scores[inside], light[inside])))
        spread = math.sqrt(float(np.mean(np.square(statistics)))) / KOLMOGOROV_RMS
        return cls(edges, _score_quantiles(scores, light, edges, limits), spread, len(scores) * limits.every, limits)

    @property
    def threshold(self) -> float:
        """The statistic a test passes at its share of the budget."""
        return self.spread * kolmogorov_quantile(self.limits.test_false_alarm_rate)

    def transform(self, scores: np.ndarray, light: np.ndarray) -> np.ndarray:
        """Each score's share of the reference's scores at its light below it (:data:`UNSEEN` for
        a light beyond the reference's)."""
        scores, light = np.atleast_1d(np.asarray(scores, np.float64)), np.atleast_1d(np.asarray(light, np.float64))
        margin = self.limits.light_margin
        bins = np.clip(np.searchsorted(self.light_edges[1:-1], light, "right"), 0, len(self.score_quantiles) - 1)
        out = np.empty(len(scores))
        for i, (score, b) in enumerate(zip(scores, bins)):
            q = self.score_quantiles[b]
            low, high = np.searchsorted(q, score, "left"), np.searchsorted(q, score, "right")
            if low == high:  # between two quantiles (or beyond them all): linear
                out[i] = float(np.interp(score, q, self._levels))
            else:  # on tied quantiles: a random point over the share they hold
                out[i] = self._rng.uniform(self._levels[low], self._levels[high - 1])
        unseen = (light > self.light_edges[-1] * (1 + margin)) | (light < self.light_edges[0] * (1 - margin))
        out[unseen] = UNSEEN
        return out

    def to_view(self, data: str = "") -> DriftView:
        """The manifest's ``drift``."""
        lim = self.limits
        return DriftView(every=lim.every, window=lim.window, stride=lim.stride, light_edges=[round(float(v), 4) for v in self.light_edges],
                         score_quantiles=[[float(f"{v:.6g}") for v in row] for row in self.score_quantiles],
                         spread=round(self.spread, 6), frames=max(1, self.frames), data=data, date=now_iso())

    @classmethod
    def from_view(cls, view: DriftView, limits: DriftLimits = DriftLimits()) -> "DriftReference":
        """From the manifest's ``drift`` (its sampling wins over ``limits``': the spread was measured with it)."""
        if not view.light_edges or len(view.score_quantiles) != len(view.light_edges) - 1:
            raise ManifestError(f"drift: {len(view.score_quantiles)} rows of score quantiles for {len(view.light_edges)} light edges")
        limits = DriftLimits(**{**{k: getattr(limits, k) for k in limits.__dataclass_fields__},
                                "every": view.every, "window": view.window, "stride": view.stride,
                                "light_bins": len(view.score_quantiles), "quantiles": len(view.score_quantiles[0])})
        return cls(np.array(view.light_edges), np.array(view.score_quantiles), view.spread, view.frames, limits)


def _light_edges(light: np.ndarray, bins: int) -> np.ndarray:
    return np.quantile(light, np.linspace(0.0, 1.0, bins + 1))


def _score_quantiles(scores: np.ndarray, light: np.ndarray, edges: np.ndarray, limits: DriftLimits) -> np.ndarray:
    bins = np.clip(np.searchsorted(edges[1:-1], light, "right"), 0, len(edges) - 2)
    levels = np.linspace(0.0, 1.0, limits.quantiles)
    # a bin the footage left empty (a light held by one window alone) borrows all the scores
    return np.array([np.quantile(scores[bins == b] if (bins == b).any() else scores, levels) for b in range(len(edges) - 1)])


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
    """One camera's drift watch: :meth:`update` once per frame with its score and brightness.

    Args:
        reference: the calibration footage's (:meth:`DriftReference.from_view` of the manifest's
            ``drift``); None: learnt from the stream's first ``limits.reference_windows`` windows.
        limits: the watch's limits (a given reference's sampling wins).
    """

    def __init__(self, reference: DriftReference | None = None, limits: DriftLimits = DriftLimits()):
        self.limits = reference.limits if reference is not None else limits
        self.reference: DriftReference | None = None
        self.threshold: float | None = None
        self._learning: tuple[list[float], list[float]] = ([], [])
        self._window: deque[float] = deque(maxlen=self.limits.window)
        self._fresh = 0
        self._frames = 0
        self.state = DriftState()
        if reference is not None:
            self._use(reference)

    @property
    def keeps_next(self) -> bool:
        """Whether the next frame added (not held) is kept: only its brightness needs measuring."""
        return self._frames % self.limits.every == 0

    def _use(self, reference: DriftReference) -> None:
        self.reference, self.threshold = reference, reference.threshold

    def update(self, score: float, light: float, hold: bool = False) -> DriftState:
        """Add one frame's score and :func:`frame_light`; ``hold`` (an event is open, the view is
        changed) freezes the watch."""
        lim = self.limits
        state = self.state = DriftState(self.state.drifting, self.state.statistic, self.threshold, frozen=hold)
        if hold:
            return state
        self._frames += 1
        if (self._frames - 1) % lim.every:
            return state
        if self.reference is None:
            self._learning[0].append(float(score))
            self._learning[1].append(float(light))
            if len(self._learning[0]) >= lim.reference_windows * lim.window:
                self._use(DriftReference.from_kept(np.array(self._learning[0]), np.array(self._learning[1]), lim))
                self._learning = ([], [])
                state.threshold = self.threshold
            return state
        self._window.append(float(self.reference.transform(score, light)[0]))
        self._fresh += 1
        if len(self._window) == lim.window and self._fresh >= lim.stride:
            self._fresh = 0
            state.statistic = uniform_ks_statistic(np.fromiter(self._window, np.float64))
            drifting = state.statistic > self.threshold
            state.started, state.ended = drifting and not state.drifting, state.drifting and not drifting
            state.drifting = drifting
        return state
