"""ONNX Runtime backend (CPU, or CUDA with onnxruntime-gpu)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..manifest import ManifestError, manifest_from_metadata
from .base import Backend, BackendError


class OrtBackend(Backend):
    """Runs an occ ONNX model with ONNX Runtime; refuses a model without a valid manifest.

    Args:
        model_path: the ``.onnx`` file.
        providers: execution providers, in order of preference.
        threads: intra-op threads (None: ONNX Runtime's default).
        name: backend name used in reports.
    """

    def __init__(self, model_path: str, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None,
                 name: str = "ort-cpu", cuda_graph: bool = False, device_id: int = 0):
        super().__init__(model_path)
        self.providers = providers
        self.threads = threads
        self.name = name
        self.cuda_graph = cuda_graph
        self.device_id = device_id
        self.session = None
        self._binding = None

    def _provider_list(self) -> list:
        """Providers with their options: on CUDA, NHWC kernels, exhaustive cuDNN search, optional CUDA graph.

        (On an H200 these options took the AVID graph from 1.16 ms to 0.52 ms at batch 1, as the
        GPU issue reports; not measured in this workplace.)
        """
        out = []
        for provider in self.providers:
            if provider == "CUDAExecutionProvider":
                options = {"device_id": str(self.device_id), "cudnn_conv_algo_search": "EXHAUSTIVE", "prefer_nhwc": "1"}
                if self.cuda_graph:
                    options["enable_cuda_graph"] = "1"  # needs inputs bound at fixed addresses: see infer_device
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
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=self._provider_list())
        except Exception as exc:  # ORT raises its own exception types for bad files
            raise BackendError(f"{path}: ONNX Runtime cannot load the model ({str(exc).splitlines()[0][:200]})") from None
        try:
            self.manifest = manifest_from_metadata(self.session.get_modelmeta().custom_metadata_map, str(path))
        except ManifestError:
            self.session = None
            raise
        # inputs with a default value (AVID's alpha and zeta) are listed as overridable initializers
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_names += [i.name for i in self.session.get_overridable_initializers()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def _deactivate_impl(self) -> None:
        self.session = None

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        values = self.session.run(outputs, feed)
        return dict(zip(outputs, values))

    def infer_device(self, inputs: dict[str, tuple[object, tuple[int, ...], type]], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run on inputs already in GPU memory (IOBinding): ``{name: (pointer, shape, dtype)}``.

        The pointer may come from occ's buffers, pycuda, CuPy or PyTorch (see
        :func:`occ.runtime.gpu.cuda.device_pointer`). The binding is made once and reused, which
        CUDA graph capture requires (same addresses every run). Outputs are copied to the host.
        """
        from ..gpu.cuda import device_pointer

        if self.session is None:
            raise BackendError(f"{self.model_path}: backend {self.name} is not active")
        if self._binding is None:
            self._binding = self.session.io_binding()
            for name, (pointer, shape, dtype) in inputs.items():
                self._binding.bind_input(name, "cuda", self.device_id, dtype, list(shape), device_pointer(pointer))
            for name in outputs:
                self._binding.bind_output(name, "cuda", self.device_id)
        self.session.run_with_iobinding(self._binding)
        return dict(zip(outputs, self._binding.copy_outputs_to_cpu()))
