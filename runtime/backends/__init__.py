"""Inference backends. Every backend has one lifecycle (``activate`` → ``infer`` → ``deactivate``,
or ``with backend:``) and one contract: ``infer({name: array}) -> {name: array}``.

Optional backends are imported where used; a missing one raises with the install command.
"""
from .base import Backend, BackendError
from .ort import OrtBackend

BACKENDS = ("ort-cpu", "ort-cuda", "tensorrt")


def create_backend(name: str, model_path: str) -> Backend:
    """Backend by name: ``ort-cpu`` (ONNX Runtime, CPU), ``ort-cuda`` (onnxruntime-gpu) or
    ``tensorrt`` (a ``.engine`` with its ``.engine.json`` sidecar)."""
    if name == "ort-cpu":
        return OrtBackend(model_path, providers=("CPUExecutionProvider",))
    if name == "ort-cuda":
        return OrtBackend(model_path, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), name="ort-cuda")
    if name == "tensorrt":
        from .tensorrt import TensorRTBackend

        return TensorRTBackend(model_path)
    raise BackendError(f"unknown backend {name!r}; available: {', '.join(BACKENDS)}")


__all__ = ["Backend", "BackendError", "OrtBackend", "BACKENDS", "create_backend"]
