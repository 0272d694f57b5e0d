"""Real-video accuracy on UCSD Ped2: train → export → evaluate the exported ONNX model through the runtime.

    occ-bench ped2 --data ../shared/data/ucsd-ped2-dev --method alocc --out runs/ped2

Model selection, early stopping and thresholds use normal frames only (the last training clips
are held out as normal validation); the test clips only report. Every metric is given raw, with
temporal smoothing and with per-video min–max normalization, each labelled. For ALOCC the
scoring ablations (plain D(R(X)), scene-aware, fused with the reconstruction error) are computed
from the same exported graph, since scoring is pure runtime functions over its outputs.

With ``--holdout-fold K --holdout-folds N`` the model is trained without fold K of the normal
training clips (clip i in name order → fold i mod N) and counts its alarms on them, never seen in
training, and on the test clips' normal frames, raw and as the service's episodes;
``occ-bench ped2-holdout-summary`` pools the folds' JSONs into alarms per hour with a 95 % interval.

Sizes: ``--size cpu`` (default) 120×180 ALOCC frames with 32-px patches / 128×192 AVID frames and a few epochs,
minutes on 2 cores; ``--size gpu`` full 240×360 (AVID 240×352) with more epochs, for a GPU.
``--json PATH`` writes the whole result.
"""
from __future__ import annotations

import dataclasses
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.common import DatasetError
from occ.evaluation.datasets.ucsd import clip_names, find_ucsd_root, load_ucsd
from occ.evaluation.folds import fold_table, leave_clips_out, training_clip_folds
from occ.evaluation.metrics import poisson_rate_interval
from occ.evaluation.protocols import ClipScores, alarm_counts, delay_text, false_alarms_text, score_clips
from occ.evaluation.report import EvaluationReport, report
from occ.runtime.detector import Detector, open_detector
from occ.runtime.manifest import AloccScoring, LocationStats, read_manifest

from .day import service_tracker
from .training_runs import commit, machine

SIZES = {
    "cpu": {"alocc": dict(height=120, width=180, patch_size=32, stride=16, epochs=5),
            "avid": dict(height=128, width=192, epochs=6)},
    "gpu": {"alocc": dict(height=240, width=360, patch_size=30, stride=15, epochs=15, base_width=64, depth=3),
            "avid": dict(height=240, width=352, epochs=20, base_width=32)},
}


def _global_stats(stats: LocationStats) -> LocationStats:
    """Per-location statistics merged into one (for the 'no scene statistics' ablation)."""
    mean, std = np.asarray(stats.mean), np.asarray(stats.std)
    pooled_std = float(np.sqrt(np.mean(std**2) + np.var(mean)))
    return LocationStats(mean=[float(mean.mean())] * len(mean), std=[pooled_std] * len(mean))


def alocc_variants(scoring: AloccScoring) -> dict[str, AloccScoring]:
    """The deployed scoring and its ablations, from the same graph outputs and statistics."""
    stats = scoring.location_stats
    variants = {"deployed": scoring, "plain D(R(X))": AloccScoring(terms={"score": 1.0})}
    if "score" in stats:
        variants["D(R(X)) scene-aware"] = AloccScoring(terms={"score": 1.0}, location_stats={"score": stats["score"]})
    if "reconstruction_error" in stats:
        variants["reconstruction error scene-aware"] = AloccScoring(
            terms={"reconstruction_error": 1.0}, location_stats={"reconstruction_error": stats["reconstruction_error"]})
        variants["fused, one global statistic"] = AloccScoring(terms={"score": 1.0, "reconstruction_error": 1.0},
                                                              location_stats={k: _global_stats(v) for k, v in stats.items()})
    return variants


def evaluate_model(model_path: str, clips) -> tuple[dict[str, EvaluationReport], dict[str, list[ClipScores]]]:
    """Every scoring variant's metrics and per-frame scores; ALOCC's variants re-score one recorded
    pass through the graph."""
    detector = open_detector(model_path)
    if detector.manifest.method != "alocc":
        scored = score_clips(detector, clips)
        detector.close()
        return {"deployed": report(scored)}, {"deployed": scored}
    assert isinstance(detector, Detector)
    manifest = detector.manifest
    variants = alocc_variants(manifest.scoring)
    detector.outputs = sorted({name for scoring in variants.values() for name in scoring.terms})
    recorded: list[dict[str, np.ndarray]] = []
    infer = detector.forward

    def record(feed):
        outputs = infer(feed)
        recorded.append(outputs)
        return outputs

    results, per_frame = {}, {}
    for index, (name, scoring) in enumerate(variants.items()):
        replay = iter(recorded)
        detector.forward = record if index == 0 else (lambda feed: next(replay))
        detector.manifest = dataclasses.replace(manifest, scoring=scoring)
        per_frame[name] = score_clips(detector, clips)
        results[name] = report(per_frame[name])
    detector.close()
    return results, per_frame


def leave_clips_out_tables(per_frame: dict[str, list[ClipScores]], choose: int | None = None) -> dict[str, Any]:
    """The fold table of each scoring variant, and of choosing among them in each fold (choosing on
    half the test clips unless ``choose`` says how many)."""
    labels = {c.name: c.labels for c in next(iter(per_frame.values()))}
    scores = {name: {c.name: c.scores for c in scored} for name, scored in per_frame.items()}
    folds = leave_clips_out(list(labels), choose)
    tables = {name: fold_table(labels, {name: scores[name]}, folds).to_json() for name in scores}
    if len(scores) > 1:
        tables["chosen in each fold among these"] = fold_table(labels, scores, folds).to_json()
    return tables


def train(method: str, data: str, size: str, workdir: Path, seed: int, recipe: str = "video",
          epochs: int | None = None) -> tuple[Path, float]:
    """Train ``method`` at ``size`` (``epochs``: the size's when None), export; the model and the training's seconds."""
    from occ.export.onnx_export import export_onnx
    from occ.train.workflow import train_alocc_from, train_avid_from

    started = time.monotonic()
    checkpoint = workdir / f"ped2_{method}.pt"
    train_from = train_alocc_from if method == "alocc" else train_avid_from
    settings = {**SIZES[size][method], **({} if epochs is None else {"epochs": epochs})}
    train_from(data, checkpoint, recipe, console=Console(stderr=True), seed=seed, **settings)
    seconds = time.monotonic() - started
    return export_onnx(checkpoint).path, seconds


def _epochs_option(epochs: int | None) -> list[str]:
    return [] if epochs is None else ["--epochs", str(epochs)]


def run_ped2(data: str, method: str, workdir: str | Path, size: str = "cpu", seed: int = 0, recipe: str = "video",
             model: str | None = None, folds: bool = False, epochs: int | None = None) -> dict[str, Any]:
    """Train (or take ``model``), export and evaluate on the test clips of ``data``; with ``folds``,
    the leave-clips-out table (choose on three test clips, measure on the rest, every split)."""
    if method not in ("alocc", "avid") or size not in SIZES:
        raise ValueError(f"method must be alocc or avid and size one of {', '.join(SIZES)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    command = ["occ-bench", "ped2", "--data", data, "--method", method, "--size", size, "--seed", str(seed), "--out", str(workdir),
               *_epochs_option(epochs)]
    result: dict[str, Any] = {"method": method, "size": size, "recipe": recipe, "data": data, "seed": seed, "machine": machine(),
                              "date": time.strftime("%Y-%m-%d"), "commit": commit()}
    if model is None:
        model_path, seconds = train(method, data, size, workdir, seed, recipe, epochs)
        result["train_seconds"] = round(seconds)
        model = str(model_path)
    else:
        command += ["--model", str(model)]
        config = read_manifest(model).training.get("config", {})
        result.update(seed=config.get("seed"), recipe=config.get("recipe"))
    result["command"] = shlex.join(command + (["--folds"] if folds else []))
    result.update(model=str(model), trained_on_clips=read_manifest(model).training.get("clips", []))
    result["variants"], per_frame = evaluate_model(str(model), load_video_data(data, splits=("test",)).test)
    if folds:
        result["folds"] = leave_clips_out_tables(per_frame)
    return result


def markdown(result: dict[str, Any]) -> str:
    """The variants table of one model, or of each model with the fold tables across them."""
    if "models" in result:
        return "\n".join(markdown(r) for r in result["models"]) + "\n" + folds_markdown(result["models"])
    lines = [f"UCSD Ped2 test clips of {result['data']}, {result['method']} (recipe {result['recipe']}, seed {result['seed']}), "
             f"exported FP32 ONNX through the runtime; {result['machine']}; size '{result['size']}'; "
             f"train {result.get('train_seconds', '?')} s", "",
             "| scoring | micro AUC | macro AUC | EER | micro AUC, smoothed 9 | EER, smoothed 9 | micro AUC, per-video min–max |",
             "|---|---|---|---|---|---|---|"]
    for name, metrics in result["variants"].items():
        offline = metrics.frame_level_offline
        raw, smooth, mm = metrics.frame_level.raw, offline["smoothed_9"], offline["per_video_minmax"]
        lines.append(f"| {name} | {raw.micro_auc:.3f} | {raw.macro_auc:.3f} | {raw.eer:.1%} | "
                     f"{smooth.micro_auc:.3f} | {smooth.eer:.1%} | {mm.micro_auc:.3f} |")
    text = "\n".join(lines) + "\n\n" + operator_line(result["variants"]["deployed"]) + "\n"
    return text + ("\n" + folds_markdown([result]) if "folds" in result else "")


def operator_line(metrics: EvaluationReport) -> str:
    """False alarms per hour and detection delay of the deployed scoring at its stored threshold."""
    at = metrics.at_stored_threshold
    return (f"At the stored threshold (deployed scoring): false alarms per hour of normal footage "
            f"{false_alarms_text(at.false_alarms_per_hour)}; median detection delay in frames "
            f"{delay_text(at.detection_delay)}.")


def folds_over_models(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per scoring every model was measured with: the mean of the models' fold means and the worst
    of their worst folds."""
    results = [r for r in results if "folds" in r]
    names = [name for name in (results[0]["folds"] if results else {}) if all(name in r["folds"] for r in results)]
    return {name: {"mean": float(np.mean([r["folds"][name]["mean"] for r in results])),
                   "worst": float(min(r["folds"][name]["worst"] for r in results))} for name in names}


def models_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several models' results, with their leave-clips-out tables pooled (:func:`folds_over_models`)."""
    pooled = folds_over_models(results)
    return {"models": results, **({"folds_over_models": pooled} if pooled else {})}


def folds_markdown(results: list[dict[str, Any]]) -> str:
    """Mean and worst measured-clip AUC over the leave-clips-out folds, per model and scoring, and
    over all models (:func:`folds_over_models`)."""
    results = [r for r in results if "folds" in r]
    if not results:
        return ""
    lines = ["Leave-clips-out (raw causal scores; choose on half the test clips, measure on the others, every split: 20 for six clips):", "",
             "| scoring | " + " | ".join(f"seed {r['seed']}: mean / worst" for r in results) + " | all: mean / worst |",
             "|---|" + "---|" * (len(results) + 1)]
    for name, overall in folds_over_models(results).items():
        cells = [f"{r['folds'][name]['mean']:.3f} / {r['folds'][name]['worst']:.3f}" for r in results]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {overall['mean']:.3f} / {overall['worst']:.3f} |")
    return "\n".join(lines) + "\n"


HOLDOUT_SCOPES = ("held_out_training_clips", "test_clips", "all")


def holdout_alarms(held: list[ClipScores], test: list[ClipScores], fps: float, tracker: Any) -> dict[str, Any]:
    """:func:`~occ.evaluation.protocols.alarm_counts` in each of :data:`HOLDOUT_SCOPES`: the held-out
    training clips, the test clips, and both."""
    return {scope: alarm_counts(clips, fps, tracker) for scope, clips in zip(HOLDOUT_SCOPES, (held, test, held + test))}


def holdout_view(data: str, fold: int, folds: int, workdir: Path) -> tuple[Path, tuple[str, ...]]:
    """A UCSD-layout folder under ``workdir`` that links every training clip of ``data`` but fold
    ``fold``'s, and everything beside ``Train/``; and the held-out clip names. Training on it leaves
    them unseen."""
    root = find_ucsd_root(data)
    train_dir = root / "Train"
    names = clip_names(root, "train")
    if not 0 <= fold < folds:
        raise ValueError(f"--holdout-fold must be in 0..{folds - 1} with --holdout-folds {folds}, got {fold}")
    held_out = training_clip_folds(names, folds)[fold]
    view = workdir / f"holdout-fold{fold}-of-{folds}" / root.name  # the folder name carries Ped2's frame rate
    (view / "Train").mkdir(parents=True, exist_ok=True)
    for name in names:
        link = view / "Train" / name
        if name not in held_out and not link.is_symlink():
            link.symlink_to((train_dir / name).resolve(), target_is_directory=True)
        elif name in held_out and link.is_symlink():
            link.unlink()
    for entry in root.iterdir():  # the test split, and a walkway's description (its frame rate)
        if entry.name != "Train" and not (view / entry.name).is_symlink():
            (view / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    return view, held_out


def run_ped2_holdout(data: str, method: str, workdir: str | Path, fold: int, folds: int = 4, size: str = "cpu", seed: int = 0,
                     recipe: str = "video", model: str | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Train (or take ``model``) without fold ``fold`` of the normal training clips, export, and
    count alarms at the stored threshold on those clips and on the test clips, through the runtime.

    Alarms are counted raw (runs of anomalous decisions) and as the service's episodes (its default
    K and J): see :func:`~occ.evaluation.protocols.alarm_counts`. Scopes: the held-out training
    clips, the test clips (their normal frames, and the detection of their events), and both.
    ``model`` must not have been trained on a held-out clip (its manifest lists its clips).
    """
    if method not in ("alocc", "avid") or size not in SIZES:
        raise ValueError(f"method must be alocc or avid and size one of {', '.join(SIZES)}")
    workdir = Path(workdir)
    view, held_out = holdout_view(data, fold, folds, workdir)
    command = ["occ-bench", "ped2", "--data", data, "--method", method, "--size", size, "--seed", str(seed),
               "--holdout-fold", str(fold), "--holdout-folds", str(folds), "--out", str(workdir), *_epochs_option(epochs)]
    result: dict[str, Any] = {"method": method, "size": size, "recipe": recipe, "data": data, "seed": seed,
                              "fold": fold, "folds": folds, "held_out_clips": list(held_out),
                              "date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit()}
    if model is None:
        model_path, seconds = train(method, str(view), size, workdir, seed, recipe, epochs)
        result["train_seconds"] = round(seconds)
        model = str(model_path)
    else:
        command += ["--model", str(model)]
    result["command"] = shlex.join(command)
    manifest = read_manifest(model)
    trained_on = manifest.training.get("clips", [])
    seen = sorted(set(trained_on) & set(held_out))
    if seen:
        raise ValueError(f"{model}: trained on {', '.join(seen)}, which fold {fold} of {folds} holds out")
    config = manifest.training.get("config", {})
    result.update(model=str(model), trained_on_data=manifest.training.get("data"), trained_on_clips=trained_on,
                  validation_clips=manifest.training.get("validation_clips"), seed=config.get("seed", seed),
                  recipe=config.get("recipe", recipe), epochs=config.get("epochs"), stored_thresholds={k: t.value for k, t in manifest.thresholds.items()})
    result.setdefault("train_seconds", manifest.training.get("seconds"))
    detector = open_detector(str(model))
    try:
        held = score_clips(detector, load_ucsd(data, "train", clips=list(held_out)))
        test = score_clips(detector, load_video_data(data, splits=("test",)).test)
    finally:
        detector.close()
    fps = held[0].fps
    if fps is None:
        raise DatasetError(f"{data}: the frame rate is unknown (not a UCSD Ped folder), so alarms per hour cannot be counted")
    tracker = service_tracker(manifest)
    result["alarms"] = holdout_alarms(held, test, fps, tracker)
    result["test_report"] = report(test)
    return result


def holdout_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The folds' alarms pooled: per scope and counting rule, the alarms and normal hours summed
    and the rate with its exact 95 % Poisson interval; per fold the same and the events caught.

    The held-out training clips are each counted once over a complete set of folds; the test
    clips' normal frames once per fold (each fold's model scores them).
    """
    if not results:
        raise ValueError("no fold results to pool")
    keys = {(r.get("method"), r.get("seed"), r.get("folds"), r.get("size"), r.get("epochs")) for r in results}
    if len(keys) != 1 or any("alarms" not in r for r in results):
        raise ValueError("pool the holdout folds of one method, seed, size, epochs and number of folds (occ-bench ped2 --holdout-fold)")
    method, seed, folds, size, _ = keys.pop()
    fold_numbers = [r["fold"] for r in results]
    if len(set(fold_numbers)) != len(fold_numbers):
        raise ValueError(f"a fold is given twice: {sorted(fold_numbers)}")
    pooled: dict[str, Any] = {}
    for scope in ("held_out_training_clips", "all"):
        pooled[scope] = {}
        for rule in ("raw", "episodes"):
            entries = [r["alarms"][scope][rule]["false_alarms_per_hour"] for r in results]
            alarms, hours = sum(e["false_alarms"] for e in entries), sum(e["normal_hours"] for e in entries)
            low, high = poisson_rate_interval(alarms, hours)
            pooled[scope][rule] = {"false_alarms": alarms, "normal_hours": hours, "normal_minutes": hours * 60, "per_hour": alarms / hours,
                                   "per_hour_low": low, "per_hour_high": high}
    detection = {}
    for rule in ("raw", "episodes"):
        delays = [r["alarms"]["test_clips"][rule]["detection_delay"] for r in results]
        pooled_delays = [d for entry in delays for d in entry["delays"]]
        detection[rule] = {"events": sum(d["events"] for d in delays), "detected": sum(d["detected"] for d in delays),
                           "median_frames": float(np.median(pooled_delays)) if pooled_delays else None}
    per_fold = [{"fold": r["fold"], "held_out_clips": r["held_out_clips"], "date": r["date"], "commit": r.get("commit"),
                 "command": r.get("command"),
                 **{f"{scope}_{rule}": r["alarms"][scope][rule]["false_alarms_per_hour"] for scope in ("held_out_training_clips", "all")
                    for rule in ("raw", "episodes")},
                 **{f"detection_{rule}": r["alarms"]["test_clips"][rule]["detection_delay"] for rule in ("raw", "episodes")}}
                for r in sorted(results, key=lambda r: r["fold"])]
    summary = {"method": method, "seed": seed, "size": size, "folds": folds, "folds_pooled": sorted(fold_numbers),
               "complete": sorted(fold_numbers) == list(range(folds)), "machine": results[0].get("machine"),
               "pooled": pooled, "detection": detection, "per_fold": per_fold}
    return summary


def without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


def _rate_cell(entry: dict[str, Any]) -> str:
    return (f"{entry['false_alarms']} in {entry['normal_minutes']:.2f} min: {entry['per_hour']:,.0f} "
            f"(95 %: {entry['per_hour_low']:,.0f}–{entry['per_hour_high']:,.0f})")


def _detection_cell(entry: dict[str, Any]) -> str:
    median = "–" if entry["median_frames"] is None else f"{entry['median_frames']:g}"
    return f"{entry['detected']} of {entry['events']}, median {median}"


def holdout_markdown(result: dict[str, Any]) -> str:
    """One fold's or the pooled folds' alarms per hour (raw runs / episodes) and events caught."""
    if "pooled" not in result:
        result = holdout_summary([result])
    lines = [f"UCSD Ped2 leave-training-clips-out, {result['method']} seed {result['seed']}, size '{result['size']}', "
             f"folds {', '.join(map(str, result['folds_pooled']))} of {result['folds']}; {result['machine']}. "
             "Alarms at the stored threshold: raw decision runs / service episodes.", "",
             "| fold | footage | alarms per hour, raw runs | alarms per hour, episodes | events caught, median delay (frames), raw | episodes |",
             "|---|---|---|---|---|---|"]
    for fold in result["per_fold"]:
        for scope, label in (("held_out_training_clips", "held-out training clips"), ("all", "+ test clips' normal frames")):
            detect = (_detection_cell(fold["detection_raw"]), _detection_cell(fold["detection_episodes"])) if scope == "all" else ("", "")
            lines.append(f"| {fold['fold']} | {label} | {_rate_cell(fold[scope + '_raw'])} | {_rate_cell(fold[scope + '_episodes'])} | "
                         f"{detect[0]} | {detect[1]} |")
    for scope, label in (("held_out_training_clips", "held-out training clips"), ("all", "+ test clips' normal frames")):
        pooled = result["pooled"][scope]
        detect = (_detection_cell(result["detection"]["raw"]), _detection_cell(result["detection"]["episodes"])) if scope == "all" else ("", "")
        lines.append(f"| pooled | {label} | {_rate_cell(pooled['raw'])} | {_rate_cell(pooled['episodes'])} | {detect[0]} | {detect[1]} |")
    return "\n".join(lines) + "\n"
