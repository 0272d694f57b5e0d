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
                 name: str = "ort-cpu"):
        super().__init__(model_path)
        self.providers = providers
        self.threads = threads
        self.name = name
        self.session = None

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
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(self.providers))
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
