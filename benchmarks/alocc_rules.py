"""ALOCC's location statistics, frame rule and threshold rule, measured on Ped2's leave-training-clips-out folds, with the
choice made inside the folds.

    python -m occ.benchmarks.alocc_rules FOLD.json [FOLD.json ...] --json OUT.json
    python -m occ.benchmarks.alocc_rules OUT1.json OUT2.json --json ALL.json   # earlier results pooled

Each ``FOLD.json`` is an ``occ-bench ped2 --holdout-fold`` result whose model is still on disk. One
pass through each model's graph gives every clip's patch terms. Each candidate then re-derives what
training derives (the candidate's location statistics on the training clips before their validation
tails, τ on the tails, with the candidate's own frame rule) and its alarms are counted as the holdout benchmark
counts them, through the service's episode rule.

The fold rule: for each fold of a seed, the candidate chosen on that seed's other folds (the fewest
alarms per hour over their normal footage among the candidates that catch as many of their events
as the deployed rule) is measured on it. A candidate is worth deploying only if it beats the deployed
rule on the mean and on the worst fold.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from occ.evaluation.datasets.common import Clip
from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.ucsd import load_ucsd
from occ.evaluation.folds import fewest_alarms_choice
from occ.evaluation.protocols import ClipScores
from occ.evaluation.report import record_json, report
from occ.runtime.detector import Detector, open_detector
from occ.runtime.events import EpisodeTracker
from occ.runtime.manifest import AloccScoring, LocationStats, read_manifest
from occ.runtime.preprocess import preprocess_clip
from occ.runtime.scoring import alocc_frame_scores, alocc_thresholds, location_stats, patch_scores
from occ.runtime.service import ServiceConfig

from .ped2 import _global_stats, holdout_alarms
from .training_runs import ResultError, commit, fold_benchmark_arguments, gather_runs, machine, pooled_alarms


def graph_terms(detector: Detector, clip: Clip) -> dict[str, np.ndarray]:
    """ALOCC's scoring terms of every frame of a clip, ``(frames, patches)`` each."""
    manifest = detector.manifest
    inputs = preprocess_clip(clip.frames, manifest.input)
    count = manifest.patches.count(manifest.input)
    parts = [detector.forward(detector.prepare(inputs[start:start + 64])) for start in range(0, len(inputs), 64)]
    return {name: np.concatenate([np.asarray(p[name]).reshape(-1, count) for p in parts]) for name in manifest.scoring.terms}


def _causal(patches: np.ndarray, frames: int, reduce: Callable[..., np.ndarray]) -> np.ndarray:
    """Each frame's patch scores reduced with those of the ``frames − 1`` before it in the clip."""
    padded = np.concatenate([np.repeat(patches[:1], frames - 1, axis=0), patches])
    return reduce(np.stack([padded[i:i + len(patches)] for i in range(frames)]), axis=0)


FRAME_RULES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "largest patch (deployed)": alocc_frame_scores,
    "second largest patch": lambda p: np.sort(p, axis=-1)[:, -2],
    "largest patch, each patch averaged over 3 frames": lambda p: _causal(p, 3, np.mean).max(axis=-1),
    "largest patch, each patch at its lowest of 2 frames": lambda p: _causal(p, 2, np.min).max(axis=-1),
}
def _halfway_to_pooled_mean(scores: np.ndarray, floor: float) -> LocationStats:
    stats = location_stats(scores, floor)
    mean = np.asarray(stats.mean)
    return LocationStats(mean=(0.5 * (mean + mean.mean())).tolist(), std=stats.std)


STATS_RULES: dict[str, Callable[[np.ndarray, float], LocationStats]] = {
    "per location (deployed)": location_stats,
    "location means half-way to the pooled mean": _halfway_to_pooled_mean,
    "pooled over locations": lambda scores, floor: _global_stats(location_stats(scores, floor)),
}
THRESHOLD_RULES: dict[str, Callable[[np.ndarray], float]] = {
    "largest validation frame (deployed)": lambda tails: alocc_thresholds(tails, 0.0, "tails")["tau"].value,
    "1 % quantile of the validation frames": lambda tails: alocc_thresholds(tails, 0.01, "tails")["tau"].value,
}
DEPLOYED = ("per location (deployed)", "largest patch (deployed)", "largest validation frame (deployed)")


def candidate_name(stats_rule: str, frame_rule: str, threshold_rule: str) -> str:
    return f"{stats_rule} | {frame_rule} | {threshold_rule}"


def fold_candidates(fold: dict[str, Any]) -> dict[str, Any]:
    """Every candidate's τ, alarms and test micro AUC on one fold's model (its JSON's ``model``)."""
    from occ.train.common import validation_cuts  # the training split itself, not a copy of it

    model, data = fold["model"], fold["data"]
    manifest = read_manifest(model)
    config = manifest.training.get("config", {})
    detector = open_detector(model)
    assert isinstance(detector, Detector)
    detector.outputs = list(manifest.scoring.terms)
    try:
        trained = load_ucsd(data, "train", clips=list(manifest.training["clips"]))
        held = load_ucsd(data, "train", clips=list(fold["held_out_clips"]))
        test = load_video_data(data, splits=("test",)).test
        terms = {clip.name: graph_terms(detector, clip) for clip in [*trained, *held, *test]}
    finally:
        detector.close()
    cuts = dict(zip([c.name for c in trained], validation_cuts([len(c.frames) for c in trained], config.get("val_fraction", 0.2))))
    floors = {"score": 0.1}  # as train_alocc.alocc_scoring
    fps = held[0].fps or 10.0
    out: dict[str, Any] = {}
    for stats_rule, stats_of in STATS_RULES.items():
        scoring = AloccScoring(terms=manifest.scoring.terms, location_stats={
            name: stats_of(np.concatenate([terms[c][name][:cuts[c]] for c in cuts]).astype(np.float64), floors.get(name, 0.0))
            for name in manifest.scoring.terms})
        patches = {name: patch_scores(values, scoring) for name, values in terms.items()}
        for frame_rule, frame_scores_of in FRAME_RULES.items():
            frame_scores = {name: frame_scores_of(p) for name, p in patches.items()}
            tails = np.concatenate([frame_scores[c][cuts[c]:] for c in cuts])
            for threshold_rule, tau_of in THRESHOLD_RULES.items():
                tau = tau_of(tails)
                tracker = EpisodeTracker(ServiceConfig.open_after, ServiceConfig.close_after, camera="ped2", rule=manifest.episodes,
                                         threshold=tau)
                scored = {clip.name: ClipScores(clip.name, np.asarray(clip.labels, bool), frame_scores[clip.name],
                                                frame_scores[clip.name] > tau, fps=clip.fps) for clip in [*held, *test]}
                held_scores, test_scores = [scored[c.name] for c in held], [scored[c.name] for c in test]
                out[candidate_name(stats_rule, frame_rule, threshold_rule)] = {
                    "tau": tau, "alarms": holdout_alarms(held_scores, test_scores, fps, tracker),
                    "test_micro_auc": record_json(report(test_scores).frame_level.raw)["micro_auc"]}
    return out


def _episodes(entry: dict[str, Any]) -> dict[str, Any]:
    """Episodes on all normal footage, its hours, events caught and events, through the service's rule."""
    rate, delay = entry["alarms"]["all"]["episodes"]["false_alarms_per_hour"], entry["alarms"]["test_clips"]["episodes"]["detection_delay"]
    return {"episodes": rate["false_alarms"], "normal_hours": rate["normal_hours"], "events_caught": delay["detected"], "events": delay["events"]}


def pooled(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return pooled_alarms([_episodes(entry) for entry in entries])


def choose(entries: list[dict[str, dict[str, Any]]]) -> str:
    """The candidate with the fewest alarms per hour over ``entries`` (folds) among those that catch
    as many events as the deployed rule; the deployed rule on a tie."""
    return fewest_alarms_choice({name: pooled([entry[name] for entry in entries]) for name in entries[0]}, candidate_name(*DEPLOYED))


def inside_the_folds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per seed with two or more folds: each fold measured with the candidate chosen on the others,
    against the deployed rule; and every candidate's mean and worst fold."""
    deployed = candidate_name(*DEPLOYED)
    out: dict[str, Any] = {}
    for seed in sorted({run["seed"] for run in runs}):
        folds = sorted((run for run in runs if run["seed"] == seed), key=lambda run: run["fold"])
        if len(folds) < 2:
            continue
        measured = []
        for run in folds:
            chosen = choose([other["candidates"] for other in folds if other is not run])
            measured.append({"fold": run["fold"], "chosen": chosen, "chosen_result": pooled([run["candidates"][chosen]]),
                             "deployed_result": pooled([run["candidates"][deployed]])})
        rates = {name: [pooled([run["candidates"][name]])["per_hour"] for run in folds] for name in folds[0]["candidates"]}
        out[f"seed {seed}"] = {
            "folds": measured,
            "chosen_inside_folds": pooled([run["candidates"][m["chosen"]] for run, m in zip(folds, measured)]),
            "deployed": pooled([run["candidates"][deployed] for run in folds]),
            "per_candidate": {name: {"mean_per_hour": float(np.mean(r)), "worst_fold_per_hour": float(np.max(r)),
                                     **pooled([run["candidates"][name] for run in folds])} for name, r in rates.items()}}
    return out


def _earlier_runs(path: Path, document: Any) -> list | None:
    if not (isinstance(document, dict) and isinstance(document.get("runs"), list)):
        return None
    if any(candidate_name(*DEPLOYED) not in run["candidates"] for run in document["runs"]):
        raise ResultError(f"{path}: its candidates are not today's (written before {DEPLOYED[2]!r} was deployed): "
                          "run this benchmark on its folds' JSONs again")
    return document["runs"]


def _fold_run(path: Path, fold: Any) -> dict:
    if not isinstance(fold, dict) or fold.get("method") != "alocc" or "held_out_clips" not in fold or not Path(fold.get("model", "")).is_file():
        raise ResultError(f"{path}: not an ALOCC occ-bench ped2 --holdout-fold result whose model is on disk")
    return {"seed": fold["seed"], "fold": fold["fold"], "model": fold["model"], "commit": fold.get("commit"), "candidates": fold_candidates(fold)}


def main(argv: list[str] | None = None) -> int:
    args = fold_benchmark_arguments("python -m occ.benchmarks.alocc_rules", __doc__.split("\n\n")[0],
                                    "occ-bench ped2 --holdout-fold JSONs of ALOCC models still on disk", argv)
    started = time.time()
    try:
        runs = gather_runs(args.folds, _earlier_runs, _fold_run)
    except ResultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
              "command": shlex.join(["python", "-m", "occ.benchmarks.alocc_rules", *(argv if argv is not None else sys.argv[1:])]),
              "deployed": candidate_name(*DEPLOYED), "runs": runs, "inside_the_folds": inside_the_folds(runs),
              # every fold of every seed together: each candidate's episodes over all their normal footage
              "all_runs": {name: pooled([run["candidates"][name] for run in runs]) for name in runs[0]["candidates"]},
              "seconds": round(time.time() - started)}
    args.json.write_text(json.dumps(record_json(result), indent=1) + "\n")
    for seed, entry in result["inside_the_folds"].items():
        print(f"{seed}: deployed {entry['deployed']['per_hour']:.0f}/h ({entry['deployed']['events_caught']}/{entry['deployed']['events']}), "
              f"chosen inside the folds {entry['chosen_inside_folds']['per_hour']:.0f}/h "
              f"({entry['chosen_inside_folds']['events_caught']}/{entry['chosen_inside_folds']['events']})")
    for run in runs:
        deployed = pooled([run["candidates"][candidate_name(*DEPLOYED)]])
        best = min(run["candidates"], key=lambda name: (-pooled([run["candidates"][name]])["events_caught"], pooled([run["candidates"][name]])["episodes"]))
        print(f"seed {run['seed']} fold {run['fold']}: deployed {deployed['episodes']} episodes, {deployed['events_caught']} events; "
              f"fewest here: {best} ({pooled([run['candidates'][best]])['episodes']} episodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
