"""``occ-bench day``: how often an exported model wakes an operator for nothing over a day on the
walkway, and how late it flags a real event.

The model is copied and calibrated on a calibration day (the calibration library, on the day's
normal stretches), then the test day streams through the runtime detector frame by frame as a camera
would (one temporal context over the whole day) and through the service's episode rule. A false
alarm is an episode with no event frame in it. Rates are per hour of normal footage, for each hour
of the clock and in total, with exact 95 % Poisson intervals; an event is flagged within 1 s when an
episode is open within 10 frames (at 10 frames/s) of the event's first visible pixel.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from occ.evaluation.calibration import calibrate_model
from occ.evaluation.datasets.common import DatasetError
from occ.evaluation.datasets.walkway_day import Day, is_day, open_day
from occ.evaluation.metrics import poisson_rate_interval
from occ.runtime.detector import Detector, open_detector
from occ.runtime.events.episodes import EpisodeTracker
from occ.runtime.manifest import EpisodeRule, Manifest
from occ.runtime.scoring.decide import FrameResult, frame_threshold, on_frame
from occ.runtime.service.config import ServiceConfig

from .training_runs import commit, machine

SCHEMA = "occ-bench-day/1"
FLAG_WITHIN_S = 1.0
BATCH = 32


def service_tracker(manifest: Manifest, rule: EpisodeRule | None = None, threshold: float | None = None) -> EpisodeTracker:
    """The episode tracker the service builds for a camera running this model: the manifest's
    episode rule and frame threshold (or ``rule`` and ``threshold``), with :class:`ServiceConfig`'s
    overrides (none by default); the one place to follow the service when its rule changes."""
    return EpisodeTracker(ServiceConfig.open_after, ServiceConfig.close_after, camera="walkway-day", rule=rule or manifest.episodes,
                          threshold=frame_threshold(manifest) if threshold is None else threshold)


def stream_results(detector: Detector, frames: Iterable[np.ndarray], fps: float) -> Iterator[FrameResult]:
    """Results of a stream, frame by frame as :meth:`Detector.process` gives them (one temporal
    context), computed in batches of network inputs for speed."""
    detector.reset()
    index = 0
    pending: list[np.ndarray] = []
    size: tuple[int, int] | None = None

    def flush() -> Iterator[FrameResult]:
        nonlocal index
        for result in detector.finish(detector.forward(detector.prepare(np.stack(pending)))):
            result = on_frame(result, detector.manifest, size)
            result.index, result.timestamp = index, index / fps
            index += 1
            yield result
        pending.clear()

    for frame in frames:
        size = frame.shape[:2]
        pending.append(detector.preprocessor.push(frame))
        if len(pending) == BATCH:
            yield from flush()
    if pending:
        yield from flush()


def run_on_day(detector: Detector, day: Day, tracker: EpisodeTracker,
               progress: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Stream ``day`` through the detector and the episode ``tracker``: per-frame scores and decisions,
    and the episodes (``start_frame``, ``open_frame`` (when the operator hears of it), ``end_frame``)."""
    return track_episodes(stream_results(detector, (image for _, image in day.frames()), day.config.fps), day.config.frames,
                          tracker, progress)


def track_episodes(results: Iterable[FrameResult], frames: int, tracker: EpisodeTracker,
                   progress: Callable[[], None] | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The episodes ``tracker`` opens over a stream's ``frames`` results, as :func:`run_on_day` returns them."""
    scores = np.zeros(frames, np.float32)
    decisions = np.zeros(frames, bool)
    episodes: list[dict] = []
    for result in results:
        scores[result.index], decisions[result.index] = result.score, result.decision
        opened, closed, _ = tracker.update(result)
        if opened is not None:
            episodes.append({"start_frame": opened.start_frame, "open_frame": result.index, "end_frame": None})
        if closed is not None:
            episodes[-1]["end_frame"] = closed.end_frame
        if progress is not None:
            progress()
    last = tracker.flush("end of stream")
    if last is not None:
        episodes[-1]["end_frame"] = last.end_frame
    return scores, decisions, episodes


def flag_window_frames(fps: float) -> int:
    """Frames within which an event counts as flagged in time (:data:`FLAG_WITHIN_S` at ``fps``)."""
    return int(round(FLAG_WITHIN_S * fps))


def day_report(day: Day, decisions: np.ndarray, episodes: list[dict], scores: np.ndarray | None = None, threshold: float = 1.0) -> dict:
    """Alarms per hour of normal footage for each hour of the clock and in total (95 % intervals),
    and for each event whether and how soon an episode flagged it. With the frame ``scores``, in
    units of the frame ``threshold``: each hour's normal frames' median, 99th percentile and largest,
    and each event's largest, over its whole length and over its first second (what a threshold would
    have to sit under to flag it, against what the normal frames of its hour reach)."""
    labels, fps = day.labels, day.config.fps
    for episode in episodes:
        episode["event"] = bool(labels[episode["start_frame"]:episode["end_frame"] + 1].any())
    false_alarms = [e for e in episodes if not e["event"]]
    hour_of = np.floor(day.table["clock_hour"]).astype(int)
    relative = None if scores is None else np.asarray(scores, np.float64) / threshold
    rows = []
    for hour in sorted(set(hour_of.tolist()), key=lambda h: np.flatnonzero(hour_of == h)[0]):
        in_hour = hour_of == hour
        normal = in_hour & ~labels
        count = sum(1 for e in false_alarms if hour_of[e["open_frame"]] == hour)
        rows.append({"clock_hour": f"{hour:02d}:00", **_rate(count, float(normal.sum() / fps / 3600)),
                     "walkers_mean": float(day.table["walkers"][in_hour].mean()), "light_mean": float(day.table["light"][in_hour].mean()),
                     "frames_over_threshold": float(decisions[normal].mean()) if normal.any() else None,
                     **_normal_scores(relative, normal)})
    within = flag_window_frames(fps)
    events = []
    for event in day.events:
        delay = _flag_delay(event.start_frame, event.end_frame, episodes)
        events.append({**event.to_json(), "delay_frames": delay, "flagged_within_1s": delay is not None and delay <= within,
                       **_event_scores(relative, event.start_frame, event.end_frame, within)})
    flagged_share = float(np.mean([e["flagged_within_1s"] for e in events])) if events else None
    return {"per_clock_hour": rows, "false_alarms": _rate(len(false_alarms), float((~labels).sum() / fps / 3600)),
            "episodes": len(episodes), "events": events, "flagged_within_1s": flagged_share,
            "flag_window_frames": within, "frames_over_threshold": float(decisions[~labels].mean()) if (~labels).any() else None}


def _normal_scores(relative: np.ndarray | None, normal: np.ndarray) -> dict:
    if relative is None or not normal.any():
        return {}
    p50, p99, top = np.quantile(relative[normal], [0.5, 0.99, 1.0])
    return {"normal_score_over_threshold": {"p50": float(p50), "p99": float(p99), "max": float(top)}}


def _event_scores(relative: np.ndarray | None, start: int, end: int, first: int) -> dict:
    if relative is None:
        return {}
    return {"peak_over_threshold": float(relative[start:end + 1].max()),
            "first_second_peak_over_threshold": float(relative[start:min(start + first, end + 1)].max())}


def _flag_delay(start: int, end: int, episodes: list[dict]) -> int | None:
    """Frames from an event's start to the first frame an episode is open over it (an episode is
    open, to the operator, from its opening frame to its end), None if none is."""
    return min((max(e["open_frame"], start) - start for e in episodes if e["open_frame"] <= end and e["end_frame"] >= start), default=None)


def _rate(count: int, hours: float) -> dict:
    low, high = poisson_rate_interval(count, hours) if hours > 0 else (None, None)
    return {"alarms": count, "normal_hours": hours, "per_hour": count / hours if hours > 0 else None, "per_hour_low": low, "per_hour_high": high}


def check_inputs(model: str | Path, calibration: str | Path, test: str | Path) -> Path:
    """``model`` as a path, once it is an exported ONNX model and both days are walkway days; else
    :class:`DatasetError` in one line."""
    model = Path(model)
    if not model.is_file() or model.suffix != ".onnx":
        raise DatasetError(f"{model}: not an exported .onnx model")
    for path in (calibration, test):
        if not is_day(path):
            raise DatasetError(f"{path}: not a walkway day (write one with `occ data generate --day HOURS`)")
    return model


def run_day(model: str | Path, calibration: str | Path, test: str | Path, workdir: str | Path, false_alarm_rate: float = 0.01,
            progress: Callable[..., None] | None = None, alarms_per_day: float | None = None) -> dict:
    """``occ-bench day``: copy ``model`` into ``workdir``, calibrate the copy on the ``calibration``
    day's normal stretches (at ``false_alarm_rate`` of its frames, or to an alarm budget of
    ``alarms_per_day``: thresholds and episode rule), run it on the ``test`` day, report alarms and
    events."""
    model, workdir = check_inputs(model, calibration, test), Path(workdir)
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    calibrated = workdir / f"{model.stem}.day-calibrated.onnx"
    shutil.copyfile(model, calibrated)
    if progress is not None:
        progress(0, description="calibrating")
    if alarms_per_day is not None:
        false_alarm_rate = None
    result = calibrate_model(calibrated, str(calibration), false_alarm_rate=false_alarm_rate, alarms_per_day=alarms_per_day)
    manifest = result.manifest
    tracker = service_tracker(manifest)
    day = open_day(test)
    detector = open_detector(str(calibrated))
    try:
        if progress is not None:
            progress(0, description="test day")
        scores, decisions, episodes = run_on_day(detector, day, tracker, progress=(lambda: progress(1)) if progress else None)
    finally:
        detector.close()
    return {"schema": SCHEMA, "date": _dt.date.today().isoformat(), "machine": machine(), "commit": commit(),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "model": str(model), "method": manifest.method, "calibrated_model": str(calibrated),
            "calibration": {"day": str(calibration), "false_alarm_rate": false_alarm_rate, "alarms_per_day": alarms_per_day,
                            "frames": result.frames, "choice": result.choice,
                            "thresholds": {name: t.value for name, t in manifest.thresholds.items()}},
            "episode_rule": {**dataclasses.asdict(tracker.rule), "described": tracker.rule.describe()},
            "test_day": {"day": str(test), "hours": day.config.hours, "clock_hours": day.config.clock_hours, "start": day.config.start,
                         "seed": day.config.seed, "frame_size": [day.config.height, day.config.width], "fps": day.config.fps,
                         "events": len(day.events)},
            **day_report(day, decisions, episodes, scores, frame_threshold(manifest)), "seconds": round(time.monotonic() - started, 1)}


def markdown(result: dict) -> str:
    total = result["false_alarms"]
    lines = [f"{result['method'].upper()} on a walkway day ({result['test_day']['hours']:g} h of footage over "
             f"{result['test_day']['clock_hours']:g} h of clock), calibrated on {result['calibration']['day']} at "
             f"{_calibration_text(result['calibration'])}; episodes {result['episode_rule']['described']} "
             f"({result['machine']}, {result['date']})", "",
             "| clock | walkers | light | normal minutes | false alarms | per hour (95 %) | frames over threshold |", "|---|---|---|---|---|---|---|"]
    for row in result["per_clock_hour"]:
        over = "n/a" if row["frames_over_threshold"] is None else f"{row['frames_over_threshold']:.1%}"
        lines.append(f"| {row['clock_hour']} | {row['walkers_mean']:.1f} | {row['light_mean']:.2f} | {row['normal_hours'] * 60:.1f} | "
                     f"{row['alarms']} | {_rate_text(row)} | {over} |")
    flagged = result["flagged_within_1s"]
    lines += ["", f"Total: {total['alarms']} false alarms in {total['normal_hours'] * 60:.1f} min of normal footage: "
                  f"{_rate_text(total)} per hour. Events flagged within 1 s: "
                  f"{'n/a' if flagged is None else f'{flagged:.0%}'} of {len(result['events'])}."]
    return "\n".join(lines) + "\n"


def _calibration_text(calibration: dict) -> str:
    if calibration.get("alarms_per_day") is not None:
        return f"a budget of {calibration['alarms_per_day']:g} alarms a day"
    return f"{calibration['false_alarm_rate']:g} of frames"


def _rate_text(entry: dict) -> str:
    if entry["per_hour"] is None:
        return "n/a"
    return f"{entry['per_hour']:,.1f} ({entry['per_hour_low']:,.1f}–{entry['per_hour_high']:,.1f})"
