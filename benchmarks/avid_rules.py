"""AVID's threshold rule (the share of validation frames α lets fire) measured on Ped2's
leave-training-clips-out folds, with the choice made inside the folds.

    python -m occ.benchmarks.avid_rules FOLD.json [FOLD.json ...] --json OUT.json
    python -m occ.benchmarks.avid_rules OUT1.json FOLD.json --json ALL.json   # an earlier result and one more fold

Each ``FOLD.json`` is an AVID ``occ-bench ped2 --holdout-fold`` result whose model is still on disk.
One pass through each model's graph gives the residual's block peaks and the region map of the
frames training calibrated on (its validation tails, cut again by training's own
:func:`occ.train.train_avid.video_data`), of the held-out training clips and of the test clips.
Each candidate rate of :data:`RATES` then re-derives α and ζ as training derives them
(:func:`occ.runtime.scoring.avid_thresholds`) and its frames are scored and decided by the
runtime's rule; its alarms are counted as the holdout benchmark counts them, through the service's
episode rule, at each rule of :data:`CLOSINGS`.

The fold rule (:func:`occ.evaluation.folds.fewest_alarms_choice`, as in ``alocc_rules``): each run
(a seed's fold) is measured with the rate and opening chosen on the other runs (the fewest alarms per
hour among those that catch as many events as the deployed candidate: the `video` recipe's rate, today's rule).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from occ.evaluation.datasets.common import Clip
from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.ucsd import load_ucsd
from occ.evaluation.folds import fewest_alarms_choice
from occ.evaluation.protocols import ClipScores
from occ.evaluation.report import record_json
from occ.runtime.detector import Detector, open_detector
from occ.runtime.events import EpisodeTracker
from occ.runtime.manifest import EpisodeRule, Manifest, read_manifest
from occ.runtime.preprocess import preprocess_clip
from occ.runtime.scoring import avid_fires, avid_thresholds, block_peaks, block_values, frame_scores

from .ped2 import holdout_alarms
from .training_runs import ResultError, commit, fold_benchmark_arguments, gather_runs, machine, pooled_alarms

# α lets this share of the validation frames fire (0: α at the largest of them).
RATES = {"1 % of the validation frames": 0.01, "0.5 % of the validation frames": 0.005, "largest validation frame": 0.0}
# Episode rules the frames are counted with, at today's closing: the model's own (None), 3 or 4 firing frames in
# a row to open, and 3 of 5 (AVID fires in broken runs).
CLOSINGS: dict[str, EpisodeRule | None] = {
    "stored": None, "3 in a row open": EpisodeRule(k=3, n=3), "4 in a row open": EpisodeRule(k=4, n=4),
    "3 of 5 open": EpisodeRule(k=3, n=5)}
BATCH = 32


def deployed_candidate() -> str:
    """The candidate deployed: the ``video`` recipe's rate, with :class:`EpisodeRule`'s opening."""
    from occ.train.train_avid import avid_config

    rate = next(name for name, value in RATES.items() if value == avid_config("video").false_alarm_rate)
    return f"{rate}, {next(name for name, rule in CLOSINGS.items() if rule == EpisodeRule())}"


def graph_maps(detector: Detector, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """The residual's block peaks, the region map ``1 − O`` (both ``(N, rows, cols)``) and the
    graph's own frame score at the stored thresholds, of preprocessed frames."""
    cell = detector.manifest.regions.cell
    parts: dict[str, list[np.ndarray]] = {"peaks": [], "regions": [], "score": []}
    for start in range(0, len(inputs), BATCH):
        outputs = detector.backend.infer(detector.prepare(inputs[start:start + BATCH]), ["score", "residual", "region_anomaly"])
        parts["peaks"].append(block_peaks(np.asarray(outputs["residual"], np.float32), cell))
        parts["regions"].append(np.asarray(outputs["region_anomaly"], np.float32))
        parts["score"].append(np.asarray(outputs["score"], np.float32).reshape(-1))
    return {name: np.concatenate(values) for name, values in parts.items()}


def calibration_inputs(manifest: Manifest, data: str) -> np.ndarray:
    """The frames training set α and ζ on: its clips' validation tails, cut by training itself."""
    from occ.train.train_avid import AvidConfig, video_data

    config = AvidConfig(**manifest.training["config"])
    trained = load_ucsd(data, "train", clips=list(manifest.training["clips"]))
    split = video_data(trained, config, "calibration")
    if split.summary.get("validation_clips") != manifest.training.get("validation_clips"):
        raise ResultError(f"{data}: the validation tails cut again ({split.summary.get('validation_clips')}) are not the model's "
                          f"({manifest.training.get('validation_clips')})")
    return split.val.inputs(np.arange(len(split.val)))


def clip_scores(clip: Clip, maps: dict[str, np.ndarray], manifest: Manifest, alpha: float, zeta: float) -> ClipScores:
    """A clip's frame scores and decisions at ``alpha`` and ``zeta``, by the runtime's rule."""
    scores = frame_scores(block_values(maps["peaks"], maps["regions"], alpha, zeta, manifest.scoring), manifest.scoring)
    return ClipScores(clip.name, np.asarray(clip.labels, bool), scores, avid_fires(scores), fps=clip.fps)


def counts(clips: list[Clip], maps: dict[str, dict[str, np.ndarray]], manifest: Manifest, alpha: float, zeta: float,
           held: set[str], fps: float) -> dict[str, Any]:
    """Episodes on the normal footage, events caught and how soon, at each episode rule of :data:`CLOSINGS`."""
    scored = [clip_scores(clip, maps[clip.name], manifest, alpha, zeta) for clip in clips]
    held_scores, test_scores = [c for c in scored if c.name in held], [c for c in scored if c.name not in held]
    out: dict[str, Any] = {}
    for closing, rule in CLOSINGS.items():
        tracker = EpisodeTracker(camera="ped2", rule=rule or manifest.episodes)
        alarms = {scope: counted["episodes"] for scope, counted in holdout_alarms(held_scores, test_scores, fps, tracker).items()}
        rate, delay = alarms["all"]["false_alarms_per_hour"], alarms["test_clips"]["detection_delay"]
        out[closing] = {"rule": alarms["all"]["rule"], "episodes": rate["false_alarms"],
                        "held_out_training_clips_episodes": alarms["held_out_training_clips"]["false_alarms_per_hour"]["false_alarms"],
                        "normal_hours": rate["normal_hours"], "events_caught": delay["detected"], "events": delay["events"],
                        "median_delay_frames": delay["median_frames"], "delays": delay["delays"]}
    return out


def fold_candidates(fold: dict[str, Any]) -> dict[str, Any]:
    """Every rate's α and ζ and its alarms on one fold's model (its JSON's ``model``), with the
    check that the model's own rate gives its stored thresholds and the fold JSON's episodes."""
    model, data = fold["model"], fold["data"]
    manifest = read_manifest(model)
    detector = open_detector(model)
    assert isinstance(detector, Detector)
    try:
        calibration = graph_maps(detector, calibration_inputs(manifest, data))
        held = load_ucsd(data, "train", clips=list(fold["held_out_clips"]))
        test = load_video_data(data, splits=("test",)).test
        maps = {clip.name: graph_maps(detector, preprocess_clip(clip.frames, manifest.input)) for clip in [*held, *test]}
    finally:
        detector.close()
    fps = held[0].fps or 10.0
    clips, held_names = [*held, *test], {clip.name for clip in held}
    stored = {name: manifest.threshold(name) for name in ("alpha", "zeta")}
    candidates: dict[str, Any] = {}
    for name, rate in RATES.items():
        thresholds = avid_thresholds(manifest.scoring, calibration["peaks"], calibration["regions"], rate, "validation tails")
        alpha, zeta = thresholds["alpha"].value, thresholds["zeta"].value
        fired = frame_scores(block_values(calibration["peaks"], calibration["regions"], alpha, zeta, manifest.scoring), manifest.scoring)
        candidates[name] = {"rate": rate, "alpha": alpha, "zeta": zeta, "alpha_method": thresholds["alpha"].method,
                            "validation_frames_fired": int(avid_fires(fired).sum()), "validation_frames": len(fired),
                            **counts(clips, maps, manifest, alpha, zeta, held_names, fps)}
    own_rate = manifest.thresholds["alpha"].target_false_alarm_rate
    own = next((name for name, rate in RATES.items() if rate == own_rate), None)
    if own is None:
        raise ResultError(f"{model}: α was set at a false-alarm rate of {own_rate}, none of this benchmark's ({', '.join(RATES)})")
    at_stored = counts(clips, maps, manifest, stored["alpha"], stored["zeta"], held_names, fps)["stored"]
    graph_decisions = np.concatenate([avid_fires(maps[c.name]["score"]) for c in clips])
    numpy_decisions = np.concatenate([clip_scores(c, maps[c.name], manifest, stored["alpha"], stored["zeta"]).decisions for c in clips])
    episodes, delay = fold["alarms"]["all"]["episodes"], fold["alarms"]["test_clips"]["episodes"]["detection_delay"]
    check = {"rate": own, "stored_thresholds": stored, "derived_again": {"alpha": candidates[own]["alpha"], "zeta": candidates[own]["zeta"]},
             "fold_json": {"rule": episodes["rule"], "episodes": episodes["false_alarms_per_hour"]["false_alarms"],
                           "events_caught": delay["detected"], "median_delay_frames": delay["median_frames"]},
             "at_stored_thresholds": {k: at_stored[k] for k in ("rule", "episodes", "events_caught", "median_delay_frames")},
             "derived_again_at_stored_closing": {k: candidates[own]["stored"][k] for k in ("rule", "episodes", "events_caught",
                                                                                          "median_delay_frames")},
             "frames_decided_apart_graph_vs_numpy": int((graph_decisions != numpy_decisions).sum()), "frames": int(len(graph_decisions))}
    return {"candidates": candidates, "reproduces_fold_json": check}


def closings_json() -> dict[str, str]:
    """:data:`CLOSINGS` as a result records them."""
    return {name: rule.describe() if rule else "the model's own" for name, rule in CLOSINGS.items()}


def pooled(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Episodes over several runs' normal footage (:func:`pooled_alarms`), with the median delay over
    every caught event and the worst run."""
    delays = [d for e in entries for d in e["delays"]]
    return {**pooled_alarms(entries), "median_delay_frames": float(np.median(delays)) if delays else None,
            "worst_run_per_hour": max(e["episodes"] / e["normal_hours"] for e in entries)}


# What the choice inside the folds chooses among: every rate with every opening.
CHOSEN_AMONG = {f"{rate}, {rule}": (rate, rule) for rate in RATES for rule in CLOSINGS if rule != "stored"}


def inside_the_folds(runs: list[dict[str, Any]], deployed: str) -> dict[str, Any]:
    """Each run measured with the rate and opening chosen on the other runs (:data:`CHOSEN_AMONG`), against the
    ``deployed`` candidate (a name of :data:`CHOSEN_AMONG`)."""
    def counts_of(run: dict[str, Any], name: str) -> dict[str, Any]:
        rate, rule = CHOSEN_AMONG[name]
        return run["candidates"][rate][rule]

    chosen = [fewest_alarms_choice({name: pooled([counts_of(other, name) for other in runs if other is not run]) for name in CHOSEN_AMONG},
                                   deployed) for run in runs]
    return {"chosen": [{"seed": run["seed"], "fold": run["fold"], "candidate": name} for run, name in zip(runs, chosen)],
            "chosen_inside_folds": pooled([counts_of(run, name) for run, name in zip(runs, chosen)]),
            "deployed": pooled([counts_of(run, deployed) for run in runs])}


def _earlier_runs(path: Path, document: Any) -> list | None:
    if (isinstance(document, dict) and isinstance(document.get("runs"), list) and document.get("rates") == RATES
            and document.get("closings") == closings_json()):
        return document["runs"]
    return None


def _fold_run(path: Path, fold: Any) -> dict:
    if not isinstance(fold, dict) or fold.get("method") != "avid" or "held_out_clips" not in fold or not Path(fold.get("model", "")).is_file():
        raise ResultError(f"{path}: neither an AVID occ-bench ped2 --holdout-fold result whose model is on disk nor a result of this benchmark")
    return {"seed": fold["seed"], "fold": fold["fold"], "model": fold["model"], "commit": fold.get("commit"), **fold_candidates(fold)}


def main(argv: list[str] | None = None) -> int:
    args = fold_benchmark_arguments("python -m occ.benchmarks.avid_rules", __doc__.split("\n\n")[0],
                                    "AVID occ-bench ped2 --holdout-fold JSONs whose models are on disk", argv)
    started = time.time()
    try:
        runs = gather_runs(args.folds, _earlier_runs, _fold_run)
    except ResultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    deployed = deployed_candidate()
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
              "command": shlex.join(["python", "-m", "occ.benchmarks.avid_rules", *(argv if argv is not None else sys.argv[1:])]),
              "deployed": deployed, "rates": RATES, "closings": closings_json(), "runs": runs,
              "pooled": {closing: {name: pooled([run["candidates"][name][closing] for run in runs]) for name in RATES} for closing in CLOSINGS},
              "inside_the_folds": inside_the_folds(runs, deployed) if len(runs) > 1 else None,
              "seconds": round(time.time() - started)}
    args.json.write_text(json.dumps(record_json(result), indent=1) + "\n")
    opening = CHOSEN_AMONG[deployed][1]
    for run in runs:
        check = run["reproduces_fold_json"]
        print(f"seed {run['seed']} fold {run['fold']}: α stored {check['stored_thresholds']['alpha']:.6g}, derived again "
              f"{check['derived_again']['alpha']:.6g}; episodes at the stored closing: fold JSON {check['fold_json']['episodes']}, "
              f"here {check['derived_again_at_stored_closing']['episodes']}; "
              + "; ".join(f"{name}, {opening}: {entry[opening]['episodes']} episodes, {entry[opening]['events_caught']}/{entry[opening]['events']} "
                          f"events, median delay {entry[opening]['median_delay_frames']}" for name, entry in run["candidates"].items()))
    for closing in CLOSINGS:
        for name, entry in result["pooled"][closing].items():
            print(f"{name}, {closing}: {entry['episodes']} episodes in {entry['normal_minutes']:.2f} min, {entry['per_hour']:.0f}/h "
                  f"(95 %: {entry['per_hour_low']:.0f}–{entry['per_hour_high']:.0f}), {entry['events_caught']}/{entry['events']} events, "
                  f"median delay {entry['median_delay_frames']}")
    if result["inside_the_folds"]:
        inside = result["inside_the_folds"]
        print(f"chosen inside the folds: {inside['chosen_inside_folds']['episodes']} episodes, deployed {inside['deployed']['episodes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
