"""``occ eval``: an exported model on labelled data, by the protocol that fits the data."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


from occ.runtime.detector import Detector, open_detector
from occ.runtime.scoring import frame_threshold

from .datasets import DatasetError, load_mnist
from .datasets.irmnist import IrMnistSpec
from .datasets.spec import load_video_data
from .plots import require_matplotlib, write_evaluation_plots
from .protocols import irmnist_protocol, mnist_protocol, report, score_clips

MNIST_PREFIX = "mnist:"


def evaluate(model: str | Path, data: str, backend: str = "ort-cpu", preprocess: str = "cpu", digit: int | None = None,
             smoothing: int = 9, plots: str | Path | None = None, progress: Callable[..., None] | None = None,
             **backend_options: Any) -> dict[str, Any]:
    """Evaluate ``model`` (an exported model, or a model name with ``backend`` triton) on ``data``:

    - a UCSD-layout folder or ``walkway[:opts]``: frame level (micro, macro AUC, EER) in every
      labelled variant, pixel level where masks exist, decisions at the stored thresholds;
      ``plots`` names a folder for the ROC and a score-over-time plot per clip (PNGs);
    - ``mnist:FOLDER``: the ALOCC paper's one-class protocol (``digit``: default the model's);
    - ``irmnist:FOLDER[:...]``: the AVID paper's detection and localization (grids, digit and
      seed default to the model's training, which fix the test grids).
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
        if data.startswith(MNIST_PREFIX):
            return _mnist(detector, str(model), data[len(MNIST_PREFIX):], digit)
        if data.startswith(IrMnistSpec.PREFIX):
            return _irmnist(detector, str(model), data)
        video = load_video_data(data, splits=("test",))
        if progress is not None:
            progress(0, description=f"scoring {len(video.test)} clips")
        clips = score_clips(detector, video.test, progress=progress)
        threshold = frame_threshold(detector.manifest)
    finally:
        detector.close()
    written = []
    if plots is not None:
        written = write_evaluation_plots(plots, clips, threshold, str(model))
    return {"model": str(model), "data": video.description, "protocol": "frames", **report(clips, smoothing),
            "plots": [str(path) for path in written]}


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
