"""How many frames open an episode and how many quiet ones close it, measured on Ped2's
leave-training-clips-out folds.

    python -m occ.benchmarks.episode_rules FOLD.json [FOLD.json ...] --json OUT.json
    python -m occ.benchmarks.episode_rules OUT.json FOLD.json --json ALL.json   # an earlier result and one more fold

Each ``FOLD.json`` is an ``occ-bench ped2 --holdout-fold`` result (ALOCC or AVID) whose model is still
on disk. Its held-out training clips and the test clips are scored once through the runtime at the
stored thresholds, as the holdout benchmark scores them; then the episodes are counted with each
rule of :data:`OPEN_AFTER` firing frames in a row and :data:`CLOSE_AFTER` quiet frames. The closing
does not move when an episode opens, so it never flags an event later: a longer wait costs an
episode that ends that much later, and two incidents closer than that reported as one. Each more
frame to open flags every event a frame later.

The fold rule (:func:`occ.evaluation.folds.fewest_alarms_choice`, as in ``alocc_rules`` and
``avid_rules``), for the opening at the deployed closing: each run of a method (a seed's fold) is
measured with the opening chosen on that method's other runs, every seed's (the fewest alarms per
hour among those that catch as many events as the deployed one).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.ucsd import load_ucsd
from occ.evaluation.folds import fewest_alarms_choice
from occ.evaluation.protocols import alarm_counts, score_clips
from occ.evaluation.report import record_json
from occ.runtime.detector import open_detector
from occ.runtime.events import EpisodeTracker
from occ.runtime.manifest import EpisodeRule, read_manifest
from occ.runtime.scoring.decide import frame_threshold

from .training_runs import ResultError, commit, fold_benchmark_arguments, gather_runs, machine, pooled_alarms

OPEN_AFTER = (3, 4)  # firing frames in a row
CLOSE_AFTER = (5, 10, 20, 30)  # quiet frames; at 10 frames/s 0.5, 1, 2 and 3 s
DEPLOYED = EpisodeRule()


def rule_name(rule: EpisodeRule) -> str:
    return f"{rule.k} in a row open, {rule.close_after} quiet close"


RULES = {rule_name(rule): rule for rule in (EpisodeRule("k_of_n", k, k, j) for k in OPEN_AFTER for j in CLOSE_AFTER)}


def fold_counts(fold: dict[str, Any]) -> dict[str, Any]:
    """Episodes on the fold's normal footage, events caught and how soon, for each rule of :data:`RULES`."""
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
    for name, rule in RULES.items():
        episodes = alarm_counts(clips, fps, EpisodeTracker(rule=rule, threshold=frame_threshold(manifest), camera="ped2"))["episodes"]
        rate, delay = episodes["false_alarms_per_hour"], episodes["detection_delay"]
        out[name] = {"episodes": rate["false_alarms"], "normal_hours": rate["normal_hours"], "events_caught": delay["detected"],
                     "events": delay["events"], "median_delay_frames": delay["median_frames"],
                     "events_within_1s": sum(frames <= round(fps) for frames in delay["delays"])}
    return out


def pooled(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Episodes over several folds' normal footage (:func:`pooled_alarms`), with the events flagged
    within 1 s and the worst and mean fold."""
    return {**pooled_alarms(entries), "events_within_1s": sum(e["events_within_1s"] for e in entries),
            "worst_fold_per_hour": max(e["episodes"] / e["normal_hours"] for e in entries),
            "mean_fold_per_hour": float(np.mean([e["episodes"] / e["normal_hours"] for e in entries]))}


def choose(runs: list[dict[str, Any]]) -> str:
    """The opening with the fewest alarms per hour over ``runs`` among those that catch as many of
    their events as the deployed rule, at the deployed closing (a longer wait never has more alarms:
    its limit is the operator's, not the folds'); the deployed rule on a tie."""
    return fewest_alarms_choice({name: pooled([run["counts"][name] for run in runs]) for name, rule in RULES.items()
                                 if rule.close_after == DEPLOYED.close_after}, rule_name(DEPLOYED))


def inside_the_folds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method with two or more runs: each run measured with the rule chosen on the method's others."""
    out: dict[str, Any] = {}
    for method in sorted({run["method"] for run in runs}):
        mine = sorted((run for run in runs if run["method"] == method), key=lambda run: (run["seed"], run["fold"]))
        if len(mine) < 2:
            continue
        chosen = [choose([other for other in mine if other is not run]) for run in mine]
        out[method] = {
            "chosen": [{"seed": run["seed"], "fold": run["fold"], "rule": name} for run, name in zip(mine, chosen)],
            "chosen_inside_folds": pooled([run["counts"][name] for run, name in zip(mine, chosen)]),
            "deployed": pooled([run["counts"][rule_name(DEPLOYED)] for run in mine])}
    return out


def _earlier_runs(path: Path, document: Any) -> list | None:
    if isinstance(document, dict) and isinstance(document.get("runs"), list) and document.get("rules") == list(RULES):
        return document["runs"]
    return None


def _fold_run(path: Path, fold: Any) -> dict:
    if not isinstance(fold, dict) or "held_out_clips" not in fold or not Path(fold.get("model", "")).is_file():
        raise ResultError(f"{path}: neither an occ-bench ped2 --holdout-fold result whose model is on disk nor a result of this benchmark")
    return {"method": fold["method"], "seed": fold["seed"], "fold": fold["fold"], "model": fold["model"], "counts": fold_counts(fold)}


def main(argv: list[str] | None = None) -> int:
    args = fold_benchmark_arguments("python -m occ.benchmarks.episode_rules", __doc__.split("\n\n")[0],
                                    "occ-bench ped2 --holdout-fold JSONs whose models are on disk", argv)
    started = time.time()
    try:
        runs = gather_runs(args.folds, _earlier_runs, _fold_run)
    except ResultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    methods = sorted({run["method"] for run in runs})
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
              "command": shlex.join(["python", "-m", "occ.benchmarks.episode_rules", *(argv if argv is not None else sys.argv[1:])]),
              "deployed": rule_name(DEPLOYED), "rules": list(RULES), "runs": runs,
              "pooled": {method: {name: pooled([run["counts"][name] for run in runs if run["method"] == method]) for name in RULES}
                         for method in methods},
              "inside_the_folds": inside_the_folds(runs),
              "seconds": round(time.time() - started)}
    args.json.write_text(json.dumps(record_json(result), indent=1) + "\n")
    for method in methods:
        for name, entry in result["pooled"][method].items():
            print(f"{method}, {name}: {entry['episodes']} episodes in {entry['normal_minutes']:.2f} min, "
                  f"{entry['per_hour']:.0f}/h (95 %: {entry['per_hour_low']:.0f}–{entry['per_hour_high']:.0f}; worst fold "
                  f"{entry['worst_fold_per_hour']:.0f}/h), {entry['events_caught']}/{entry['events']} events, "
                  f"{entry['events_within_1s']} within 1 s")
    for key, entry in result["inside_the_folds"].items():
        print(f"{key}: chosen inside the folds {entry['chosen_inside_folds']['episodes']} episodes, deployed {entry['deployed']['episodes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
