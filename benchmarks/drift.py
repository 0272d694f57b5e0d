"""The drift watch on walkway days: a model's frame scores and frames' brightness on a calibration
day (no events) make the reference, as ``occ calibrate`` learns it; then three test days stream
through :class:`~occ.runtime.scoring.drift.DriftWatch`: the normal day (events, rush hours, dawn
and dusk, no view change), the same day with a slow camera creep, and with a slow lighting ramp.

The watch is held on every frame with an event in view (the service holds it while an event is
open). The scene guard is not run: the delays are the drift watch's own (in the service the guard
reports the creep within seconds and holds the watch; the lighting ramp is too slow for the guard).

    python -m occ.benchmarks.drift MODEL JSON [HOURS] [HEIGHT] [WIDTH]
"""
from __future__ import annotations

import datetime as _dt
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from occ.evaluation.datasets.walkway_day import DayConfig, generate_day, schedule_view_changes
from occ.runtime.detector import open_detector
from occ.runtime.files import write_atomic
from occ.runtime.scoring.drift import DriftLimits, DriftReference, DriftWatch, frame_light

from .day import BATCH
from .training_runs import commit, machine

SCHEMA = "occ-bench-drift/2"
CALIBRATION_SEED, TEST_SEED = 101, 202
RUNS = {"normal day": (), "creep": ("creep",), "light ramp": ("light_ramp",)}


def day_scores(detector, config: DayConfig, every: int) -> dict[str, np.ndarray]:
    """A day's frame scores (one stream), brightness, event-in-view flags and clock hours. Only the
    frames the watch keeps (one in ``every`` of the frames without an event in view, as
    :meth:`DriftWatch.update` counts them) go through the network; the others score NaN, which the
    watch never reads. Every frame still goes through preprocessing, so each kept frame has its
    stream's temporal context and scores as in a full stream, in a tenth of the time."""
    light, event, clock, kept, pending, scores = [], [], [], [], [], []
    counted = 0
    detector.reset()

    def flush() -> None:
        scores.extend(result.score for result in detector.finish(detector.forward(detector.prepare(np.stack(pending)))))
        pending.clear()

    for index, frame in enumerate(generate_day(config)):
        light.append(frame_light(frame.image))
        event.append(bool(frame.events))
        clock.append(frame.clock_hour)
        network_input = detector.preprocessor.push(frame.image)
        if frame.events:
            continue
        counted += 1
        if (counted - 1) % every == 0:
            kept.append(index)
            pending.append(network_input)
            if len(pending) == BATCH:
                flush()
    if pending:
        flush()
    frame_scores = np.full(len(light), np.nan)
    frame_scores[kept] = scores
    return {"scores": frame_scores, "light": np.array(light), "event": np.array(event), "clock": np.array(clock)}


def watch_day(reference: DriftReference, day: dict[str, np.ndarray], fps: float) -> tuple[list[dict], list[dict]]:
    """The drift events and the tests of a day streamed through a fresh watch."""
    watch = DriftWatch(reference)
    events, tests = [], []
    for i, (score, light, event) in enumerate(zip(day["scores"], day["light"], day["event"])):
        state = watch.update(float(score), float(light), hold=bool(event))
        tested = state.statistic is not None and (not tests or tests[-1]["statistic"] != round(state.statistic, 4)
                                                  or state.started or state.ended)
        if tested and (not tests or tests[-1]["frame"] != i):
            tests.append({"frame": i, "statistic": round(state.statistic, 4)})
        if state.started or state.ended:
            events.append({"type": "drift" if state.started else "drift_ended", "frame": i, "minute": round(i / fps / 60, 2),
                           "clock": round(float(day["clock"][i]), 2), "statistic": round(state.statistic, 4)})
    return events, tests


def run_drift(model: str, hours: float = 1.0, height: int = 48, width: int = 72, limits: DriftLimits = DriftLimits()) -> dict:
    started = time.perf_counter()
    detector = open_detector(model)
    calibration = day_scores(detector, DayConfig(hours=hours, height=height, width=width, seed=CALIBRATION_SEED, events_per_hour=0), limits.every)
    reference = DriftReference.learn(calibration["scores"], calibration["light"], limits)
    out = {"schema": SCHEMA, "date": _dt.date.today().isoformat(), "machine": machine(), "commit": commit(),
           "command": " ".join(shlex.quote(a) for a in ["python", "-m", "occ.benchmarks.drift", *sys.argv[1:]]),
           "model": Path(model).name, "hours": hours, "height": height, "width": width,
           "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__},
           "reference": {"calibration_seed": CALIBRATION_SEED, "spread": round(reference.spread, 4), "threshold": round(reference.threshold, 4),
                         "tests_in_budget": round(limits.tests_in_budget), "light_edges": [round(float(v), 1) for v in reference.light_edges]},
           "runs": {}}
    for name, kinds in RUNS.items():
        config = DayConfig(hours=hours, height=height, width=width, seed=TEST_SEED, view_changes=bool(kinds), view_change_kinds=kinds)
        events, tests = watch_day(reference, day_scores(detector, config, limits.every), config.fps)
        run = {"drift_events": [e for e in events if e["type"] == "drift"], "drift_ended": [e for e in events if e["type"] == "drift_ended"],
               "max_statistic": max((t["statistic"] for t in tests), default=None), "tests": tests}
        for change in schedule_view_changes(config):
            first = next((e for e in run["drift_events"] if e["frame"] >= change.start_frame), None)
            run["change"] = {**change.to_json(), "minute": round(change.start_frame / config.fps / 60, 2),
                             "drift_events_before": sum(e["frame"] < change.start_frame for e in run["drift_events"]),
                             "delay_min": None if first is None else round((first["frame"] - change.start_frame) / config.fps / 60, 2)}
        out["runs"][name] = run
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def summary(result: dict) -> dict:
    return {"threshold": result["reference"]["threshold"],
            **{name: {"drift_events": len(run["drift_events"]), "max_statistic": run["max_statistic"],
                      **({"delay_min": run["change"]["delay_min"], "before": run["change"]["drift_events_before"]} if "change" in run else {})}
               for name, run in result["runs"].items()}}


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) < 2:
        print("usage: python -m occ.benchmarks.drift MODEL JSON [HOURS] [HEIGHT] [WIDTH]", file=sys.stderr)
        sys.exit(2)
    result = run_drift(args[0], *(float(args[2]),) if len(args) > 2 else (), *(int(a) for a in args[3:5]))
    import json

    write_atomic(args[1], json.dumps(result, indent=2).encode())
    print(json.dumps(summary(result)))
