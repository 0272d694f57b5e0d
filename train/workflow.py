"""``occ train``: a data spec and a recipe → a trained checkpoint, for either method."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from occ.evaluation.datasets import DatasetError, load_mnist
from occ.evaluation.datasets.irmnist import IrMnistSpec
from occ.evaluation.datasets.footage import DEFAULT_SPLIT, Split, is_footage
from occ.evaluation.datasets.spec import VideoData, load_video_data
from occ.runtime.manifest import Manifest

MNIST_PREFIX = "mnist:"


def data_kind(data: str) -> str:
    """``images`` for MNIST and IR-MNIST specs, ``video`` for everything else."""
    return "images" if data.startswith((MNIST_PREFIX, IrMnistSpec.PREFIX)) else "video"


def training_video(data: str, size: tuple[int, int], split: Split = DEFAULT_SPLIT) -> tuple[VideoData, dict[str, Any]]:
    """The normal clips to train on and the manifest's record of them. Footage is read at the
    network ``size`` (minutes of it fit in memory) and its training part trained on, its validation
    part held out; the record says which minutes of which file went where (relative names only)."""
    if not is_footage(data):
        return load_video_data(data, splits=("train",)), {"kind": "video", "spec": data}
    video = load_video_data(data, splits=("train", "validation"), size=size, split=split)
    if not video.train:
        raise DatasetError(f"{data}: the training part of the split ({split} %) holds no frames")
    return video, {"kind": "footage", "spec": video.description, **(video.footage or {})}


def train_alocc_from(data: str, out: str | Path, recipe: str | None = None, digit: int = 0, console: Console | None = None,
                     split: Split = DEFAULT_SPLIT, **settings: Any) -> Manifest | None:
    """Train ALOCC on ``data`` (a UCSD-layout folder, footage split by ``split``, ``walkway[:opts]``,
    or ``mnist:FOLDER`` with ``digit`` the normal class) with ``recipe`` (default: the data's kind)
    and ``settings`` overriding it; writes the checkpoint ``out``. None on torchrun ranks other than 0."""
    from .train_alocc import alocc_config, check_config, image_data, train_alocc, video_data

    config = alocc_config(recipe or data_kind(data), **settings)
    check_config(config, data_kind(data))  # before any data is read
    if data.startswith(MNIST_PREFIX):
        if not 0 <= digit <= 9:
            raise DatasetError(f"{data}: the normal digit must be 0-9, got {digit}")
        images, labels = load_mnist(data[len(MNIST_PREFIX):], "train")
        prepared = image_data(images[labels == digit], config, f"MNIST train digit {digit}", {"kind": "mnist", "digit": digit})
    elif data.startswith(IrMnistSpec.PREFIX):
        raise DatasetError(f"{data}: IR-MNIST is AVID's data set (occ train avid); ALOCC takes video or mnist:FOLDER")
    else:
        video, record = training_video(data, (config.height, config.width), split)
        prepared = video_data(video.train, config, video.description, record, validation=video.validation)
    return train_alocc(prepared, config, out, console)


def train_avid_from(data: str, out: str | Path, recipe: str | None = None, console: Console | None = None,
                    split: Split = DEFAULT_SPLIT, **settings: Any) -> Manifest | None:
    """Train AVID on ``data`` (a UCSD-layout folder, footage split by ``split``, ``walkway[:opts]``, or
    ``irmnist:FOLDER[:grids=N,digit=D,test_grids=M]``) with ``recipe`` (default: the data's kind)
    and ``settings`` overriding it; writes the checkpoint ``out``. None on torchrun ranks other than 0."""
    from .train_avid import avid_config, check_config, image_data, train_avid, video_data

    config = avid_config(recipe or data_kind(data), **settings)
    check_config(config, data_kind(data))  # before any data is read
    if data.startswith(IrMnistSpec.PREFIX):
        spec = IrMnistSpec.parse(data)
        spec.check_size(config.height, config.width)
        prepared = image_data(spec.build(config.seed).train, config, spec.description(),
                              {"kind": "irmnist", "grids": spec.grids, "digit": spec.digit, "seed": config.seed})
    elif data.startswith(MNIST_PREFIX):
        raise DatasetError(f"{data}: AVID trains on video or on IR-MNIST grids (irmnist:FOLDER), not on single MNIST digits")
    else:
        video, record = training_video(data, (config.height, config.width), split)
        prepared = video_data(video.train, config, video.description, record, validation=video.validation)
    return train_avid(prepared, config, out, console)
