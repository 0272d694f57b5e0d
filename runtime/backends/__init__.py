"""Network input → graph outputs. Every backend has one lifecycle (``activate`` → ``infer`` →
``deactivate``, or ``with backend:``) and one contract: ``infer({name: array}) -> {name: array}``.

The registry below is the one list of backend names; every command takes its ``--backend`` from
it. Adding a backend: write its module, add one :class:`BackendKind` line here. Optional backends
are imported where used; a missing one raises with the install command.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Backend, BackendError
from .ort import OrtBackend


@dataclass(frozen=True)
class BackendKind:
    """One backend name and what it needs.

    Args:
        name: the name every command accepts.
        open: ``(model, options) -> Backend``; ``model`` is a file, or a model name on a server.
        runs_on: ``cpu``, ``gpu`` or ``server``.
        device_resident: it can run on device buffers, so preprocessing can stay on the GPU.
        artifact: what ``model`` must be (``.onnx``, ``.engine`` or a server's model name).
        summary: one line for ``--help``.
        unavailable: why this machine cannot run it (a missing package, no GPU), or None when it can.
    """

    name: str
    open: Callable[[str, dict[str, Any]], Backend]
    runs_on: str
    device_resident: bool
    artifact: str
    summary: str
    unavailable: Callable[[], str | None] = lambda: None


def _ort_cpu(model: str, options: dict[str, Any]) -> Backend:
    return OrtBackend(model, providers=("CPUExecutionProvider",), name="ort-cpu", **options)


def _ort_cuda(model: str, options: dict[str, Any]) -> Backend:
    return OrtBackend(model, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), name="ort-cuda", **options)


def _tensorrt(model: str, options: dict[str, Any]) -> Backend:
    from .tensorrt import TensorRTBackend

    return TensorRTBackend(model)


def _triton(model: str, options: dict[str, Any]) -> Backend:
    from .triton import TritonBackend

    options = dict(options)
    url = options.pop("url", None)
    if not url:
        raise BackendError(f"{model}: the triton backend needs the server's address (--triton-url HOST:PORT)")
    unknown = sorted(set(options) - {"timeout_s", "backoff", "max_backoff", "give_up_after", "stop"})
    if unknown:
        raise BackendError(f"{model}: the triton backend takes no option(s) {unknown}")
    return TritonBackend(url, model, **options)


def _ort_cuda_unavailable() -> str | None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "this onnxruntime has no CUDA provider (install onnxruntime-gpu in its place)"
    from ..cuda.driver import gpu_problem

    return gpu_problem()


def _tensorrt_unavailable() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT is not installed here (JetPack or NVIDIA's tensorrt packages provide it)"
    from ..cuda.driver import gpu_problem

    return gpu_problem()


def _triton_unavailable() -> str | None:
    try:
        import tritonclient.http  # noqa: F401
    except ImportError:
        return "the Triton client is not installed: pip install 'occ[triton]'"
    return None


REGISTRY: dict[str, BackendKind] = {kind.name: kind for kind in (
    BackendKind("ort-cpu", _ort_cpu, "cpu", False, ".onnx", "ONNX Runtime on the CPU"),
    BackendKind("ort-cuda", _ort_cuda, "gpu", True, ".onnx", "ONNX Runtime CUDA (onnxruntime-gpu)", _ort_cuda_unavailable),
    BackendKind("tensorrt", _tensorrt, "gpu", True, ".engine", "a TensorRT engine with its .engine.json sidecar", _tensorrt_unavailable),
    BackendKind("triton", _triton, "server", False, "server", "a Triton / KServe v2 server; the model is its name there",
                _triton_unavailable),
)}


def register_backend(kind: BackendKind) -> None:
    """Add a backend outside the runtime (the benchmarks' PyTorch baseline)."""
    REGISTRY[kind.name] = kind


def backend_kind(name: str) -> BackendKind:
    if name not in REGISTRY:
        raise BackendError(f"unknown backend {name!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def create_backend(name: str, model: str, **options: Any) -> Backend:
    """The backend ``name`` for ``model`` (not yet activated). Options go to the backend's
    constructor (ONNX Runtime: ``threads``, ``fixed_dimensions``...; triton: ``url``, and the reconnect
    rules ``backoff``, ``max_backoff``, ``give_up_after``, ``stop``)."""
    return backend_kind(name).open(str(model), options)


__all__ = ["Backend", "BackendError", "BackendKind", "OrtBackend", "REGISTRY", "backend_kind", "create_backend",
           "register_backend"]
