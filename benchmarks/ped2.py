"""Real-video accuracy on UCSD Ped2: train → export → evaluate the exported ONNX model through the runtime.

    occ-bench ped2 --data ../shared/data/ucsd-ped2-dev --method alocc --out runs/ped2

Model selection, early stopping and thresholds use normal frames only (the last training clips
are held out as normal validation); the test clips only report. Every metric is given raw, with
temporal smoothing and with per-video min–max normalization, each labelled. For ALOCC the
scoring ablations (plain D(R(X)), scene-aware, fused with the reconstruction error) are computed
from the same exported graph, since scoring is pure runtime functions over its outputs.

Sizes: ``--size cpu`` (default) 120×180 ALOCC frames with 32-px patches / 128×192 AVID frames and a few epochs,
minutes on 2 cores; ``--size gpu`` full 240×360 (AVID 240×352) with more epochs, for a GPU.
``--json PATH`` writes the whole result.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.folds import fold_table, leave_clips_out
from occ.evaluation.protocols import ClipScores, delay_text, false_alarms_text, report, score_clips
from occ.runtime.detector import Detector, open_detector
from occ.runtime.manifest import AloccScoring, LocationStats, read_manifest

from .training_runs import machine

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


def evaluate_model(model_path: str, clips) -> tuple[dict[str, Any], dict[str, list[ClipScores]]]:
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


def train(method: str, data: str, size: str, workdir: Path, seed: int, recipe: str = "video") -> tuple[Path, float]:
    from occ.export.onnx_export import export_onnx
    from occ.train.workflow import train_alocc_from, train_avid_from

    started = time.monotonic()
    checkpoint = workdir / f"ped2_{method}.pt"
    train_from = train_alocc_from if method == "alocc" else train_avid_from
    train_from(data, checkpoint, recipe, console=Console(stderr=True), seed=seed, **SIZES[size][method])
    seconds = time.monotonic() - started
    return export_onnx(checkpoint).path, seconds


def run_ped2(data: str, method: str, workdir: str | Path, size: str = "cpu", seed: int = 0, recipe: str = "video",
             model: str | None = None, folds: bool = False) -> dict[str, Any]:
    """Train (or take ``model``), export and evaluate on the test clips of ``data``; with ``folds``,
    the leave-clips-out table (choose on three test clips, measure on the rest, every split)."""
    if method not in ("alocc", "avid") or size not in SIZES:
        raise ValueError(f"method must be alocc or avid and size one of {', '.join(SIZES)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"method": method, "size": size, "recipe": recipe, "data": data, "seed": seed, "machine": machine(),
                              "date": time.strftime("%Y-%m-%d")}
    if model is None:
        model_path, seconds = train(method, data, size, workdir, seed, recipe)
        result["train_seconds"] = round(seconds)
        model = str(model_path)
    else:
        config = read_manifest(model).training.get("config", {})
        result.update(seed=config.get("seed"), recipe=config.get("recipe"))
    result["model"] = str(model)
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
        offline = metrics["frame_level_offline"]
        raw, smooth, mm = metrics["frame_level"]["raw"], offline["smoothed_9"], offline["per_video_minmax"]
        lines.append(f"| {name} | {raw['micro_auc']:.3f} | {raw['macro_auc']:.3f} | {raw['eer']:.1%} | "
                     f"{smooth['micro_auc']:.3f} | {smooth['eer']:.1%} | {mm['micro_auc']:.3f} |")
    text = "\n".join(lines) + "\n\n" + operator_line(result["variants"]["deployed"]) + "\n"
    return text + ("\n" + folds_markdown([result]) if "folds" in result else "")


def operator_line(metrics: dict[str, Any]) -> str:
    """False alarms per hour and detection delay of the deployed scoring at its stored threshold."""
    at = metrics["at_stored_threshold"]
    return (f"At the stored threshold (deployed scoring): false alarms per hour of normal footage "
            f"{false_alarms_text(at['false_alarms_per_hour'])}; median detection delay in frames "
            f"{delay_text(at['detection_delay'])}.")


def folds_markdown(results: list[dict[str, Any]]) -> str:
    """Mean and worst measured-clip AUC over the leave-clips-out folds, per model and scoring, and
    over all models (mean of their means, worst of their worst folds)."""
    results = [r for r in results if "folds" in r]
    if not results:
        return ""
    lines = ["Leave-clips-out (raw causal scores; choose on half the test clips, measure on the others, every split: 20 for six clips):", "",
             "| scoring | " + " | ".join(f"seed {r['seed']}: mean / worst" for r in results) + " | all: mean / worst |",
             "|---|" + "---|" * (len(results) + 1)]
    for name in results[0]["folds"]:
        tables = [r["folds"][name] for r in results if name in r["folds"]]
        if len(tables) != len(results):
            continue
        cells = [f"{t['mean']:.3f} / {t['worst']:.3f}" for t in tables]
        overall = f"{np.mean([t['mean'] for t in tables]):.3f} / {min(t['worst'] for t in tables):.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {overall} |")
    return "\n".join(lines) + "\n"
