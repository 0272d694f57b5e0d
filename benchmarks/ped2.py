"""Real-video accuracy on UCSD Ped2: train → export → evaluate the exported ONNX model through the runtime.

    python -m occ.benchmarks.ped2 --data ../shared/data/ucsd-ped2-dev --method alocc --out runs/ped2

Model selection, early stopping and thresholds use normal frames only (the last training clips
are held out as normal validation); the test clips only report. Every metric is given raw, with
temporal smoothing and with per-video min–max normalization, each labelled. For ALOCC the
scoring ablations (plain D(R(X)), scene-aware, fused with the reconstruction error) are computed
from the same exported graph, since scoring is pure runtime functions over its outputs.

Sizes: ``--size cpu`` (default) 120×180 ALOCC frames with 32-px patches / 128×192 AVID frames and a few epochs,
minutes on 2 cores; ``--size gpu`` full 240×360 (AVID 240×352) with more epochs, for a GPU.
Writes ``ped2_<method>.json`` and ``ped2_<method>.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from occ.runtime.detector import Detector
from occ.runtime.evaluate import report, score_clips

from .training_runs import config_overrides, machine

SIZES = {
    "cpu": {"alocc": dict(height=120, width=180, patch_size=32, stride=16, epochs=5),
            "avid": dict(height=128, width=192, epochs=6)},
    "gpu": {"alocc": dict(height=240, width=360, patch_size=30, stride=15, epochs=15, base_width=64, depth=3),
            "avid": dict(height=240, width=352, epochs=20, base_width=32)},
}


def _global_stats(stats: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-location statistics merged into one (for the 'no scene statistics' ablation)."""
    mean = np.asarray(stats["mean"])
    std = np.asarray(stats["std"])
    pooled_mean = float(mean.mean())
    pooled_std = float(np.sqrt(np.mean(std**2) + np.var(mean)))
    return {"mean": [pooled_mean] * len(mean), "std": [pooled_std] * len(mean)}


def alocc_variants(manifest_scoring: dict[str, Any]) -> dict[str, dict[str, Any]]:
    stats = manifest_scoring.get("location_stats") or {}
    variants = {"deployed": manifest_scoring, "plain D(R(X))": {"terms": {"score": 1.0}, "location_stats": None}}
    if "score" in stats:
        variants["D(R(X)) scene-aware"] = {"terms": {"score": 1.0}, "location_stats": {"score": stats["score"]}}
    if "reconstruction_error" in stats:
        variants["reconstruction error scene-aware"] = {"terms": {"reconstruction_error": 1.0},
                                                        "location_stats": {"reconstruction_error": stats["reconstruction_error"]}}
        variants["fused, one global statistic"] = {"terms": {"score": 1.0, "reconstruction_error": 1.0},
                                                   "location_stats": {k: _global_stats(v) for k, v in stats.items()}}
    return variants


def evaluate_model(model_path: str, clips) -> dict[str, Any]:
    detector = Detector.open(model_path)
    results = {}
    if detector.manifest.method == "alocc":
        # One pass through the graph; the scoring variants re-score its recorded outputs (scoring is
        # pure runtime code over them), so the ablations cost no extra inference.
        original = detector.manifest.scoring
        variants = alocc_variants(original)
        detector.outputs = sorted({term for scoring in variants.values() for term in scoring["terms"]})
        recorded: list[dict[str, np.ndarray]] = []
        infer = detector.forward

        def record(feed):
            outputs = infer(feed)
            recorded.append(outputs)
            return outputs

        for index, (name, scoring) in enumerate(variants.items()):
            replay = iter(recorded)
            detector.forward = record if index == 0 else (lambda feed: next(replay))
            detector.manifest.scoring = scoring
            results[name] = report(score_clips(detector, clips))
        detector.manifest.scoring, detector.forward = original, infer
    else:
        results["deployed"] = report(score_clips(detector, clips))
    return results


def train(method: str, data: str, size: str, workdir: Path, seed: int, overrides: dict | None = None) -> tuple[Path, float]:
    from occ.export.onnx_export import export_onnx
    from occ.runtime.datasets.spec import load_video_data

    video = load_video_data(data, splits=("train",))
    console = Console(stderr=True)
    started = time.monotonic()
    checkpoint = workdir / f"ped2_{method}.pt"
    if method == "alocc":
        from occ.train.train_alocc import AloccConfig, train_alocc, video_data

        config = AloccConfig(seed=seed, **{**SIZES[size]["alocc"], **(overrides or {})})
        train_alocc(video_data(video.train, config, video.description), config, checkpoint, console)
    else:
        from occ.train.train_avid import AvidConfig, train_avid, video_data

        config = AvidConfig(seed=seed, **{**SIZES[size]["avid"], **(overrides or {})})
        train_avid(video_data(video.train, config, video.description), config, checkpoint, console)
    seconds = time.monotonic() - started
    return export_onnx(checkpoint).path, seconds


def markdown(result: dict[str, Any]) -> str:
    lines = [f"UCSD Ped2 dev split (Test001–006), {result['method']}, exported FP32 ONNX through the runtime; "
             f"{result['machine']}; size '{result['size']}'; train {result.get('train_seconds', '?')} s", "",
             "| scoring | micro AUC | macro AUC | EER | micro AUC, smoothed 9 | EER, smoothed 9 | micro AUC, per-video min–max |",
             "|---|---|---|---|---|---|---|"]
    for name, metrics in result["variants"].items():
        fl = metrics["frame_level"]
        raw, smooth, mm = fl["raw"], fl["smoothed_9"], fl["per_video_minmax"]
        lines.append(f"| {name} | {raw['micro_auc']:.3f} | {raw['macro_auc']:.3f} | {raw['eer']:.1%} | "
                     f"{smooth['micro_auc']:.3f} | {smooth['eer']:.1%} | {mm['micro_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="UCSD Ped2 folder (official layout)")
    parser.add_argument("--method", choices=("alocc", "avid"), default="alocc")
    parser.add_argument("--size", choices=tuple(SIZES), default="cpu")
    parser.add_argument("--model", help="evaluate this exported model instead of training one")
    parser.add_argument("--out", default="runs/ped2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a training config field (AloccConfig / AvidConfig), e.g. --set epochs=8 or --set bottleneck=16; repeatable")
    args = parser.parse_args()
    from occ.runtime.datasets.spec import load_video_data

    workdir = Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"method": args.method, "size": args.size, "data": args.data,
                              "machine": machine(),
                              "date": time.strftime("%Y-%m-%d")}
    if args.model:
        model_path = args.model
    else:
        if args.method == "alocc":
            from occ.train.train_alocc import AloccConfig as config_class
        else:
            from occ.train.train_avid import AvidConfig as config_class
        try:
            overrides = config_overrides(args.set, config_class)
        except ValueError as exc:
            parser.error(str(exc))
        result["overrides"] = overrides
        model_path, seconds = train(args.method, args.data, args.size, workdir, args.seed, overrides)
        result["train_seconds"] = round(seconds)
    result["model"] = str(model_path)
    clips = load_video_data(args.data, splits=("test",)).test
    result["variants"] = evaluate_model(str(model_path), clips)
    (workdir / f"ped2_{args.method}.json").write_text(json.dumps(result, indent=2))
    (workdir / f"ped2_{args.method}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
