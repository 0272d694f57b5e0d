"""Network input → graph outputs. Every backend has one lifecycle (``activate`` → ``infer`` →
``deactivate``, or ``with backend:``) and one contract: ``infer({name: array}) -> {name: array}``.
What a backend can do is its :class:`Capabilities` (``Backend.capabilities``); callers ask those,
never a backend's name.

The registry below is the one list of backend names; every command takes its ``--backend`` from
it. Adding a backend: write its module (a :class:`Backend` subclass with its ``capabilities``), add
one :class:`BackendKind` line here. Optional backends import their packages where used; a missing
one raises with the install command.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .base import Backend, BackendError, Capabilities
from .ort import OrtBackend, OrtCudaBackend
from .tensorrt import TensorRTBackend
from .triton import TritonBackend


@dataclass(frozen=True)
class BackendKind:
    """One backend name and what it needs.

    Args:
        name: the name every command accepts.
        backend: the :class:`Backend` subclass; its ``capabilities`` are the kind's.
        summary: one line for ``--help``.
        open: ``(model, options) -> Backend``; ``model`` is a file, or a model name on a server.
            Default: ``backend(model, **options)``.
        unavailable: why this machine cannot run it (a missing package, no GPU), or None when it can.
    """

    name: str
    backend: type[Backend]
    summary: str
    open: Callable[[str, dict[str, Any]], Backend] | None = None
    unavailable: Callable[[], str | None] = lambda: None

    @property
    def capabilities(self) -> Capabilities:
        return self.backend.capabilities

    def create(self, model: str, options: dict[str, Any]) -> Backend:
        """The backend for ``model`` (not yet activated)."""
        if self.open is not None:
            return self.open(model, options)
        try:
            return self.backend(model, **options)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            raise BackendError(f"{model}: the {self.name} backend takes no option {str(exc).rsplit(' ', 1)[-1]}") from None


def _triton(model: str, options: dict[str, Any]) -> Backend:
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
    BackendKind("ort-cpu", OrtBackend, "ONNX Runtime on the CPU"),
    BackendKind("ort-cuda", OrtCudaBackend, "ONNX Runtime CUDA (onnxruntime-gpu)", unavailable=_ort_cuda_unavailable),
    BackendKind("tensorrt", TensorRTBackend, "a TensorRT engine with its .engine.json sidecar", unavailable=_tensorrt_unavailable),
    BackendKind("triton", TritonBackend, "a Triton / KServe v2 server; the model is its name there", _triton, _triton_unavailable),
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
    return backend_kind(name).create(str(model), options)


__all__ = ["Backend", "BackendError", "BackendKind", "Capabilities", "OrtBackend", "OrtCudaBackend", "REGISTRY", "TensorRTBackend",
           "TritonBackend", "backend_kind", "create_backend", "register_backend"]
