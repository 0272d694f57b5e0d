"""``occ eval``: an exported model on labelled data, by the protocol that fits the data."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable


from occ.runtime.detector import Detector, open_detector
from occ.runtime.scoring import frame_threshold
from occ.runtime.scoring.decide import thresholds_in_force

from .datasets import DatasetError, load_mnist
from .datasets.irmnist import IrMnistSpec
from .datasets.spec import load_video_data
from .plots import require_matplotlib, write_evaluation_plots
from .protocols import irmnist_protocol, mnist_protocol, score_clips
from .report import EvaluationReport, report

MNIST_PREFIX = "mnist:"


def evaluate(model: str | Path, data: str, backend: str = "ort-cpu", preprocess: str = "cpu", digit: int | None = None,
             smoothing: int = 9, plots: str | Path | None = None, progress: Callable[..., None] | None = None,
             thresholds: dict[str, float] | None = None, **backend_options: Any) -> EvaluationReport | dict[str, Any]:
    """Evaluate ``model`` (an exported model, or a model name with ``backend`` triton) on ``data``:

    - a UCSD-layout folder or ``walkway[:opts]``: an :class:`~occ.evaluation.report.EvaluationReport`,
      frame level (micro, macro AUC, EER) in every labelled variant, pixel level where masks
      exist, decisions at the stored thresholds; ``plots`` names a folder for the ROC and a
      score-over-time plot per clip (PNGs);
    - ``mnist:FOLDER``: the ALOCC paper's one-class protocol (``digit``: default the model's);
    - ``irmnist:FOLDER[:...]``: the AVID paper's detection and localization (grids, digit and
      seed default to the model's training, which fix the test grids).

    ``thresholds`` replace the model's for this run (not saved). Every result names the thresholds
    in force (``thresholds``) and those given here (``threshold_overrides``).
    """
    image_protocol = data.startswith((MNIST_PREFIX, IrMnistSpec.PREFIX))
    if image_protocol and preprocess != "cpu":
        raise DatasetError(f"{data}: the image protocols run the numpy preprocessing (--preprocess cpu)")
    if image_protocol and plots:
        raise DatasetError(f"{data}: plots are drawn for video data (frames over time)")
    if plots:
        require_matplotlib()
    detector = open_detector(str(model), backend, preprocess, pixel_maps=True, **backend_options)
    try:
        detector.set_thresholds(**(thresholds or {}))
        in_force = {"thresholds": thresholds_in_force(detector.manifest), "threshold_overrides": dict(thresholds or {})}
        if data.startswith(MNIST_PREFIX):
            return {**_mnist(detector, str(model), data[len(MNIST_PREFIX):], digit), **in_force}
        if data.startswith(IrMnistSpec.PREFIX):
            return {**_irmnist(detector, str(model), data), **in_force}
        video = load_video_data(data, splits=("test",))
        if not video.test:
            raise DatasetError(f"{data}: no labelled Test/ clips to evaluate on (normal footage alone has no anomalies; docs/data.md)")
        if progress is not None:
            progress(0, description=f"scoring {len(video.test)} clips")
        clips = score_clips(detector, video.test, progress=progress)
        threshold = frame_threshold(detector.manifest)
    finally:
        detector.close()
    written = []
    if plots is not None:
        written = write_evaluation_plots(plots, clips, threshold, str(model))
    return dataclasses.replace(report(clips, smoothing), model=str(model), data=video.description, protocol="frames",
                               plots=[str(path) for path in written], **in_force)


def _mnist(detector: Detector, model: str, folder: str, digit: int | None) -> dict[str, Any]:
    if digit is None:
        dataset = detector.manifest.training.get("dataset") or {}
        if dataset.get("kind") != "mnist":
            raise DatasetError(f"{model}: give --digit (the manifest does not say which digit it was trained on)")
        digit = int(dataset["digit"])
    images, labels = load_mnist(folder, "test")
    return {"model": model, "data": f"MNIST test, target digit {digit}", "protocol": "mnist",
            **mnist_protocol(detector, images, labels, digit)}


def _irmnist(detector: Detector, model: str, data: str) -> dict[str, Any]:
    training = detector.manifest.training
    spec = IrMnistSpec.parse(data, **IrMnistSpec.trained_on(training))
    seed = int((training.get("dataset") or {}).get("seed", 0))
    return {"model": model, "data": f"IR-MNIST test grids, digit {spec.digit} irregular", "protocol": "irmnist",
            **irmnist_protocol(detector, spec, seed)}
