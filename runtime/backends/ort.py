"""ONNX Runtime backend (CPU, or CUDA with onnxruntime-gpu)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import ManifestError, manifest_from_metadata
from .base import Backend, BackendError, Capabilities, check_model_io, expected_input


class OrtBackend(Backend):
    """Runs an occ ONNX model with ONNX Runtime; refuses a model without a valid manifest.

    As ``ort-cpu`` it offers no device-resident path (its IOBinding on host memory is the CUDA
    path's test double); :class:`OrtCudaBackend` does.

    Args:
        model_path: the ``.onnx`` file.
        providers: execution providers, in order of preference.
        threads: intra-op threads (None: ONNX Runtime's default).
        name: backend name used in reports.
        cuda_graph: CUDA EP only: capture the graph on the first device-resident run, replay after.
        device_id: CUDA EP only: which GPU.
        user_stream: CUDA EP only: the CUDA stream (handle as int) ORT runs on.
        fixed_dimensions: symbolic dimensions fixed when the model loads (``{"batch": 32}``): with every
            shape static ORT folds the shape arithmetic into constants, so no node falls back to the
            CPU, which CUDA graph capture requires.
        profile_prefix: write ONNX Runtime's per-node profile (JSON) under this prefix; read it with
            :meth:`end_profiling`.
    """

    name = "ort-cpu"
    capabilities = Capabilities(runs_on="cpu", artifact=".onnx")

    def __init__(self, model_path: str, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None,
                 name: str = "ort-cpu", cuda_graph: bool = False, device_id: int = 0, user_stream: int | None = None,
                 fixed_dimensions: dict[str, int] | None = None, profile_prefix: str | None = None):
        super().__init__(model_path)
        self.providers = providers
        self.threads = threads
        self.name = name
        self.cuda_graph = cuda_graph
        self.device_id = device_id
        self.user_stream = user_stream
        self.fixed_dimensions = dict(fixed_dimensions or {})
        self.profile_prefix = profile_prefix
        self._binding = None
        self._drop_session()

    @property
    def runs_on_bound_stream(self) -> bool:  # ORT's stream is fixed when the model loads: the caller's, or its own
        return self.user_stream is not None

    def input_dtype(self, name: str) -> np.dtype:
        # inputs with a default (AVID's α and ζ) are overridable initializers, not in get_inputs()
        for value in [*self.session.get_inputs(), *self.session.get_overridable_initializers()]:
            if value.name == name:
                return np.dtype(ORT_TYPES[value.type])
        raise BackendError(f"{self.model_path}: no input '{name}'; the model takes {self.input_names}")

    def _drop_session(self) -> None:
        self.session: "InferenceSession | None" = None  # noqa: F821 (onnxruntime's, imported where used)

    def _provider_list(self) -> list:
        """Providers with their options: on CUDA, NHWC kernels, exhaustive cuDNN search, optional CUDA graph.

        (On one NVIDIA H200 these options took the AVID graph from 1.16 ms to 0.52 ms at batch 1.)
        """
        out = []
        for provider in self.providers:
            if provider == "CUDAExecutionProvider":
                options = {"device_id": str(self.device_id), "cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1"}
                if self.cuda_graph:
                    options["enable_cuda_graph"] = "1"  # needs inputs bound at fixed addresses: see bind_device
                if self.user_stream is not None:  # run on the caller's stream, ordered after its preprocessing
                    options["has_user_compute_stream"] = "1"
                    options["user_compute_stream"] = str(int(self.user_stream))
                out.append((provider, options))
            else:
                out.append(provider)
        return out

    def _activate_impl(self) -> None:
        import onnxruntime as ort

        path = Path(self.model_path)
        if not path.is_file():
            raise BackendError(f"{path}: model file not found")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise BackendError(
                f"{path}: ONNX Runtime here lacks {missing} (has {available}); "
                "for CUDA: pip uninstall onnxruntime && pip install 'occ[gpu]'"
            )
        if "CUDAExecutionProvider" in self.providers and hasattr(ort, "preload_dlls"):
            try:  # CUDA and cuDNN from pip's nvidia-* packages are found only once loaded (ORT ≥ 1.21)
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - system-wide CUDA libraries still work; loading says if not
                pass
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        if self.profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = self.profile_prefix
        for dimension, value in self.fixed_dimensions.items():
            options.add_free_dimension_override_by_name(dimension, int(value))
        providers = self._provider_list()
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for bad files
            if "prefer_nhwc" not in str(exc):
                raise BackendError(f"{path}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:200]})") from None
            # an onnxruntime-gpu built without NHWC kernels: the option is a speed-up, not a requirement
            for provider in providers:
                if isinstance(provider, tuple):
                    provider[1].pop("prefer_nhwc", None)
            try:
                self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
            except Exception as exc2:  # noqa: BLE001
                raise BackendError(f"{path}: ONNX Runtime cannot load the model ({str(exc2).splitlines()[0][:200]})") from None
        try:
            self.manifest = manifest_from_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        except ManifestError:
            self._drop_session()
            raise
        # inputs with a default value (AVID's alpha and zeta) are listed as overridable initializers
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_names += [i.name for i in self.session.get_overridable_initializers()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        batch_input = expected_input(self.manifest)[0]
        batch = next((i.shape[0] for i in self.session.get_inputs() if i.name == batch_input and i.shape), None)
        if isinstance(batch, int) and batch > 0:  # a fixed batch (fixed_dimensions, or a static graph): feeds are cut to it
            self.batch_limits = (batch, batch)
        try:
            check_model_io(self.manifest, {i.name: i.shape for i in self.session.get_inputs()}, self.output_names, str(path))
        except BackendError:
            self._drop_session()
            raise

    def end_profiling(self) -> str:
        """Stop profiling; returns the profile's path (see ``profile_prefix``)."""
        return self.session.end_profiling()

    def _deactivate_impl(self) -> None:
        self._drop_session()

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        values = self.session.run(outputs, feed)
        return dict(zip(outputs, values))

    def device_outputs(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        # Symbolic dimensions (the dynamic batch) are resolved from the input shapes: running the
        # the model to find out would capture a CUDA graph on host buffers.
        symbols: dict[str, int] = {}
        for i in self.session.get_inputs():
            for dim, value in zip(i.shape, input_shapes.get(i.name, ())):
                if isinstance(dim, str):
                    symbols[dim] = int(value)
        result = {}
        for o in self.session.get_outputs():
            shape = []
            for dim in o.shape:
                if isinstance(dim, int):
                    shape.append(dim)
                elif dim in symbols:
                    shape.append(symbols[dim])
                else:
                    raise BackendError(f"{self.model_path}: output {o.name} has a dimension {dim!r} no input fixes")
            result[o.name] = (tuple(shape), np.dtype(ORT_TYPES[o.type]))
        return result

    def bind_device(self, inputs: dict[str, tuple], outputs: dict[str, tuple], stream=None) -> None:
        """IOBinding on device buffers from occ, pycuda, CuPy or PyTorch (see
        :func:`occ.runtime.cuda.device_pointer`), made once: CUDA graph replay needs the same
        addresses every run. ``stream`` is informational here: the stream ORT runs on is fixed when
        the model loads (``user_stream``)."""
        from ..cuda.driver import device_pointer

        binding = self.session.io_binding()
        # on the CPU provider "device" memory is host memory: the same path, testable without a GPU
        device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        for name, (pointer, shape, dtype) in inputs.items():
            binding.bind_input(name, device, self.device_id, np.dtype(dtype).type, list(shape), device_pointer(pointer))
        for name, (pointer, shape, dtype) in outputs.items():
            binding.bind_output(name, device, self.device_id, np.dtype(dtype).type, list(shape), device_pointer(pointer))
        self._binding = binding

    def run_device(self) -> None:
        if self._binding is None:
            raise BackendError(f"{self.model_path}: bind_device first")
        self.session.run_with_iobinding(self._binding)
        self._binding.synchronize_outputs()


class OrtCudaBackend(OrtBackend):
    """ONNX Runtime's CUDA provider (onnxruntime-gpu), CPU for what CUDA lacks; device-resident
    through IOBinding. Arguments as :class:`OrtBackend`."""

    name = "ort-cuda"
    capabilities = Capabilities(runs_on="gpu", artifact=".onnx", device_resident=True)

    def __init__(self, model_path: str, providers: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider"),
                 name: str = "ort-cuda", **options: Any):
        super().__init__(model_path, providers=providers, name=name, **options)

    @classmethod
    def on_device(cls, model_path: str, stream: Any, samples: int, cuda_graph: bool = True, share_stream: bool = True,
                  **options: Any) -> "OrtCudaBackend":
        # CUDA only: a node falling back to the CPU would break CUDA graph capture. Every dimension is
        # fixed at ``samples`` so ORT folds the shape arithmetic into constants (see fixed_dimensions).
        return cls(model_path, providers=("CUDAExecutionProvider",), cuda_graph=cuda_graph,
                   user_stream=stream.ptr if share_stream else None, fixed_dimensions={"batch": samples}, **options)


# ONNX Runtime's type strings → numpy
ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(bool)": np.bool_,
             "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64}
