"""One stream's frames → results: preprocessing, a backend and :func:`~occ.runtime.scoring.decide`.

Two implementations share one interface (:class:`StreamDetector`) and one scoring rule:

- ``preprocess="cpu"`` (:class:`~occ.runtime.detector.cpu.Detector`): the numpy reference, then
  any backend (ONNX Runtime CPU or CUDA, TensorRT, a Triton server);
- ``preprocess="gpu"`` (:class:`~occ.runtime.detector.gpu.GpuStreamDetector`): CUDA kernels write
  the model's input in device memory and a device-resident backend (``ort-cuda``, ``tensorrt``)
  reads it in place; only results come back.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..backends import create_backend
from ..manifest import Manifest
from ..scoring.decide import FrameResult
from .cpu import Detector, graph_feed

PREPROCESS = ("cpu", "gpu")


class StreamDetector(Protocol):
    """What the service, ``occ run``, ``occ eval`` and calibration need from a detector."""

    manifest: Manifest

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult: ...

    def process_clip(self, frames: np.ndarray) -> list[FrameResult]: ...

    def reset(self) -> None: ...

    def set_thresholds(self, **values: float) -> None: ...

    def close(self) -> None: ...


def open_detector(model: str, backend: str = "ort-cpu", preprocess: str = "cpu", pixel_maps: bool = False,
                  **options: Any) -> StreamDetector:
    """The stream detector for ``model`` on ``backend`` with preprocessing on the ``cpu`` or ``gpu``.

    ``options`` go to the backend (``url`` for ``triton``, where ``model`` is the model's name on
    the server; ``threads`` for ONNX Runtime CPU).
    """
    if preprocess not in PREPROCESS:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")
    if preprocess == "gpu":
        from .gpu import GpuStreamDetector

        return GpuStreamDetector(model, backend)
    return Detector(create_backend(backend, model, **options), pixel_maps=pixel_maps)


__all__ = ["Detector", "graph_feed", "FrameResult", "PREPROCESS", "StreamDetector", "open_detector"]
