"""New thresholds for a deployed model from new normal footage, the old ones kept in its history.

Two targets:

- a **frame rate** (``--false-alarm-rate``): that share of the footage's frames fire;
- an **alarm budget** (``--alarms-per-day``): the thresholds *and* the episode rule are solved
  together so that the episodes opened on the footage (what wakes an operator), counted at its
  frame rate, stay within the budget. Each candidate rule (k firing frames of n; a CUSUM of the
  score in units of the threshold) gets the lowest threshold that keeps the budget, among the
  per-frame rates of :func:`rate_grid`, with at most :data:`MAX_OPEN_SHARE` of the frames inside
  episodes; the rule whose threshold is lowest (ties: the one that opens soonest) is stored in the
  manifest with the thresholds, and every candidate's outcome is reported (docs/calibration.md).

Footage is streamed: frames go through the detector in small batches and only what the
thresholds need is kept (ALOCC: one score per frame; AVID: the residual's block peaks and the
region map, ``rows × cols`` numbers per frame), so minutes of 1080p stay in bounded memory. Each
frame's content hash (:mod:`occ.runtime.fingerprint`) is taken on the way, so footage the model
was trained on is refused.
"""
from __future__ import annotations

import dataclasses
import getpass
import math
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from occ.runtime.detector import Detector, open_detector
from occ.runtime.events import EpisodeCount, FeedbackError, count_episodes, hard_normal_clips
from occ.runtime.files import same_file, write_atomic
from occ.runtime.fingerprint import Fingerprint, Overlap, frame_hash
from occ.runtime.manifest import AlarmRate, DriftView, EpisodeRule, Manifest, ManifestError, Threshold, engine_sidecar, write_manifest
from occ.runtime.scoring import (alocc_fires, alocc_frame_scores, alocc_patch_map, alocc_thresholds, avid_fires, avid_thresholds,
                                 block_peaks, block_values, frame_scores, threshold_warnings)
from occ.runtime.scoring.drift import DriftLimits, DriftReference, frame_light
from occ.runtime.scoring.scene_guard import ReferenceBuilder
from occ.runtime.sources import SourceError, open_source, resolve_source

from .datasets.common import Clip, DatasetError, data_name
from .datasets.footage import DEFAULT_SPLIT, Split, as_read, is_footage, open_footage, split_footage
from .datasets.spec import load_video_data
from .datasets.video import read_video
from .datasets.walkway_day import is_day, open_day
from .metrics import poisson_rate_interval

BATCH = 32


HOURS_PER_DAY = 24.0


class TrainingFootageError(DatasetError):
    """Calibration footage that the model was trained on."""


@dataclass
class CalibrationResult:
    """What a calibration found and did.

    Attributes:
        manifest: the model's manifest with the new thresholds (and episode rule).
        frames: normal frames scored.
        previous: the manifest before (None for :func:`thresholds_from_footage`).
        fps: the footage's frame rate, frames per second.
        expected: episodes opened on the footage at the new thresholds and rule.
        previous_expected: the same at the previous thresholds and rule.
        rules: each candidate episode rule's outcome at an alarm budget (:class:`RuleOutcome`).
        choice: why the stored rule was chosen.
        overlap: the footage against the model's training fingerprint (None: not recorded).
        hard_normal: the camera's hard-normal clips included (None: no ``hard_normal`` given).
        warnings: one line each.
        written: the file that now holds the manifest (None: a dry run).
    """

    manifest: Manifest
    frames: int
    written: Path | None = None
    previous: Manifest | None = None
    fps: float | None = None
    expected: AlarmRate | None = None
    previous_expected: AlarmRate | None = None
    rules: list["RuleOutcome"] = field(default_factory=list)
    choice: str = ""
    overlap: Overlap | None = None
    hard_normal: HardNormalUse | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def minutes(self) -> float | None:
        return self.frames / self.fps / 60.0 if self.fps else None

    def moved(self) -> dict[str, Any]:
        """How the calibration moved things: each threshold's ``old`` and ``new`` value with the
        relative ``change``, and with an alarm budget the alarms a day expected on this footage
        before and after (``alarms_per_day``; None without a budget)."""
        previous = self.previous.thresholds if self.previous is not None else {}
        thresholds = {}
        for name, threshold in self.manifest.thresholds.items():
            old = previous[name].value if name in previous else None
            thresholds[name] = {"old": old, "new": threshold.value, "change": (threshold.value - old) / abs(old) if old else None}
        budget = next(iter(self.manifest.thresholds.values())).alarms_per_day_budget
        alarms = None
        if budget is not None and self.expected is not None:
            alarms = {"old": self.previous_expected.per_day if self.previous_expected is not None else None, "new": self.expected.per_day}
        return {"thresholds": thresholds, "alarms_per_day": alarms}


def _batches(detector: Detector, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Network inputs of a clip in batches, through the detector's own streaming preprocessor."""
    detector.reset()
    pending: list[np.ndarray] = []
    for frame in frames:
        pending.append(detector.preprocessor.push(frame))
        if len(pending) == BATCH:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


@dataclass
class FootageStatistics:
    """What the thresholds need from normal footage, frame by frame.

    Attributes:
        method: the model's method.
        values: ALOCC: ``frame_scores`` ``(N,)``; AVID: ``peaks`` and ``regions`` ``(N, rows, cols)``.
        clip_starts: the frame index where each clip (a fresh temporal context) begins.
    """

    method: str
    values: dict[str, np.ndarray]
    clip_starts: list[int]

    @property
    def frames(self) -> int:
        return len(next(iter(self.values.values())))

    def tail(self, clips: int) -> "FootageStatistics":
        """The last ``clips`` clips alone."""
        first = self.clip_starts[-clips] if clips else self.frames
        return FootageStatistics(self.method, {name: value[first:] for name, value in self.values.items()},
                                 [start - first for start in self.clip_starts[-clips:]] if clips else [])


def _alocc_statistics(detector: Detector, clips: Iterable[Iterable[np.ndarray]]) -> FootageStatistics:
    scores, starts, count = [], [], 0
    for clip in clips:
        starts.append(count)
        for inputs in _batches(detector, clip):
            outputs = detector.forward(detector.prepare(inputs))
            scores.append(alocc_frame_scores(alocc_patch_map(outputs, detector.manifest)))
            count += len(inputs)
    return FootageStatistics("alocc", {"frame_scores": np.concatenate(scores) if scores else np.zeros(0)}, starts)


def _avid_statistics(detector: Detector, clips: Iterable[Iterable[np.ndarray]]) -> FootageStatistics:
    cell = detector.manifest.regions.cell
    peaks, regions, starts, count = [], [], [], 0
    for clip in clips:
        starts.append(count)
        for inputs in _batches(detector, clip):
            outputs = detector.backend.infer(detector.prepare(inputs), ["residual", "region_anomaly"])
            peaks.append(block_peaks(outputs["residual"], cell).astype(np.float32))
            regions.append(np.asarray(outputs["region_anomaly"], np.float32))
            count += len(inputs)
    empty = np.zeros((0, detector.manifest.regions.rows, detector.manifest.regions.cols), np.float32)
    return FootageStatistics("avid", {"peaks": np.concatenate(peaks) if peaks else empty,
                                      "regions": np.concatenate(regions) if regions else empty}, starts)


def footage_statistics(detector: Detector, clips: Iterable[Iterable[np.ndarray]]) -> FootageStatistics:
    """Score normal footage with ``detector``, keeping what thresholds need; each clip starts afresh."""
    return (_alocc_statistics if detector.manifest.method == "alocc" else _avid_statistics)(detector, clips)


def thresholds_at_rate(manifest: Manifest, statistics: FootageStatistics, false_alarm_rate: float, data: str) -> dict[str, Threshold]:
    """The thresholds at which ``false_alarm_rate`` of the footage's frames fire, by the model's
    scoring contract."""
    values = statistics.values
    if manifest.method == "alocc":
        return alocc_thresholds(values["frame_scores"], false_alarm_rate, data)
    return avid_thresholds(manifest.scoring, values["peaks"], values["regions"], false_alarm_rate, data)


def scores_at(manifest: Manifest, statistics: FootageStatistics, thresholds: dict[str, float]) -> tuple[np.ndarray, np.ndarray, float]:
    """The footage's frame scores and decisions at ``thresholds``, with the value the scores are
    compared with (τ for ALOCC, 1 for AVID)."""
    values = statistics.values
    if manifest.method == "alocc":
        tau = float(thresholds["tau"])
        return values["frame_scores"], alocc_fires(values["frame_scores"], tau), tau
    blocks = block_values(values["peaks"], values["regions"], float(thresholds["alpha"]), float(thresholds["zeta"]), manifest.scoring)
    scores = frame_scores(blocks, manifest.scoring)
    return scores, avid_fires(scores), 1.0


def alarm_rate(alarms: int, frames: int, fps: float) -> AlarmRate:
    """Alarms counted on ``frames`` frames at ``fps`` as a rate per hour and per day, with the exact
    95 % Poisson interval (:func:`occ.evaluation.metrics.poisson_rate_interval`)."""
    hours = frames / fps / 3600.0
    low, high = poisson_rate_interval(alarms, hours)
    return AlarmRate(alarms=int(alarms), hours=hours, per_hour=alarms / hours, per_hour_low=low, per_hour_high=high,
                     per_day=alarms / hours * HOURS_PER_DAY, per_day_low=low * HOURS_PER_DAY, per_day_high=high * HOURS_PER_DAY)


def alarms_at(manifest: Manifest, statistics: FootageStatistics, thresholds: dict[str, float], rule: EpisodeRule) -> EpisodeCount:
    """Episodes ``rule`` opens on the footage at ``thresholds`` (each clip a fresh stream), and the
    frames they hold open."""
    scores, decisions, threshold = scores_at(manifest, statistics, thresholds)
    return count_episodes(scores, decisions, rule, threshold, statistics.clip_starts)


# ---- an alarm budget ------------------------------------------------------------------------------------
# Episode rules an alarm budget chooses among: k firing frames of n, and a CUSUM's (reference, decision)
# in units of the threshold. Only those that open within the opening limit are tried.
K_OF_N_CANDIDATES = ((1, 1), (2, 2), (2, 3), (3, 3), (3, 5), (4, 4), (4, 6), (5, 5), (5, 8))
CUSUM_CANDIDATES = ((1.0, 0.5), (1.0, 1.0), (1.0, 2.0), (0.8, 1.0), (0.8, 2.0), (0.5, 1.0), (0.5, 2.0))
# An alarm budget's rules must open within this long of an event whose frames score twice the threshold.
MAX_OPENING_SECONDS = 0.5
# An alarm budget also bounds the share of normal frames spent inside episodes: a threshold so low that
# normal frames keep one episode open for hours raises one alarm, and hides every event behind it.
MAX_OPEN_SHARE = 0.01
# An alarm budget's thresholds let at most this share of normal frames fire: the frame decisions also
# flag frames in the per-frame log and draw the overlays, whatever the episode rule makes of them.
MAX_FRAME_RATE = 0.05
# Per-frame rates tried, per factor of ten: the threshold's resolution before the chosen rule's refinement.
RATES_PER_DECADE = 12


def opening_delay(rule: EpisodeRule) -> int:
    """Frames ``rule`` takes to open an episode when every frame scores twice the threshold."""
    if rule.kind == "k_of_n":
        return int(rule.k)
    return int(math.floor(rule.decision / (2.0 - rule.reference))) + 1


def candidate_rules(close_after: int, max_opening_frames: int) -> list[EpisodeRule]:
    """The episode rules an alarm budget chooses among (see :data:`K_OF_N_CANDIDATES`,
    :data:`CUSUM_CANDIDATES`), those that open within ``max_opening_frames``."""
    rules = [EpisodeRule("k_of_n", k, n, close_after) for k, n in K_OF_N_CANDIDATES]
    rules += [EpisodeRule("cusum", None, None, close_after, reference, decision) for reference, decision in CUSUM_CANDIDATES]
    return [rule for rule in rules if opening_delay(rule) <= max(1, max_opening_frames)]


def rate_grid(frames: int) -> np.ndarray:
    """Per-frame false-alarm rates tried, from one frame in the footage (nothing fires below it)
    to :data:`MAX_FRAME_RATE`, :data:`RATES_PER_DECADE` a decade."""
    low, high = min(0.5 / max(frames, 1), MAX_FRAME_RATE / 2), MAX_FRAME_RATE
    count = max(2, int(math.ceil(math.log10(high / low) * RATES_PER_DECADE)) + 1)
    return np.geomspace(low, high, count)


@dataclass
class RuleOutcome:
    """An episode rule at an alarm budget: the highest per-frame rate (lowest threshold) of the
    grid that keeps it, with the alarms counted there.

    Attributes:
        rule: the episode rule.
        frame_rate: the share of normal frames that fire at its thresholds (0: none kept the budget).
        thresholds: the threshold values there.
        alarms: episodes it opened on the footage there.
        opening_frames: frames it takes to open on frames at twice the threshold.
        note: why a rule could not be used, if so.
    """

    rule: EpisodeRule
    frame_rate: float
    thresholds: dict[str, float]
    alarms: int
    opening_frames: int
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"rule": dataclasses.asdict(self.rule), "described": self.rule.describe(), "frame_rate": self.frame_rate,
                "thresholds": self.thresholds, "alarms": self.alarms, "opening_frames": self.opening_frames, "note": self.note}


def _budget_outcome(rule: EpisodeRule, grid: np.ndarray, at_rate: Callable[[float], dict[str, float]],
                    count: Callable[[dict[str, float], EpisodeRule], EpisodeCount], keeps: Callable[[EpisodeCount], bool]) -> RuleOutcome:
    """The highest rate of ``grid`` at which the footage's episodes keep the budget, by bisection over
    the grid (alarms grow with the rate, up to episodes merging)."""
    low, high = -1, len(grid)  # grid[low] keeps the budget (-1: nothing tried yet), grid[high] does not
    found: tuple[dict[str, float], int] | None = None
    while high - low > 1:
        middle = (low + high) // 2
        thresholds = at_rate(float(grid[middle]))
        episodes = count(thresholds, rule)
        if keeps(episodes):
            low, found = middle, (thresholds, episodes.opened)
        else:
            high = middle
    if found is None:
        return RuleOutcome(rule, 0.0, {}, 0, opening_delay(rule), "no rate on the grid keeps the budget")
    return RuleOutcome(rule, float(grid[low]), found[0], found[1], opening_delay(rule))


def choose_rule(outcomes: list[RuleOutcome]) -> tuple[RuleOutcome, str]:
    """The outcome with the lowest threshold (highest per-frame rate) at the budget; ties go to the
    rule that opens soonest, then to k-of-n (the simpler rule). Returns it with the reason in words."""
    usable = [o for o in outcomes if o.frame_rate > 0]
    if not usable:
        raise DatasetError("no episode rule keeps the alarm budget on this footage, even with thresholds above every frame")
    ranked = sorted(usable, key=lambda o: (-o.frame_rate, o.opening_frames, o.rule.kind != "k_of_n"))
    best = ranked[0]
    why = (f"{best.rule.kind} ({best.rule.describe()}) keeps the budget with the lowest threshold: {best.frame_rate:.3g} of normal frames "
           f"fire, opening {best.opening_frames} frame(s) into an event at twice the threshold")
    other = next((o for o in ranked if o.rule.kind != best.rule.kind), None)
    if other is not None:
        why += f"; the best {other.rule.kind} ({other.rule.describe()}) lets {other.frame_rate:.3g} fire"
    return best, why


def solve_alarm_budget(manifest: Manifest, statistics: FootageStatistics, alarms_per_day: float, fps: float, data: str,
                       max_opening_seconds: float = MAX_OPENING_SECONDS) -> tuple[dict[str, Threshold], RuleOutcome, list[RuleOutcome], str]:
    """Thresholds and an episode rule for at most ``alarms_per_day`` episodes a day on this footage.

    Every rule of :func:`candidate_rules` that opens within ``max_opening_seconds`` (at ``fps``)
    gets the highest per-frame rate of :func:`rate_grid` whose alarms keep the budget, with at most
    :data:`MAX_OPEN_SHARE` of the frames inside episodes; the chosen rule's rate is then refined
    between its grid neighbours. Rates are the search variable: between two neighbouring frame
    scores the rate does not change, so a threshold is never placed between them. (A CUSUM needs a positive threshold to
    measure scores in; with ALOCC's τ at or below 0 only k-of-n rules are tried.)

    Args:
        manifest: the model's manifest (its scoring contract and current episode rule's ``close_after``).
        statistics: the footage's (:func:`footage_statistics`).
        alarms_per_day: the budget, episodes per day, > 0.
        fps: the footage's frame rate.
        data: the footage's name, for the thresholds' provenance.
        max_opening_seconds: how soon a rule must open on frames at twice the threshold.

    Returns:
        ``(thresholds, chosen, outcomes, why)``: the thresholds with provenance, the chosen
        outcome, every candidate's outcome, and the choice in words.
    """
    if not alarms_per_day > 0:
        raise DatasetError(f"the alarm budget must be > 0 alarms per day, got {alarms_per_day}")
    frames = statistics.frames
    allowed = alarms_per_day * frames / fps / 3600.0 / HOURS_PER_DAY
    cache: dict[float, dict[str, Threshold]] = {}

    def thresholds(rate: float) -> dict[str, Threshold]:
        if rate not in cache:
            cache[rate] = thresholds_at_rate(manifest, statistics, rate, data)
        return cache[rate]

    def values(rate: float) -> dict[str, float]:
        return {name: t.value for name, t in thresholds(rate).items()}

    def alarms(at: dict[str, float], rule: EpisodeRule) -> EpisodeCount:
        try:
            return alarms_at(manifest, statistics, at, rule)
        except ValueError:  # a cusum at a threshold <= 0: no scale to measure scores in
            return EpisodeCount(frames + 1, frames)

    def keeps(episodes: EpisodeCount) -> bool:
        return episodes.opened <= allowed and episodes.open_frames <= MAX_OPEN_SHARE * frames

    grid = rate_grid(frames)
    rules = candidate_rules(manifest.episodes.close_after, int(round(max_opening_seconds * fps)))
    outcomes = [_budget_outcome(rule, grid, values, alarms, keeps) for rule in rules]
    chosen, why = choose_rule(outcomes)
    index = int(np.searchsorted(grid, chosen.frame_rate))
    if index + 1 < len(grid):  # refine between the chosen rate and the next one up, which broke the budget
        fine = np.geomspace(grid[index], grid[index + 1], RATES_PER_DECADE + 1)[1:-1]
        refined = _budget_outcome(chosen.rule, np.concatenate([[grid[index]], fine]), values, alarms, keeps)
        if refined.frame_rate > chosen.frame_rate:
            chosen = dataclasses.replace(chosen, frame_rate=refined.frame_rate, thresholds=refined.thresholds, alarms=refined.alarms)
    return thresholds(chosen.frame_rate), chosen, outcomes, why


def budget_warning(alarms_per_day: float, frames: int, fps: float) -> str | None:
    """One line when the footage is too short to see the budget's rate at all: fewer hours than one
    alarm at that rate takes. It names the length that one alarm takes, and the length over which
    seeing none would show the budget kept at 95 %."""
    hours = frames / fps / 3600.0
    one_alarm = HOURS_PER_DAY / alarms_per_day
    if hours >= one_alarm:
        return None
    proof = poisson_rate_interval(0, 1.0)[1] / (alarms_per_day / HOURS_PER_DAY)
    return (f"{hours * 60:.1f} minutes of footage cannot show a rate of {alarms_per_day:g} alarms a day: one alarm at that rate "
            f"takes {_duration(one_alarm)}, and seeing none in {_duration(proof)} would show it kept at 95 %; calibrate on longer footage")


def _duration(hours: float) -> str:
    return f"{hours * 60:.0f} minutes" if hours < 2 else f"{hours:.1f} hours"


def thresholds_from_footage(detector: Detector, clips: Iterable[Iterable[np.ndarray]], false_alarm_rate: float,
                            data: str) -> CalibrationResult:
    """The detector's model with thresholds set so that ``false_alarm_rate`` of these normal frames
    fire (by its own scoring contract); every clip starts a fresh temporal context."""
    manifest = Manifest.from_dict(detector.manifest.to_dict())
    statistics = footage_statistics(detector, clips)
    for name, threshold in thresholds_at_rate(manifest, statistics, false_alarm_rate, data).items():
        manifest.set_threshold(name, threshold)
    return CalibrationResult(manifest.validate(), statistics.frames)


@dataclass
class Footage:
    """Normal footage to calibrate on, read lazily: each frame's content hash and capture time are
    kept as the frames stream through the detector.

    Attributes:
        name: the footage's name as the manifest records it (no folders, no passwords).
        clips: frame iterables, one per clip.
        fps: the frame rate the data set states (None: measured from the frames' capture times).
        hashes: each frame's :func:`~occ.runtime.fingerprint.frame_hash`, once read.
        times: capture times of a source's frames, once read.
    """

    name: str
    clips: list[Iterable[np.ndarray]]
    fps: float | None = None
    hashes: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    def measured_fps(self) -> float | None:
        """The stated frame rate, else the one the capture times show."""
        if self.fps:
            return self.fps
        if len(self.times) >= 2 and self.times[-1] > self.times[0]:
            return (len(self.times) - 1) / (self.times[-1] - self.times[0])
        return None


def _hashed(frames: Iterable[np.ndarray], hashes: list[int], size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    """``frames``, hashing each as training read it: gray, at ``size`` (the network's input size)
    for footage, whose training fingerprint holds the frames training saw, not the files'."""
    for frame in frames:
        hashes.append(frame_hash(as_read(frame, size)))
        yield frame


def _source_frames(spec: str, minutes: float, progress: Callable[[], None] | None, times: list[float]) -> Iterator[np.ndarray]:
    deadline = time.monotonic() + minutes * 60
    with open_source(spec) as source:
        for frame in source:
            if frame.timestamp is not None:
                times.append(frame.timestamp)
            yield frame.image
            if progress is not None:
                progress()
            if source.live and time.monotonic() > deadline:
                break


def _counted(frames: Iterable[np.ndarray], progress: Callable[[], None] | None) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame
        if progress is not None:
            progress()


def footage(data: str, minutes: float, progress: Callable[[], None] | None = None, split: Split = DEFAULT_SPLIT,
            size: tuple[int, int] | None = None) -> Footage:
    """Normal footage named by ``data``: the calibration part of footage split by ``split`` (the
    minutes that training with the same split never saw), the training clips of a UCSD-layout
    folder or a ``walkway`` spec, the stretches of a walkway day with no event in view (each its
    own clip), or ``minutes`` of a live source. Frames are streamed; each is hashed as training
    at the network's input ``size`` (height, width) would have read it."""
    if is_day(Path(data)):  # a day's folder holds videos too, but its events must stay out
        day = open_day(Path(data))
        result = Footage(data_name(data), [], day.config.fps)
        result.clips = [_hashed(run, result.hashes, size) for run in day.normal_runs()]
        return result
    if is_footage(data):
        recorded = open_footage(data)
        pieces = [piece for piece in split_footage(recorded, split) if piece.part == "calibration"]
        if not pieces:
            raise DatasetError(f"{data}: the calibration part of the split ({split} %) holds no frames")
        spans = ", ".join(f"{row['file']} {row['from']}-{row['to']}" for row in (piece.row() for piece in pieces))
        result = Footage(f"{recorded.description} {spans}", [], pieces[0].file.fps)
        result.clips = [_hashed(_counted(piece.file.read(piece.first, piece.stop), progress), result.hashes, size)
                        for piece in pieces]
        return result
    path = Path(data)
    ucsd_like = path.is_dir() and ((path / "Train").is_dir() or any(p.is_dir() for p in path.iterdir()))
    if data.startswith("walkway") or ucsd_like:
        clips: list[Clip] = load_video_data(data, splits=("train",)).train
        result = Footage(data_name(data), [], next((c.fps for c in clips if c.fps), None))
        result.clips = [_hashed(clip.frames, result.hashes, None) for clip in clips]  # data sets train at their own size
        return result
    try:
        resolve_source(data)
    except SourceError as exc:
        raise DatasetError(f"{exc} or a data set (UCSD-layout folder, walkway[:options])") from None
    result = Footage(data_name(data), [])
    result.clips = [_hashed(_source_frames(data, minutes, progress, result.times), result.hashes, size)]
    return result


@dataclass
class HardNormalUse:
    """A camera's hard-normal set in a calibration (``occ feedback EVENT_ID --not-anomaly`` fills it):
    its clips are normal footage by the operator's word, scored with the rest.

    Attributes:
        folder: the camera's hard-normal folder.
        events: the events whose clips were included, oldest first.
        frames: their frames.
        alarms_before: episodes the previous thresholds and episode rule open on these clips (each a
            fresh stream); None where the model had no thresholds.
        alarms_after: the same at the new ones.
        firing_before: frames of these clips that fire at the previous thresholds.
        firing_after: the same at the new ones.
    """

    folder: str
    events: list[str]
    frames: int = 0
    alarms_before: int | None = None
    alarms_after: int = 0
    firing_before: int | None = None
    firing_after: int = 0

    @property
    def clips(self) -> int:
        return len(self.events)

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "clips": self.clips}

    def recorded(self) -> dict[str, Any]:
        """What the threshold history keeps of it."""
        return {"folder": Path(self.folder).name, "clips": self.clips, "frames": self.frames, "events": self.events}


def add_hard_normal(source: Footage, folder: str | Path, size: tuple[int, int] | None) -> HardNormalUse:
    """Append a camera's hard-normal clips to ``source`` (each its own clip, hashed like the rest).

    Raises:
        DatasetError: the folder is not a camera's hard-normal set, or a clip is missing.
    """
    try:
        clips = hard_normal_clips(folder)
    except FeedbackError as exc:
        raise DatasetError(str(exc)) from None
    source.clips += [_hashed(read_video(clip.clip, gray=False), source.hashes, size) for clip in clips]
    return HardNormalUse(str(folder), [clip.event_id for clip in clips])


def _hard_normal_alarms(use: HardNormalUse, manifest: Manifest, statistics: FootageStatistics, thresholds: dict[str, float],
                        rule: EpisodeRule) -> tuple[int, int]:
    """Episodes opened and frames firing on the hard-normal clips (the footage's last clips)."""
    clips = statistics.tail(use.clips)
    _, decisions, _ = scores_at(manifest, clips, thresholds)
    return alarms_at(manifest, clips, thresholds, rule).opened, int(np.count_nonzero(decisions))


def _lit(frames: Iterable[np.ndarray], light: list[float]) -> Iterator[np.ndarray]:
    for frame in frames:
        light.append(frame_light(frame))
        yield frame


def drift_reference(manifest: Manifest, statistics: FootageStatistics, thresholds: dict[str, float], light: list[float],
                    fps: float | None, data: str) -> DriftView | None:
    """The drift watch's reference from the footage's frame scores at the new thresholds (AVID's
    scores depend on α and ζ) and brightness; None when the footage holds under 4 windows (20
    minutes at 10 frames/s, where the service learns one from each stream's start instead)."""
    scores = scores_at(manifest, statistics, thresholds)[0]
    try:
        return DriftReference.learn(scores, np.asarray(light[:len(scores)]), DriftLimits(fps=fps or DriftLimits.fps)).to_view(data)
    except ValueError:
        return None


def calibrated_by() -> str:
    """``user@host`` of whoever runs the calibration."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def check_out_path(model: Path, out: Path | None) -> None:
    """``--out`` writes a new model: same kind of file as ``model``, never an existing file."""
    if out is None:
        return
    if out.suffix != model.suffix:
        raise DatasetError(f"{out}: --out must be a {model.suffix} file like the model")
    if out.exists() or same_file(out, model):
        raise DatasetError(f"{out}: already exists; --out writes a new model (remove it, or calibrate it in place)")
    if not out.parent.is_dir():
        raise DatasetError(f"{out}: folder {out.parent} does not exist")


def write_calibrated(model: Path, manifest: Manifest, out: Path | None = None) -> Path:
    """Store ``manifest`` in ``model``, or in a copy of it at ``out`` (with an engine's sidecar)."""
    if out is None:
        return write_manifest(model, manifest)
    if model.suffix == ".engine":
        write_atomic(engine_sidecar(out), engine_sidecar(model).read_bytes())
    write_atomic(out, model.read_bytes())
    return write_manifest(out, manifest)


def _training_overlap(previous: Manifest, source: Footage, data: str, force: bool) -> tuple[Overlap | None, list[str]]:
    fingerprint = Fingerprint.from_dict(previous.training.get("footage"))
    if fingerprint is None:
        return None, []
    overlap = fingerprint.overlap(source.hashes)
    if not overlap.is_training_footage:
        return overlap, []
    trained_on = previous.training.get("data") or "its training data"
    what = (f"{overlap.training} of {overlap.checked} checked frames are frames the model was trained on ({trained_on}): "
            "thresholds set on them flag everything else")
    if not force:
        raise TrainingFootageError(f"{data}: {what}; calibrate on other footage of the camera (--force to do it anyway)")
    return overlap, [f"{data}: {what} (calibrated anyway: --force)"]


def calibrate_model(model: str | Path, data: str, false_alarm_rate: float | None = 0.01, minutes: float = 5.0, backend: str = "ort-cpu",
                    progress: Callable[[], None] | None = None, alarms_per_day: float | None = None, fps: float | None = None,
                    force: bool = False, dry_run: bool = False, out: str | Path | None = None,
                    split: Split = DEFAULT_SPLIT, hard_normal: str | Path | None = None) -> CalibrationResult:
    """``occ calibrate``: new thresholds for ``model`` from the normal footage ``data``, stored
    with the model (the old values go to its threshold history).

    Args:
        model: an exported model (``.onnx``) or an engine (``.engine``, its sidecar holds the manifest).
        data: normal footage (see :func:`footage`).
        false_alarm_rate: the share of the footage's frames that fire at the new thresholds (with
            no ``alarms_per_day``); the episode rule stays.
        minutes: live sources: how much to collect.
        backend: the inference backend.
        progress: called once per frame read from a source.
        alarms_per_day: an alarm budget: solve the thresholds and the episode rule so that the
            footage's episodes stay within it (:func:`solve_alarm_budget`).
        fps: the footage's frame rate; default: the data set's, or measured from capture times
            (without one, a frame rate's calibration reports no alarms per hour).
        force: calibrate even on the model's training footage.
        dry_run: compute and report, write nothing.
        out: write a new model there instead of changing ``model``.
        split: footage (a recording, video files): the shares of training, validation and
            calibration by time; its calibration part is used.
        hard_normal: a camera's hard-normal folder (``<hard-normal set>/<camera>``): its clips
            are added to the footage as normal, and the history records them.

    Raises:
        TrainingFootageError: ``data`` holds the model's training frames (without ``force``).
        DatasetError: no frames, no frame rate for an alarm budget, or a bad ``out``.
    """
    model, out = Path(model), Path(out) if out is not None else None
    check_out_path(model, out)
    if fps is not None and not fps > 0:
        raise DatasetError(f"--fps must be > 0, got {fps}")
    detector = open_detector(str(model), backend)
    try:
        previous = Manifest.from_dict(detector.manifest.to_dict())
        size = (previous.input.height, previous.input.width)
        source = footage(data, minutes, progress, split, size)
        hard = add_hard_normal(source, hard_normal, size) if hard_normal is not None else None
        scene = ReferenceBuilder()  # the scene guard's reference view, from the same frames
        light: list[float] = []  # each frame's brightness, for the drift watch's reference
        statistics = footage_statistics(detector, [_lit(scene.tapped(clip), light) for clip in source.clips])
    finally:
        detector.close()
    frames = statistics.frames
    if frames == 0:
        raise DatasetError(f"{data}: no frames to calibrate on")
    fps = fps or source.measured_fps()
    if not fps and alarms_per_day is not None:
        raise DatasetError(f"{data}: the footage does not say its frame rate, which an alarm budget needs; give --fps")
    overlap, warnings = _training_overlap(previous, source, data, force)
    provenance = f"{source.name} (normal, {frames} frames)"
    if hard is not None:
        hard.frames = statistics.tail(hard.clips).frames
        provenance = (f"{source.name} (normal, {frames - hard.frames} frames) + hard-normal set {Path(hard.folder).name} "
                      f"({hard.clips} clip(s), {hard.frames} frames)")
    result = CalibrationResult(Manifest.from_dict(previous.to_dict()), frames, previous=previous, fps=fps, overlap=overlap,
                               hard_normal=hard)
    if alarms_per_day is not None:
        thresholds, chosen, result.rules, result.choice = solve_alarm_budget(previous, statistics, alarms_per_day, fps, provenance)
        rule = chosen.rule
        warnings += [w for w in [budget_warning(alarms_per_day, frames, fps)] if w]
    else:
        thresholds, rule = thresholds_at_rate(previous, statistics, false_alarm_rate or 0.01, provenance), previous.episodes
    values = {name: t.value for name, t in thresholds.items()}
    try:
        old = {name: previous.threshold(name) for name in values}
    except ManifestError:  # no previous thresholds
        old = None
    if fps:
        result.expected = alarm_rate(alarms_at(previous, statistics, values, rule).opened, frames, fps)
    if hard is not None:
        hard.alarms_after, hard.firing_after = _hard_normal_alarms(hard, previous, statistics, values, rule)
    try:
        if fps and old is not None:
            result.previous_expected = alarm_rate(alarms_at(previous, statistics, old, previous.episodes).opened, frames, fps)
        if hard is not None and old is not None:
            hard.alarms_before, hard.firing_before = _hard_normal_alarms(hard, previous, statistics, old, previous.episodes)
    except ValueError:  # a cusum at τ <= 0: the old values say nothing
        pass
    stamp = dict(by=calibrated_by(), minutes=frames / fps / 60.0 if fps else None, fps=fps, alarms_per_day_budget=alarms_per_day,
                 expected_alarms=result.expected, episodes=rule, episodes_choice=result.choice)
    for name, threshold in thresholds.items():
        replaced_by = {"value": threshold.value, "hard_normal": hard.recorded()} if hard is not None else None
        result.manifest.set_threshold(name, dataclasses.replace(threshold, **stamp), replaced_by)
    result.manifest.episodes = rule
    reference = scene.reference()
    result.manifest.scene = reference.to_view(source.name) if reference is not None else None
    result.manifest.drift = drift_reference(previous, statistics, values, light, fps, source.name)
    result.manifest.validate()
    result.warnings = warnings + threshold_warnings(result.manifest)
    if not dry_run:
        result.written = write_calibrated(model, result.manifest, out)
    return result
