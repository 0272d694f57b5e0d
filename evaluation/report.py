"""The evaluation report of video data: typed, with one JSON form (what ``occ eval --json`` writes).

:func:`report` turns scored clips (:class:`ClipScores`) into an :class:`EvaluationReport`. Every
metric is a dataclass in its own module (its fields are its JSON keys); the report holds them as
fields. :func:`record_json` writes any such record, :meth:`EvaluationReport.from_json` reads a saved
report back with every field checked against its type (the manifest's typed reader).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from occ.runtime.manifest import ManifestError
from occ.runtime.manifest import _build as build_typed

from .localization import DetectionCriteria, TruthRegion, maps_criteria
from .metrics import (DetectionDelay, FalseAlarmRate, FrameLevelReport, MetricError, PixelLevel, detection_delays, f1_score,
                      false_alarms_per_hour, frame_level, minmax_per_video, pixel_level, roc_auc, smooth_scores)


@dataclass
class ClipScores:
    """One clip's labels, frame scores and decisions (:func:`~occ.evaluation.protocols.score_clips`), and its
    pixel-level and localization inputs where the clip has masks: what :func:`report` reads."""

    name: str
    labels: np.ndarray
    scores: np.ndarray
    decisions: np.ndarray
    pixel_labels: np.ndarray | None = None
    pixel_scores: np.ndarray | None = None
    fps: float | None = None  # the clip's frame rate, where its reader knows it
    location_maps: list[np.ndarray] | None = None  # per-pixel localization scores per frame (network size), where masks exist
    truth: list[TruthRegion] | None = None  # the ground-truth regions of the clip's masks, one track per anomalous run
    frame_size: tuple[int, int] | None = None


class ReportError(ValueError):
    """A saved report does not read as one; the message is one line."""


def _optional(**kwargs: Any) -> Any:
    """A field left out of the JSON while it is None (the data or the run did not give it)."""
    return field(default=None, metadata={"omit_when_none": True}, **kwargs)


def record_json(value: Any) -> Any:
    """``value`` as JSON: a dataclass becomes an object of its fields in their order (less the
    optional ones that are None), lists and dicts are written item by item."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: record_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not (f.metadata.get("omit_when_none") and getattr(value, f.name) is None)}
    if isinstance(value, (list, tuple)):
        return [record_json(item) for item in value]
    if isinstance(value, dict):
        return {key: record_json(item) for key, item in value.items()}
    return value


@dataclass
class Unavailable:
    """A metric the data cannot give, and why (e.g. only one class present)."""

    error: str


@dataclass
class CameraVariants:
    """Frame-level measures of what a camera runs: each frame scored as it comes."""

    raw: FrameLevelReport | Unavailable


@dataclass
class AtThreshold:
    """Decisions at the stored thresholds (or those given for the run)."""

    f1_anomalous: float
    true_positive_rate: float | None  # None without anomalous frames
    false_positive_rate: float | None  # None without normal frames
    false_alarms_per_hour: FalseAlarmRate | Unavailable | None  # None when the frame rate is unknown
    detection_delay: DetectionDelay


@dataclass
class ClipRow:
    """One clip: its frames, its anomalous frames and its own frame AUC (None with one class only)."""

    clip: str
    frames: int
    anomalous: int
    auc: float | None


@dataclass(kw_only=True)
class EvaluationReport:
    """Frame level in every labelled variant, pixel level and localization where masks exist, and
    the decisions at the stored thresholds; ``occ eval`` adds the run's model, data, plots and
    thresholds.

    ``frame_level`` holds what a camera can run (raw frame scores); ``frame_level_offline`` the
    variants that need the whole video first (``smoothed_<window>``: a centred window,
    ``per_video_minmax``: each video's own min and max, and both), which no camera can run and
    which are reported apart so they are not taken for what deploys.

    Adding a metric touches the metric's module and this one:

    1. In the metric's module (``metrics.py``, ``localization.py``, or a new one), the function
       that computes it returns a dataclass whose fields are its JSON keys (``float | None`` where
       it may be missing; a nested record or ``list[...]`` of records where it has parts).
    2. Here, a field of that type on :class:`EvaluationReport` or :class:`AtThreshold` (with
       ``| Unavailable`` where the data may not give it; ``_optional()`` where the key should be
       left out when there is nothing to say) and one line in :func:`report` that fills it.

    ``to_json``, ``from_json`` and every reader of the other fields are unchanged; a display that
    should show the new metric reads it as an attribute (``occ/cli/run.py``'s tables, the demo).
    """

    model: str | None = _optional()
    data: str | None = _optional()
    protocol: str | None = _optional()
    frames: int
    anomalous_frames: int
    frame_level: CameraVariants
    frame_level_offline: dict[str, FrameLevelReport | Unavailable]
    at_stored_threshold: AtThreshold
    per_clip: list[ClipRow]
    pixel_level: PixelLevel | Unavailable | None = _optional()
    localization: DetectionCriteria | Unavailable | None = _optional()
    plots: list[str] | None = _optional()
    thresholds: dict[str, float] | None = _optional()
    threshold_overrides: dict[str, float] | None = _optional()

    def to_json(self) -> dict[str, Any]:
        """The report as JSON: the keys ``occ eval --json`` has always written, in their order."""
        return record_json(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "report") -> "EvaluationReport":
        """Read a report written by :meth:`to_json`, every field checked against its type.

        Raises:
            ReportError: ``data`` is not such a report; one line naming ``source`` and the field.
        """
        try:
            return build_typed(cls, data, "report")
        except ManifestError as exc:
            raise ReportError(f"{source}: not an evaluation report: {exc}") from None


def _variant(clips: list[ClipScores], per_video: bool, window: int) -> FrameLevelReport | Unavailable:
    scores = [c.scores for c in clips]
    if per_video:
        scores = minmax_per_video(scores)
    if window > 1:
        scores = [smooth_scores(s, window) for s in scores]
    try:
        return frame_level([c.labels for c in clips], scores)
    except MetricError as exc:
        return Unavailable(str(exc))


def clips_fps(clips: list[ClipScores]) -> float | None:
    """The frame rate all ``clips`` share, or None where one lacks a rate or they differ."""
    rates = {c.fps for c in clips}
    return rates.pop() if len(rates) == 1 and None not in rates else None


def report(clips: list[ClipScores], smoothing: int = 9, *, fps: float | None = None) -> EvaluationReport:
    """The report of scored clips (:func:`~occ.evaluation.protocols.score_clips`).

    At the stored threshold, beside F1 and the rates: ``false_alarms_per_hour`` (see
    :func:`~occ.evaluation.metrics.false_alarms_per_hour`, with the ``fps`` it used) and
    ``detection_delay`` (:func:`~occ.evaluation.metrics.detection_delays`). ``fps`` defaults to
    the clips' own rate (:func:`clips_fps`); with none known, ``false_alarms_per_hour`` is None.
    """
    labels = np.concatenate([c.labels for c in clips])
    decisions = np.concatenate([c.decisions for c in clips])
    fps = fps if fps is not None else clips_fps(clips)
    false_alarms: FalseAlarmRate | Unavailable | None = None
    if fps is not None and not (~labels).any():
        false_alarms = Unavailable("no frame is labelled normal")
    elif fps is not None:  # a bad fps raises: it is the caller's
        false_alarms = false_alarms_per_hour([c.labels for c in clips], [c.decisions for c in clips], fps)
    out = EvaluationReport(
        frames=int(labels.size),
        anomalous_frames=int(labels.sum()),
        frame_level=CameraVariants(raw=_variant(clips, False, 1)),
        frame_level_offline={f"smoothed_{smoothing}": _variant(clips, False, smoothing),
                             "per_video_minmax": _variant(clips, True, 1),
                             f"per_video_minmax_smoothed_{smoothing}": _variant(clips, True, smoothing)},
        at_stored_threshold=AtThreshold(
            f1_anomalous=f1_score(labels, decisions),
            true_positive_rate=float(decisions[labels].mean()) if labels.any() else None,
            false_positive_rate=float(decisions[~labels].mean()) if (~labels).any() else None,
            false_alarms_per_hour=false_alarms,
            detection_delay=detection_delays([c.labels for c in clips], [c.decisions for c in clips])),
        per_clip=[ClipRow(clip=c.name, frames=int(c.labels.size), anomalous=int(c.labels.sum()), auc=_safe_auc(c.labels, c.scores))
                  for c in clips],
    )
    if all(c.pixel_scores is not None for c in clips):
        try:
            out.pixel_level = pixel_level(np.concatenate([c.pixel_labels for c in clips]), np.concatenate([c.pixel_scores for c in clips]))
        except MetricError as exc:
            out.pixel_level = Unavailable(str(exc))
    out.localization = _localization(clips)
    return out


def _localization(clips: list[ClipScores]) -> DetectionCriteria | Unavailable | None:
    """RBDC and TBDC over every clip (a track is one anomalous run of a clip), where every clip has
    localization maps and all share a frame size; None otherwise."""
    if not clips or any(c.location_maps is None for c in clips) or len({c.frame_size for c in clips}) != 1:
        return None
    maps, truth, offset = [], [], 0
    for number, clip in enumerate(clips):
        maps += clip.location_maps
        truth += [TruthRegion(r.frame + offset, number * 1_000_000 + r.track, r.box) for r in clip.truth]
        offset += len(clip.location_maps)
    try:
        return maps_criteria(maps, truth, clips[0].frame_size)
    except MetricError as exc:
        return Unavailable(str(exc))


def _safe_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    try:
        return roc_auc(labels, scores)
    except MetricError:
        return None
