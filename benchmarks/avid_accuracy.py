"""AVID accuracy benchmark: the synthetic walkway (pixel masks) and IR-MNIST (the paper's toy set).

    python -m occ.benchmarks.avid_accuracy --mnist ../shared/data/mnist --out runs/bench_avid

Each model is trained, exported and evaluated as an ONNX model through the runtime. Besides the
deployed intersection, the same graph's outputs give the two components alone, to check the
paper's claim that M beats |X − I(X)| and D each: the residual map alone, and D's region map
(1 − O, upsampled to pixels) alone. IR-MNIST (``occ.runtime.evaluate.irmnist_protocol``, the same
as ``occ eval``): detection EER (does the grid hold a 3) by both frame reductions, the largest
value (``peak``) and the blocks' evidence summed (``evidence``, the recipe's deployed score), each
part alone in units of its threshold; localization EER over all 11×11 cells (cell score = the
largest value inside the cell), on two constructions of
the positive test grids (runtime/datasets/irmnist.py): one to five 3s per grid (ours, the hard
case) and every cell drawn from all of MNIST (the paper's "121 randomly selected samples": about
twelve 3s per grid). The IR-MNIST model's region map comes from a memory of the normal training
digits (``AvidConfig.region_memory``, ``--irmnist-region-memory``; 0: D, as published). Writes
``avid_accuracy.json`` and ``avid_accuracy.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from occ.runtime.datasets.common import DatasetError
from occ.runtime.detector import Detector
from occ.runtime.datasets.irmnist import IrMnistSpec
from occ.runtime.evaluate import avid_maps, irmnist_protocol
from occ.runtime.metrics import equal_error_rate, frame_level, pixel_level_scores, roc_auc

from .training_runs import config_overrides, machine


def walkway(workdir: Path, epochs: int, seed: int, overrides: dict | None = None) -> dict:
    import cv2

    from occ.export.onnx_export import export_onnx
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.evaluate import report, score_clips
    from occ.train.train_avid import AvidConfig, train_avid, video_data

    video = load_video_data("walkway")
    config = replace(AvidConfig(epochs=epochs, seed=seed), **(overrides or {}))
    started = time.monotonic()
    train_avid(video_data(video.train, config, video.description), config, workdir / "walkway_avid.pt", Console(stderr=True))
    seconds = time.monotonic() - started
    detector = Detector.open(str(export_onnx(workdir / "walkway_avid.pt").path))
    deployed = report(score_clips(detector, video.test))
    components = {}
    per_clip = {}
    for clip in video.test:
        maps = avid_maps(detector, clip.frames)
        size = maps["intersection"].shape[1:]
        masks = np.stack([cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for m in clip.masks])
        for name, values in maps.items():
            entry = per_clip.setdefault(name, {"labels": [], "scores": [], "pl": [], "ps": []})
            entry["labels"].append(clip.labels)
            entry["scores"].append(values.reshape(len(values), -1).max(axis=1))
            labels, scores = pixel_level_scores(values, masks)
            entry["pl"].append(labels)
            entry["ps"].append(scores)
    for name, entry in per_clip.items():
        frame = frame_level(entry["labels"], entry["scores"])
        pl, ps = np.concatenate(entry["pl"]), np.concatenate(entry["ps"])
        components[name] = {"micro_auc": frame.micro_auc, "macro_auc": frame.macro_auc, "eer": frame.eer,
                            "pixel_auc": roc_auc(pl, ps), "pixel_eer": equal_error_rate(pl, ps)[0]}
    return {"train_seconds": round(seconds, 1), "deployed": deployed, "components": components}


def irmnist(folder: str, workdir: Path, epochs: int, n_train: int, n_test: int, seed: int, skip_connections: bool = False,
            code_channels: int = 16, residual_kernel: int | None = 5, overrides: dict | None = None,
            irregular_digit: int = 3, model: Path | None = None, region_memory: int = 60000) -> dict:
    """Train on IR-MNIST (or take ``model``, trained on the same seed's grids) and evaluate it."""
    from occ.export.onnx_export import export_onnx
    from occ.train.common import load_checkpoint
    from occ.train.irregularities import IMAGE_DEFAULT_KINDS
    from occ.train.train_avid import image_data, irmnist_config, train_avid

    spec = IrMnistSpec(folder, grids=n_train, test_grids=n_test, digit=irregular_digit)
    config = irmnist_config(epochs=epochs, seed=seed, skip_connections=skip_connections, code_channels=code_channels,
                            residual_kernel=residual_kernel, region_memory=region_memory, **(overrides or {}))
    seconds = None
    description = spec.description()
    if model is None:
        model = workdir / "irmnist_avid.pt"
        started = time.monotonic()
        train_avid(image_data(spec.build(seed).train, config, description), config, model, Console(stderr=True))
        seconds = round(time.monotonic() - started, 1)
    else:  # checked before exporting: a model trained on other grids would be scored on its own training digits
        training = load_checkpoint(model).manifest.training
        # models from before the digit was recorded say only "IR-MNIST {n} grids"
        if training["config"]["seed"] != seed or training.get("data") not in (description, f"IR-MNIST {n_train} grids"):
            raise ValueError(f"{model}: trained on {training.get('data')!r} with seed {training['config']['seed']}, "
                             f"not on this run's {description!r} with seed {seed}")
    detector = Detector.open(str(export_onnx(model).path))
    trained = detector.manifest.training["config"]
    protocol = irmnist_protocol(detector, spec, seed)
    return {"train_seconds": seconds, "model": str(model), "train_grids": n_train, "test_grids": n_test,
            "irregular_digit": irregular_digit,
            "config": {"skip_connections": trained["skip_connections"], "code_channels": trained["code_channels"],
                       "residual_kernel": trained["residual_kernel"], "epochs": trained["epochs"],
                       "irregular_kinds": trained["irregular_kinds"] or list(IMAGE_DEFAULT_KINDS),
                       "region_memory": trained.get("region_memory", 0), "frame_score": protocol["frame_score"]},
            **protocol}


def markdown(result: dict) -> str:
    lines = [f"AVID accuracy ({result['machine']}, {result['date']})", ""]
    if "walkway" in result:
        w = result["walkway"]
        raw = w["deployed"]["frame_level"]["raw"]
        lines += ["| synthetic walkway | micro AUC | macro AUC | EER | pixel AUC | pixel EER |", "|---|---|---|---|---|---|",
                  f"| deployed (intersection M, runtime) | {raw['micro_auc']:.3f} | {raw['macro_auc']:.3f} | {raw['eer']:.1%} | "
                  f"{w['deployed']['pixel_level']['auc']:.3f} | {w['deployed']['pixel_level']['eer']:.1%} |"]
        for name, c in w["components"].items():
            lines.append(f"| {name.replace('|', '&#124;')} alone | {c['micro_auc']:.3f} | {c['macro_auc']:.3f} | {c['eer']:.1%} | {c['pixel_auc']:.3f} | {c['pixel_eer']:.1%} |")
        lines.append("")
    if "irmnist" in result:
        r = result["irmnist"]
        deployed = r["frame_score"]
        lines += [f"| IR-MNIST ({r['train_grids']} training grids, {r['test_grids']} test grids, digit {r['irregular_digit']} "
                  f"irregular; frame score: {deployed}) | detection EER, peak | detection EER, evidence | localization EER | "
                  "detection AUC, peak / evidence | localization AUC |", "|---|---|---|---|---|---|"]
        for positives, title in (("few", "one to five irregular digits per positive grid"),
                                 ("natural", "every cell from all of MNIST test, as the paper")):
            row = r[positives]
            lines.append(f"| *{title}: {row['irregular_per_positive_grid']:.1f} per positive grid* | | | | | |")
            for name, c in row["parts"].items():
                label = "deployed intersection M" if name == "intersection" else f"{name.replace('|', '&#124;')} alone"
                eer = {k: f"{c[f'detection_eer_{k}']:.1%}" for k in ("peak", "evidence")}
                eer[deployed] = f"**{eer[deployed]}**" if name == "intersection" else eer[deployed]
                lines.append(f"| {label} | {eer['peak']} | {eer['evidence']} | {c['localization_eer']:.1%} | "
                             f"{c['detection_auc_peak']:.3f} / {c['detection_auc_evidence']:.3f} | {c['localization_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", help="folder with the MNIST IDX files (optional: IR-MNIST part)")
    parser.add_argument("--irmnist-train", type=int, default=5000, help="IR-MNIST training grids (paper: 5000)")
    parser.add_argument("--irmnist-test", type=int, default=1000, help="IR-MNIST test grids (paper: 1000)")
    parser.add_argument("--irmnist-epochs", type=int, default=5)
    parser.add_argument("--irmnist-skips", action="store_true", help="keep I's U-Net skips (the paper's I; default: none)")
    parser.add_argument("--irmnist-code", type=int, default=16, help="channels of I's deepest 1×1 code (0: none)")
    parser.add_argument("--irmnist-residual-kernel", type=int, default=5, help="residual window, pixels (0: the video rule)")
    parser.add_argument("--irmnist-digit", type=int, default=3, help="the irregular digit (paper: 3)")
    parser.add_argument("--irmnist-region-memory", type=int, default=60000, metavar="N",
                        help="score regions by the nearest of up to N normal training digits (0: D, as published)")
    parser.add_argument("--irmnist-model", type=Path, metavar="PT",
                        help="evaluate this IR-MNIST checkpoint (from a run with the same --seed, --irmnist-train and "
                             "--irmnist-digit) instead of training one")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override an AvidConfig field of both parts, e.g. --set irregular_kinds='[\"chimera\"]'; repeatable")
    parser.add_argument("--walkway-epochs", type=int, default=10)
    parser.add_argument("--no-walkway", action="store_true")
    parser.add_argument("--out", default="runs/bench_avid")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from occ.train.train_avid import AvidConfig

    try:
        overrides = config_overrides(args.set, AvidConfig)
    except ValueError as exc:
        parser.error(str(exc))
    if args.irmnist_model and not args.irmnist_model.is_file():
        parser.error(f"--irmnist-model {args.irmnist_model}: no such file")
    workdir = Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    if not args.no_walkway:
        result["walkway"] = walkway(workdir, args.walkway_epochs, args.seed, overrides)
        print(markdown(result), flush=True)
    if args.mnist:
        try:
            result["irmnist"] = irmnist(args.mnist, workdir, args.irmnist_epochs, args.irmnist_train, args.irmnist_test,
                                        args.seed, args.irmnist_skips, args.irmnist_code, args.irmnist_residual_kernel or None,
                                        overrides, args.irmnist_digit, args.irmnist_model, args.irmnist_region_memory)
        except (ValueError, DatasetError) as exc:
            parser.error(str(exc))
    (workdir / "avid_accuracy.json").write_text(json.dumps(result, indent=2))
    (workdir / "avid_accuracy.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
