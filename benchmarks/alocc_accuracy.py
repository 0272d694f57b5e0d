"""ALOCC accuracy benchmark: MNIST one-class (the paper's protocol) and the synthetic walkway.

    python -m occ.benchmarks.alocc_accuracy --mnist ../shared/data/mnist --out runs/bench_alocc

MNIST: for each digit, ALOCC is trained on that digit's training images (10 % held out as
normal validation, which sets the thresholds); the test set is that
digit's test images plus randomly drawn other digits making up 10–50 % of it. F1 is reported
with the target class as the positive class (the paper's convention) and for the outlier class,
at thresholds set on the held-out target images (never on test data) at 1 % and 5 % false alarms,
for the deployed D(R(X)) score and for D(X).
Walkway: train → export → evaluate the ONNX model through the runtime.
Writes ``alocc_accuracy.json`` and ``alocc_accuracy.md``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from occ.runtime.metrics import f1_score, roc_auc
from occ.runtime.preprocess import normalize
from occ.train.common import load_checkpoint
from occ.train.train_alocc import AloccConfig, build_scorer, image_data, train_alocc

from .training_runs import machine

OUTLIER_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
# false-alarm rates on held-out target images at which F1 is reported; the first is the trained
# model's stored threshold (1 %), the second the benchmark's operating point (see the README)
OPERATING_POINTS = (0.01, 0.05)


def mnist_digit(folder: str, digit: int, config: AloccConfig, workdir: Path, seed: int, reuse: bool = False) -> dict:
    from occ.runtime.datasets import load_mnist

    train_x, train_y = load_mnist(folder, "train")
    test_x, test_y = load_mnist(folder, "test")
    checkpoint_path = workdir / f"mnist_{digit}.pt"
    data = image_data(train_x[train_y == digit], config, f"MNIST digit {digit}")
    started = time.monotonic()
    if not (reuse and checkpoint_path.exists()):
        train_alocc(data, config, checkpoint_path, Console(stderr=True))
    seconds = time.monotonic() - started
    checkpoint = load_checkpoint(checkpoint_path)
    manifest = checkpoint.manifest
    scorer = build_scorer(checkpoint.architecture, checkpoint.state_dicts)
    scorer.with_d_of_x = True
    stats = manifest.scoring.get("location_stats") or {}

    def scores(images: np.ndarray) -> dict[str, np.ndarray]:
        """-D(R(X)), -D(X) and the deployed score (fused z-scores) per image."""
        x = torch.from_numpy(images)
        with torch.no_grad():
            outputs = [scorer(x[i : i + 1000]) for i in range(0, len(x), 1000)]
        raw = {"score": -np.concatenate([o[1].numpy() for o in outputs]),
               "reconstruction_error": np.concatenate([o[2].numpy() for o in outputs])}
        fused = sum(weight * (raw[name] - stats[name]["mean"][0]) / stats[name]["std"][0]
                    for name, weight in manifest.scoring["terms"].items())
        return {"drx": raw["score"], "dx": -np.concatenate([o[3].numpy() for o in outputs]), "deployed": fused}

    test = scores(normalize(test_x.astype(np.float32)[:, None], manifest.input))
    # thresholds from the held-out target images only, at each operating point
    held_out = scores(data.val_frames[:, 0])
    thresholds = {rate: {key: float(np.quantile(held_out[key], 1 - rate)) for key in ("deployed", "dx")} for rate in OPERATING_POINTS}
    rng = np.random.default_rng(seed + digit)
    inliers = np.nonzero(test_y == digit)[0]
    outlier_pool = np.nonzero(test_y != digit)[0]
    rows = {}
    for fraction in OUTLIER_FRACTIONS:
        n_out = int(round(len(inliers) * fraction / (1 - fraction)))
        chosen = np.r_[inliers, rng.choice(outlier_pool, n_out, replace=False)]
        is_outlier = np.r_[np.zeros(len(inliers), bool), np.ones(n_out, bool)]
        row = {f"auc_{key}": roc_auc(is_outlier, test[key][chosen]) for key in ("drx", "dx", "deployed")}
        for rate, tau in thresholds.items():
            flagged = test["deployed"][chosen] > tau["deployed"]
            row[f"f1_target_deployed@{rate}"] = f1_score(~is_outlier, ~flagged)
            row[f"f1_outlier_deployed@{rate}"] = f1_score(is_outlier, flagged)
            row[f"f1_target_dx@{rate}"] = f1_score(~is_outlier, ~(test["dx"][chosen] > tau["dx"]))
        rows[str(fraction)] = row
    return {"digit": digit, "train_seconds": round(seconds, 1), "held_out_images": len(data.val_frames),
            "thresholds": {str(k): v for k, v in thresholds.items()}, "by_outlier_fraction": rows}


def walkway(config: AloccConfig, workdir: Path) -> dict:
    from occ.export.onnx_export import export_onnx
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.detector import Detector
    from occ.runtime.evaluate import report, score_clips
    from occ.train.train_alocc import video_data

    video = load_video_data("walkway")
    started = time.monotonic()
    train_alocc(video_data(video.train, config, video.description), config, workdir / "walkway_alocc.pt", Console(stderr=True))
    seconds = time.monotonic() - started
    onnx_path = export_onnx(workdir / "walkway_alocc.pt").path
    metrics = report(score_clips(Detector.open(str(onnx_path)), video.test))
    return {"train_seconds": round(seconds, 1), **metrics}


def markdown(result: dict) -> str:
    lines = [f"ALOCC accuracy ({result['machine']}, {result['date']})", ""]
    if "mnist" in result:
        low, high = OPERATING_POINTS
        lines += [f"| outliers | mean F1 target, deployed, {low:.0%} false alarms | mean F1 target, deployed, {high:.0%} | "
                  f"mean F1 target, D(X), {high:.0%} | mean F1 outlier, deployed, {high:.0%} | mean AUC D(R(X)) | mean AUC D(X) | mean AUC deployed |",
                  "|---|---|---|---|---|---|---|---|"]
        for fraction in OUTLIER_FRACTIONS:
            rows = [d["by_outlier_fraction"][str(fraction)] for d in result["mnist"]]
            mean = lambda key: np.mean([r[key] for r in rows])  # noqa: E731
            lines.append(f"| {fraction:.0%} | {mean(f'f1_target_deployed@{low}'):.3f} | {mean(f'f1_target_deployed@{high}'):.3f} | "
                         f"{mean(f'f1_target_dx@{high}'):.3f} | {mean(f'f1_outlier_deployed@{high}'):.3f} | "
                         f"{mean('auc_drx'):.3f} | {mean('auc_dx'):.3f} | {mean('auc_deployed'):.3f} |")
        lines.append("")
    if "walkway" in result:
        raw = result["walkway"]["frame_level"]["raw"]
        lines += ["| synthetic walkway (exported ONNX, runtime) | micro AUC | macro AUC | EER |", "|---|---|---|---|",
                  f"| raw frame scores | {raw['micro_auc']:.3f} | {raw['macro_auc']:.3f} | {raw['eer']:.1%} |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist", help="folder with the MNIST IDX files (optional)")
    parser.add_argument("--digits", default="0,1,2,3,4,5,6,7,8,9", help="target digits, comma-separated")
    parser.add_argument("--epochs", type=int, default=15, help="ALOCC epochs per MNIST digit")
    parser.add_argument("--base-width", type=int, default=16, help="ALOCC first-layer width (paper: 64)")
    parser.add_argument("--bottleneck", type=int, default=16, help="MNIST: linear code size in R (0: none, as the paper; "
                        "`occ train alocc` uses 16 for images)")
    parser.add_argument("--no-walkway", action="store_true", help="skip the walkway part")
    parser.add_argument("--reuse", action="store_true", help="MNIST: evaluate mnist_<digit>.pt already in --out instead of training")
    parser.add_argument("--out", default="runs/bench_alocc", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    workdir = Path(args.out)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {"machine": machine(),
                    "date": time.strftime("%Y-%m-%d")}
    if args.mnist:
        config = AloccConfig(base_width=args.base_width, depth=3, epochs=args.epochs, batch_size=64, val_fraction=0.1, seed=args.seed,
                             bottleneck=args.bottleneck)
        result["mnist_config"] = config.__dict__
        result["mnist"] = []
        for digit in (int(d) for d in args.digits.split(",")):
            result["mnist"].append(mnist_digit(args.mnist, digit, config, workdir, args.seed, args.reuse))
            print(json.dumps({"digit": digit, **result["mnist"][-1]["by_outlier_fraction"]["0.5"]}))
    if not args.no_walkway:
        result["walkway"] = walkway(AloccConfig(seed=args.seed), workdir)
    (workdir / "alocc_accuracy.json").write_text(json.dumps(result, indent=2))
    (workdir / "alocc_accuracy.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
