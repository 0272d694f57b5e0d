"""Every episode rule an alarm budget chooses among, on a walkway test day: does the rule that
``occ calibrate --alarms-per-day`` picks flag the events as soon as any other would, at the budget?

    python -m occ.benchmarks.day_rules MODEL --calibration DAY --test DAY --alarms-per-day 24 --json OUT.json

The calibration day is calibrated as ``occ-bench day`` calibrates it (nothing is written), which gives
each candidate rule (:func:`occ.evaluation.calibration.candidate_rules`) its thresholds at the budget.
The test day is scored once as one stream; then each rule's episodes are opened by the service's
tracker at that rule's thresholds, and reported as ``occ-bench day`` reports them: false alarms per
hour of normal footage and each event's delay.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from occ.evaluation.calibration import calibrate_model, footage_statistics, scores_at
from occ.evaluation.datasets.common import DatasetError
from occ.evaluation.datasets.walkway_day import open_day
from occ.runtime.detector import open_detector
from occ.runtime.scoring.decide import FrameResult

from .day import check_inputs, day_report, flag_window_frames, service_tracker, track_episodes
from .training_runs import commit, machine

NO_LOCATIONS = np.zeros((0, 0), np.float32)


def every_rule(model: str | Path, calibration: str | Path, test: str | Path, alarms_per_day: float) -> dict:
    """Each candidate rule's thresholds at the budget on ``calibration``, and its false alarms and
    event delays on ``test``; ``chosen`` marks the calibration's pick."""
    model = check_inputs(model, calibration, test)
    calibrated = calibrate_model(model, str(calibration), false_alarm_rate=None, alarms_per_day=alarms_per_day, dry_run=True)
    manifest, day = calibrated.manifest, open_day(test)
    detector = open_detector(str(model))
    try:
        statistics = footage_statistics(detector, [(image for _, image in day.frames())])
    finally:
        detector.close()
    rows = []
    for outcome in calibrated.rules:
        chosen = outcome.rule == manifest.episodes
        row = {**outcome.to_json(), "chosen": chosen}
        if outcome.frame_rate > 0:
            # the chosen rule's thresholds are refined past the grid's: the ones the model deploys
            thresholds = {name: t.value for name, t in manifest.thresholds.items()} if chosen else outcome.thresholds
            row["thresholds"] = thresholds
            scores, decisions, threshold = scores_at(manifest, statistics, thresholds)
            results = (FrameResult(index, score, decision, NO_LOCATIONS)
                       for index, (score, decision) in enumerate(zip(scores.tolist(), decisions.tolist())))
            _, _, episodes = track_episodes(results, day.config.frames, service_tracker(manifest, outcome.rule, threshold))
            report = day_report(day, decisions, episodes)
            row.update(false_alarms=report["false_alarms"], delays_frames=[e["delay_frames"] for e in report["events"]],
                       flagged_within_1s=report["flagged_within_1s"])
        rows.append(row)
    return {"model": str(model), "method": manifest.method, "alarms_per_day": alarms_per_day, "calibration": str(calibration),
            "choice": calibrated.choice, "test": str(test), "events": [event.to_json() for event in day.events],
            "flag_window_frames": flag_window_frames(day.config.fps), "rules": rows}


def markdown(result: dict) -> str:
    lines = [f"{result['method'].upper()} at {result['alarms_per_day']:g} alarms a day: every candidate rule on {result['test']}", "",
             "| rule | normal frames firing | false alarms | delays, frames | within 1 s |", "|---|---|---|---|---|"]
    for row in sorted(result["rules"], key=lambda r: -r["frame_rate"]):
        if "false_alarms" not in row:
            lines.append(f"| {row['described']} | – | {row['note']} | | |")
            continue
        delays = " / ".join("–" if d is None else str(d) for d in row["delays_frames"])
        mark = " (chosen)" if row["chosen"] else ""
        lines.append(f"| {row['described']}{mark} | {row['frame_rate']:.4f} | {row['false_alarms']['alarms']} | {delays} | "
                     f"{row['flagged_within_1s']:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m occ.benchmarks.day_rules", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an exported .onnx model")
    parser.add_argument("--calibration", required=True, help="the walkway day to calibrate on (no events needed)")
    parser.add_argument("--test", required=True, help="the walkway day with events to measure on")
    parser.add_argument("--alarms-per-day", type=float, default=24.0, help="the alarm budget, alarms a day (default 24)")
    parser.add_argument("--json", help="also write the result as JSON to this path")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        body = every_rule(args.model, args.calibration, args.test, args.alarms_per_day)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
              "command": shlex.join(["python", "-m", "occ.benchmarks.day_rules", *(argv if argv is not None else sys.argv[1:])]),
              **body, "seconds": round(time.monotonic() - started, 1)}
    print(markdown(result), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
