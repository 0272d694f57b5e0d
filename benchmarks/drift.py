"""The drift watch on walkway days: a model's frame scores on a calibration day (no events) are the
reference; a test day streams through :class:`~occ.runtime.scoring.drift.DriftWatch` twice, once
as it is and once with its view changes injected, the watch held on every frame where an event is
in view or a view change is under way (what the service's episodes and scene guard hold).

    python -m occ.benchmarks.drift MODEL JSON [HOURS] [HEIGHT] [WIDTH]
"""
from __future__ import annotations

import datetime as _dt
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from occ.evaluation.datasets.walkway_day import DayConfig, generate_day
from occ.runtime.detector import open_detector
from occ.runtime.files import write_atomic
from occ.runtime.scoring.drift import DriftLimits, DriftWatch

from .day import commit, stream_results
from .training_runs import machine

SCHEMA = "occ-bench-drift/1"


def _scores(detector, config: DayConfig) -> tuple[np.ndarray, list]:
    frames = list(generate_day(config))
    scores = np.array([r.score for r in stream_results(detector, (f.image for f in frames), config.fps)])
    return scores, [(bool(f.events), f.view_change, f.offset) for f in frames]


def run_drift(model: str, hours: float = 1.0, height: int = 48, width: int = 72, limits: DriftLimits = DriftLimits()) -> dict:
    started = time.perf_counter()
    detector = open_detector(model)
    reference, _ = _scores(detector, DayConfig(hours=hours, height=height, width=width, seed=101, events_per_hour=0))
    out = {"schema": SCHEMA, "date": _dt.date.today().isoformat(), "machine": machine(), "commit": commit(),
           "command": " ".join(shlex.quote(a) for a in ["python", "-m", "occ.benchmarks.drift", *sys.argv[1:]]),
           "model": Path(model).name, "hours": hours, "height": height, "width": width,
           "limits": {k: getattr(limits, k) for k in limits.__dataclass_fields__}, "runs": {}}
    for name, view_changes in (("normal day", False), ("view changes", True)):
        config = DayConfig(hours=hours, height=height, width=width, seed=202, view_changes=view_changes)
        scores, truth = _scores(detector, config)
        watch = DriftWatch(reference, limits)
        alarms, statistics = [], []
        for i, (score, (event, change, _)) in enumerate(zip(scores, truth)):
            state = watch.update(float(score), hold=event or bool(change))
            if state.started:
                alarms.append({"frame": i, "minute": round(i / config.fps / 60, 2), "clock": round(float(config.clock_hour(i)), 2),
                               "offset_px": list(truth[i][2]), "statistic": round(state.statistic, 4)})
            if state.statistic is not None and (not statistics or statistics[-1][0] != state.statistic):
                statistics.append((state.statistic, i))
        out["runs"][name] = {"drift_alarms": alarms, "threshold": round(watch.threshold, 4),
                             "tests": [{"frame": i, "statistic": round(s, 4)} for s, i in statistics]}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    result = run_drift(args[0], *(float(args[2]),) if len(args) > 2 else (), *(int(a) for a in args[3:5]))
    import json

    write_atomic(args[1], json.dumps(result, indent=2).encode())
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}), {k: v["drift_alarms"] for k, v in result["runs"].items()})
