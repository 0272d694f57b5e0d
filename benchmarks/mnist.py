"""ALOCC on MNIST, the paper's one-class protocol (``occ-bench mnist``).

For each digit, ALOCC is trained with the images recipe on that digit's training images (10 %
held out as normal validation, which sets the thresholds); the test set is that digit's test
images plus randomly drawn other digits making up 10–50 % of it. F1 is reported with the target
class as the positive class (the paper's convention) and for the outliers, at thresholds set on
the held-out target images (never on test data) at 1 % and 5 % false alarms, for the deployed
score and for D(X); AUC for the deployed score, D(R(X)) alone and D(X).
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from occ.evaluation.datasets import load_mnist
from occ.evaluation.metrics import f1_score, roc_auc
from occ.runtime.preprocess import normalize
from occ.runtime.scoring import patch_scores
from occ.train.common import load_checkpoint
from occ.train.train_alocc import AloccConfig, alocc_config, build_scorer, image_data, train_alocc

from .training_runs import commit, machine

OUTLIER_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
# false-alarm rates on held-out target images at which F1 is reported; the first is the trained
# model's stored threshold (1 %), the second an operating point picked on this benchmark (README)
OPERATING_POINTS = (0.01, 0.05)


def mnist_digit(folder: str, digit: int, config: AloccConfig, workdir: Path, seed: int, reuse: bool = False) -> dict:
    train_x, train_y = load_mnist(folder, "train")
    test_x, test_y = load_mnist(folder, "test")
    checkpoint_path = workdir / f"mnist_{digit}.pt"
    data = image_data(train_x[train_y == digit], config, f"MNIST digit {digit}", {"kind": "mnist", "digit": digit})
    started = time.monotonic()
    if not (reuse and checkpoint_path.exists()):
        train_alocc(data, config, checkpoint_path, Console(stderr=True))
    seconds = time.monotonic() - started
    checkpoint = load_checkpoint(checkpoint_path)
    manifest = checkpoint.manifest
    scorer = build_scorer(checkpoint.architecture, checkpoint.state_dicts)

    def scores(images: np.ndarray) -> dict[str, np.ndarray]:
        """−D(R(X)), −D(X) and the deployed score (the scoring contract's) per image."""
        x = torch.from_numpy(images)
        with torch.no_grad():
            outputs = [scorer(x[i : i + 1000]) for i in range(0, len(x), 1000)]
            d_of_x = np.concatenate([scorer.discriminator(x[i : i + 1000]).numpy() for i in range(0, len(x), 1000)])
        raw = {name: np.concatenate([o[k].numpy() for o in outputs]) for k, name in enumerate(scorer.output_names())}
        deployed = patch_scores({name: values[:, None] for name, values in raw.items()}, manifest.scoring)[:, 0]
        return {"drx": raw["score"], "dx": -d_of_x, "deployed": deployed}

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


def run_mnist(folder: str, digits: list[int], workdir: str | Path, seed: int = 0, epochs: int | None = None,
              reuse: bool = False, progress=None) -> dict:
    """Train (or, with ``reuse``, take ``mnist_<digit>.pt`` from ``workdir``) and score every digit."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config = alocc_config("images", seed=seed, **({"epochs": epochs} if epochs else {}))
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "commit": commit(),
              "command": shlex.join(["occ-bench", *sys.argv[1:]]), "seed": seed, "recipe": "images", "epochs": config.epochs,
              "mnist": []}
    for digit in digits:
        if progress:
            progress(0, description=f"digit {digit}")
        result["mnist"].append(mnist_digit(folder, digit, config, workdir, seed, reuse))
        if progress:
            progress(1)
    result["mean_over_digits"] = mean_over_digits(result["mnist"])
    return result


def mean_over_digits(per_digit: list[dict]) -> dict[str, dict[str, float]]:
    """Every metric's mean over the digits run, per outlier fraction (the figures the README quotes)."""
    means = {}
    for fraction in OUTLIER_FRACTIONS:
        rows = [d["by_outlier_fraction"][str(fraction)] for d in per_digit]
        means[str(fraction)] = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    return means


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
    return "\n".join(lines) + "\n"


