"""PyTorch eager as a backend with the runtime's contract, the baseline for benchmarks and validation.

It lives in benchmarks/, not runtime/: the runtime never imports torch. Importing this module
registers it as backend ``torch`` (the model is then the checkpoint, ``.pt``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from occ.runtime.backends import BackendKind, register_backend
from occ.runtime.backends.base import Backend, BackendError, Capabilities
from occ.runtime.manifest import read_manifest


class TorchBackend(Backend):
    """Runs the checkpoint's graph (the module that was exported) in PyTorch eager mode.

    Args:
        checkpoint_path: the ``.pt`` checkpoint.
        precision: ``fp32`` or ``fp16`` (fp16 needs a CUDA device).
        device: ``cpu`` or ``cuda``.
    """

    name = "torch"
    capabilities = Capabilities(runs_on="cpu", artifact=".pt")

    def __init__(self, checkpoint_path: str, precision: str = "fp32", device: str | None = None):
        super().__init__(checkpoint_path)
        self.precision = precision
        self.device = device or ("cuda" if precision == "fp16" else "cpu")
        self.module = None

    def _activate_impl(self) -> None:
        import torch

        from occ.export.onnx_export import build_graph
        from occ.train.common import load_checkpoint

        if self.precision == "fp16" and self.device == "cpu":
            raise BackendError(f"{self.model_path}: PyTorch FP16 needs a CUDA device")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"{self.model_path}: no CUDA device for PyTorch here")
        checkpoint = load_checkpoint(self.model_path)
        module, inputs, outputs, _ = build_graph(checkpoint)
        module = module.to(self.device)
        if self.precision == "fp16":
            module = module.half()
        self.module = module.eval()
        self.manifest = checkpoint.manifest
        self.input_names, self.output_names = inputs, outputs

    def _deactivate_impl(self) -> None:
        self.module = None

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        import torch

        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        if self.manifest.method == "alocc":
            args = (torch.from_numpy(feed["patches"]).to(self.device, dtype),)
        else:
            alpha = feed.get("alpha", np.array([self.manifest.threshold("alpha")], np.float32))
            zeta = feed.get("zeta", np.array([self.manifest.threshold("zeta")], np.float32))
            args = (torch.from_numpy(feed["frames"]).to(self.device, dtype), torch.from_numpy(alpha).to(self.device, dtype),
                    torch.from_numpy(zeta).to(self.device, dtype))
        with torch.inference_mode():
            values = self.module(*args)
        named = dict(zip(self.output_names, values))
        return {name: named[name].float().cpu().numpy() if named[name].is_floating_point() else named[name].cpu().numpy()
                for name in outputs}


def checkpoint_for(model_path: str) -> str | None:
    """The checkpoint an ONNX model was exported from, when it still lies beside it."""
    path = Path(model_path)
    if path.suffix == ".pt":
        return str(path)
    name = read_manifest(path).export.get("source_checkpoint")
    candidate = path.parent / name if name else None
    return str(candidate) if candidate and candidate.is_file() else None


register_backend(BackendKind("torch", TorchBackend, "PyTorch eager on the checkpoint (a benchmark baseline)"))
