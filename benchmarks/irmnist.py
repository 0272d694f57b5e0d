"""AVID on IR-MNIST, the paper's digit grids (``occ-bench irmnist``).

Trains with the images recipe (or takes ``--model``, trained on the same seed's grids), exports,
and runs the IR-MNIST protocol (:func:`occ.evaluation.protocols.irmnist_protocol`, the same as
``occ eval --data irmnist:``): detection EER (does the grid hold the irregular digit) by both
frame reductions, the largest value (``peak``) and the blocks' evidence summed (``evidence``),
for the deployed intersection and each part alone; localization EER over all 11×11 cells; on
both constructions of the positive test grids (one to five irregular digits; every cell drawn
from all of MNIST, as the paper).
"""
from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from rich.console import Console

from occ.evaluation.datasets.irmnist import IrMnistSpec
from occ.evaluation.protocols import irmnist_protocol
from occ.runtime.detector import open_detector

from .training_runs import commit, machine


def run_irmnist(folder: str, workdir: str | Path, seed: int = 0, grids: int = 5000, test_grids: int = 1000, digit: int = 3,
                recipe: str = "images", epochs: int | None = None, region_memory: int | None = None, model: str | Path | None = None,
                console: Console | None = None) -> dict:
    """Train on IR-MNIST (or take ``model``, trained on the same seed's grids) and evaluate it."""
    from occ.export.onnx_export import export_onnx
    from occ.train.common import load_checkpoint
    from occ.train.workflow import train_avid_from

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    spec = IrMnistSpec(folder, grids=grids, test_grids=test_grids, digit=digit)
    seconds = None
    if model is None:
        model = workdir / "irmnist_avid.pt"
        started = time.monotonic()
        settings = {k: v for k, v in {"epochs": epochs, "region_memory": region_memory}.items() if v is not None}
        train_avid_from(f"irmnist:{folder}:grids={grids},digit={digit},test_grids={test_grids}", model, recipe, console,
                        seed=seed, **settings)
        seconds = round(time.monotonic() - started, 1)
    else:  # checked before exporting: a model trained on other grids would be scored on its own training digits
        dataset = load_checkpoint(model).manifest.training.get("dataset") or {}
        wanted = {"kind": "irmnist", "grids": grids, "digit": digit, "seed": seed}
        if {k: dataset.get(k) for k in wanted} != wanted:
            raise ValueError(f"{model}: trained on {dataset}, not on this run's grids {wanted}")
    detector = open_detector(str(export_onnx(model).path))
    protocol = irmnist_protocol(detector, spec, seed)
    trained = detector.manifest.training["config"]
    detector.close()
    return {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "commit": commit(), "command": shlex.join(["occ-bench", *sys.argv[1:]]),
            "seed": seed, "recipe": trained["recipe"], "train_seconds": seconds,
            "model": str(model), "train_grids": grids, "irregular_digit": digit, "epochs": trained["epochs"], **protocol}


def markdown(result: dict) -> str:
    deployed = result["frame_score"]
    lines = [f"AVID on IR-MNIST ({result['machine']}, {result['date']}, recipe {result['recipe']})", "",
             f"| IR-MNIST ({result['train_grids']} training grids, {result['test_grids']} test grids, digit {result['irregular_digit']} "
             f"irregular; frame score: {deployed}) | detection EER, peak | detection EER, evidence | localization EER | "
             "detection AUC, peak / evidence | localization AUC |", "|---|---|---|---|---|---|"]
    for positives, title in (("few", "one to five irregular digits per positive grid"),
                             ("natural", "every cell from all of MNIST test, as the paper")):
        row = result[positives]
        lines.append(f"| *{title}: {row['irregular_per_positive_grid']:.1f} per positive grid* | | | | | |")
        for name, c in row["parts"].items():
            label = "deployed intersection M" if name == "intersection" else f"{name.replace('|', '&#124;')} alone"
            eer = {k: f"{c[f'detection_eer_{k}']:.1%}" for k in ("peak", "evidence")}
            eer[deployed] = f"**{eer[deployed]}**" if name == "intersection" else eer[deployed]
            lines.append(f"| {label} | {eer['peak']} | {eer['evidence']} | {c['localization_eer']:.1%} | "
                         f"{c['detection_auc_peak']:.3f} / {c['detection_auc_evidence']:.3f} | {c['localization_auc']:.3f} |")
    return "\n".join(lines) + "\n"
