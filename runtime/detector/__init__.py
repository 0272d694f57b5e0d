"""One stream's frames → results: preprocessing, a backend and :func:`~occ.runtime.scoring.decide`.

Two implementations share one interface (:class:`StreamDetector`) and one scoring rule:

- ``preprocess="cpu"`` (:class:`~occ.runtime.detector.cpu.Detector`): the numpy reference, then
  any backend (ONNX Runtime CPU or CUDA, TensorRT, a Triton server);
- ``preprocess="gpu"`` (:class:`~occ.runtime.detector.gpu.GpuStreamDetector`): CUDA kernels write
  the model's input in device memory and a device-resident backend (``ort-cuda``, ``tensorrt``)
  reads it in place; only results come back.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..backends import BackendError, create_backend
from ..manifest import Manifest
from ..scoring.decide import FrameResult
from ..scoring.zones import Zone
from .cpu import Detector, graph_feed

PREPROCESS = ("cpu", "gpu")


class StreamDetector(Protocol):
    """What the service, ``occ run``, ``occ eval`` and calibration need from a detector."""

    manifest: Manifest
    stage_seconds: dict[str, float]  # the last processed frame's time per stage (empty where stages are fused)

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult: ...

    def process_clip(self, frames: np.ndarray) -> list[FrameResult]: ...

    def reset(self) -> None: ...

    def set_thresholds(self, **values: float) -> None: ...

    def set_zones(self, zones: list[Zone]) -> None: ...

    def close(self) -> None: ...


def open_detector(model: str, backend: str = "ort-cpu", preprocess: str = "cpu", pixel_maps: bool = False,
                  **options: Any) -> StreamDetector:
    """The stream detector for ``model`` on ``backend`` with preprocessing on the ``cpu`` or ``gpu``.

    ``options`` go to the backend (``url`` for ``triton``, where ``model`` is the model's name on
    the server; ``threads`` for ONNX Runtime CPU).
    """
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
    refuse_checkpoint(model)
    if preprocess == "gpu":
        from .gpu import GpuStreamDetector

        return GpuStreamDetector(model, backend)
    return Detector(create_backend(backend, model, **options), pixel_maps=pixel_maps)


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def refuse_checkpoint(model: str | Path) -> None:
    """A training checkpoint where an exported model belongs gets one line that says what to do.

    A checkpoint is known by its suffix or by what ``torch.save`` writes (a zip archive holding a
    ``data.pkl``), so a renamed one is caught too.

    Raises:
        BackendError: ``model`` is a checkpoint.
    """
    path = Path(model)
    if not path.is_file():
        return
    if path.suffix in CHECKPOINT_SUFFIXES or _is_torch_archive(path):
        raise BackendError(f"{path}: a checkpoint: run `occ export {path}` first")


def _is_torch_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


__all__ = ["CHECKPOINT_SUFFIXES", "Detector", "graph_feed", "FrameResult", "PREPROCESS", "StreamDetector", "open_detector", "refuse_checkpoint"]
