"""How long an episode waits before it closes, measured on Ped2's leave-training-clips-out folds.

    python -m occ.benchmarks.episode_rules FOLD.json [FOLD.json ...] --json OUT.json
    python -m occ.benchmarks.episode_rules OUT.json FOLD.json --json ALL.json   # an earlier result and one more fold

Each ``FOLD.json`` is an ``occ-bench ped2 --holdout-fold`` result (ALOCC or AVID) whose model is still
on disk. Its held-out training clips and the test clips are scored once through the runtime at the
stored thresholds, as the holdout benchmark scores them; then the episodes are counted with the
model's own rule and with its ``close_after`` replaced by each of :data:`CLOSE_AFTER` quiet frames. Only
the closing changes: an episode still opens on the same frames, so an event is flagged no later.
What a longer wait costs is that an episode ends that much later, and that two incidents less than
that far apart are reported as one.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.ucsd import load_ucsd
from occ.evaluation.metrics import poisson_rate_interval
from occ.evaluation.protocols import alarm_counts, score_clips
from occ.evaluation.report import record_json
from occ.runtime.detector import open_detector
from occ.runtime.events import EpisodeTracker
from occ.runtime.manifest import read_manifest
from occ.runtime.scoring.decide import frame_threshold

from .training_runs import commit, machine

CLOSE_AFTER = (5, 10, 20, 30)  # quiet frames; at 10 frames/s 0.5, 1, 2 and 3 s


def fold_counts(fold: dict[str, Any]) -> dict[str, Any]:
    """Episodes on the fold's normal footage and events caught, for each ``close_after``."""
    model, data = fold["model"], fold["data"]
    manifest = read_manifest(model)
    detector = open_detector(model)
    try:
        clips = score_clips(detector, load_ucsd(data, "train", clips=list(fold["held_out_clips"])))
        clips += score_clips(detector, load_video_data(data, splits=("test",)).test)
    finally:
        detector.close()
    fps = clips[0].fps or 10.0
    out: dict[str, Any] = {"stored_rule": manifest.episodes.describe()}
    for close_after in CLOSE_AFTER:
        rule = dataclasses.replace(manifest.episodes, close_after=close_after)
        episodes = alarm_counts(clips, fps, EpisodeTracker(rule=rule, threshold=frame_threshold(manifest), camera="ped2"))["episodes"]
        rate, delay = episodes["false_alarms_per_hour"], episodes["detection_delay"]
        out[str(close_after)] = {"episodes": rate["false_alarms"], "normal_hours": rate["normal_hours"], "events_caught": delay["detected"],
                                 "events": delay["events"], "median_delay_frames": delay["median_frames"]}
    return out


def pooled(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Episodes over several folds' normal footage, per hour with its exact 95 % Poisson interval."""
    episodes, hours = sum(e["episodes"] for e in entries), sum(e["normal_hours"] for e in entries)
    low, high = poisson_rate_interval(episodes, hours)
    return {"episodes": episodes, "normal_minutes": hours * 60, "per_hour": episodes / hours, "per_hour_low": low, "per_hour_high": high,
            "events_caught": sum(e["events_caught"] for e in entries), "events": sum(e["events"] for e in entries),
            "worst_fold_per_hour": max(e["episodes"] / e["normal_hours"] for e in entries),
            "mean_fold_per_hour": float(np.mean([e["episodes"] / e["normal_hours"] for e in entries]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m occ.benchmarks.episode_rules", description=__doc__.split("\n\n")[0])
    parser.add_argument("folds", nargs="+", type=Path, help="occ-bench ped2 --holdout-fold JSONs whose models are on disk, "
                        "or earlier results of this benchmark (their runs are taken as they are)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    args = parser.parse_args(argv)
    started = time.time()
    runs = []
    for path in args.folds:
        try:
            fold = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"error: {path}: not a readable JSON file ({exc})", file=sys.stderr)
            return 2
        if isinstance(fold, dict) and isinstance(fold.get("runs"), list) and fold.get("close_after") == list(CLOSE_AFTER):
            runs += fold["runs"]  # an earlier result of this benchmark: its runs as they are
            continue
        if not isinstance(fold, dict) or "held_out_clips" not in fold or not Path(fold.get("model", "")).is_file():
            print(f"error: {path}: neither an occ-bench ped2 --holdout-fold result whose model is on disk nor a result of this benchmark", file=sys.stderr)
            return 2
        runs.append({"method": fold["method"], "seed": fold["seed"], "fold": fold["fold"], "model": fold["model"], "counts": fold_counts(fold)})
    methods = sorted({run["method"] for run in runs})
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
              "command": shlex.join(["python", "-m", "occ.benchmarks.episode_rules", *(argv if argv is not None else sys.argv[1:])]),
              "close_after": list(CLOSE_AFTER), "runs": runs,
              "pooled": {method: {str(j): pooled([run["counts"][str(j)] for run in runs if run["method"] == method]) for j in CLOSE_AFTER}
                         for method in methods},
              "seconds": round(time.time() - started)}
    args.json.write_text(json.dumps(record_json(result), indent=1) + "\n")
    for method in methods:
        for close_after, entry in result["pooled"][method].items():
            print(f"{method} close_after {close_after}: {entry['episodes']} episodes in {entry['normal_minutes']:.2f} min, "
                  f"{entry['per_hour']:.0f}/h (95 %: {entry['per_hour_low']:.0f}–{entry['per_hour_high']:.0f}; worst fold "
                  f"{entry['worst_fold_per_hour']:.0f}/h), {entry['events_caught']}/{entry['events']} events")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
