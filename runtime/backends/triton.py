"""A model served by Triton Inference Server (or any KServe v2 server), as an occ backend.

The client sends what the local runtime would feed the graph (after the same preprocessing
reference) over the KServe v2 HTTP/JSON protocol with ``tritonclient``, and reads the manifest
from the model's configuration (``parameters["occ.manifest"]``, written by
``occ-export --triton``), so ``occ run --triton URL --model NAME`` produces the events the local
runtime does. AVID's α and ζ go with every request (per-request inputs of shape (batch, 1) in the
served graph); ALOCC's τ is applied here, as locally.

Tested against a KServe v2 server implemented in the tests (real HTTP, real ONNX Runtime behind
it). Tensors travel as JSON (the binary extension is not used): simple and portable, slower for
large AVID frames.
"""
from __future__ import annotations

import numpy as np

from ..manifest import Manifest
from .base import Backend, BackendError, check_model_io

THRESHOLD_INPUTS = ("alpha", "zeta")
_NUMPY_TO_KSERVE = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.bool_): "BOOL",
                    np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}


class TritonBackend(Backend):
    """Args:
        url: the server's HTTP endpoint, ``host:port`` or ``http://host:port``.
        model_name: the model's name in the server's repository.
        timeout_s: connection and network timeout, seconds.
    """

    name = "triton"

    def __init__(self, url: str, model_name: str, timeout_s: float = 30.0):
        super().__init__(f"{url.rstrip('/')}/{model_name}")
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        self.client = None
        self.max_batch_size = 0

    def _activate_impl(self) -> None:
        try:
            import tritonclient.http as httpclient
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise BackendError(f"{self.model_path}: the Triton client needs tritonclient: pip install 'occ[triton]'") from None
        address = self.url.split("://", 1)[-1].rstrip("/")
        ssl = self.url.startswith("https://")
        try:
            self.client = httpclient.InferenceServerClient(address, ssl=ssl, connection_timeout=self.timeout_s,
                                                           network_timeout=self.timeout_s)
            ready = self.client.is_model_ready(self.model_name)
            config = self.client.get_model_config(self.model_name) if ready else None
            metadata = self.client.get_model_metadata(self.model_name) if ready else None
        except (InferenceServerException, OSError, ConnectionError) as exc:
            raise BackendError(f"{self.model_path}: no answer from the server ({str(exc).splitlines()[0][:160]})") from None
        if not ready:
            raise BackendError(f"{self.model_path}: the server has no ready model named {self.model_name!r}")
        text = (config.get("parameters") or {}).get("occ.manifest", {}).get("string_value")
        if not text:
            raise BackendError(f"{self.model_path}: the model's configuration carries no occ manifest "
                               "(export the repository with occ-export --triton)")
        self.manifest = Manifest.from_json(text, self.model_path)
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self._datatypes = {t["name"]: t["datatype"] for t in metadata["inputs"] + metadata["outputs"]}
        self.input_names = [t["name"] for t in metadata["inputs"]]
        self.output_names = [t["name"] for t in metadata["outputs"]]
        check_model_io(self.manifest, {t["name"]: t.get("shape", []) for t in metadata["inputs"]}, self.output_names,
                       self.model_path)
        self._httpclient = httpclient
        self._error = InferenceServerException

    def _deactivate_impl(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        main = next(name for name in feed if name not in THRESHOLD_INPUTS)
        total = len(feed[main])
        step = self.max_batch_size or total
        parts = [self._request(feed, main, start, min(start + step, total), outputs)
                 for start in range(0, total, step)]
        return {name: np.concatenate([p[name] for p in parts]) for name in outputs}

    def _request(self, feed: dict[str, np.ndarray], main: str, start: int, stop: int, outputs: list[str]) -> dict[str, np.ndarray]:
        httpclient = self._httpclient
        inputs = []
        for name, array in feed.items():
            if name in THRESHOLD_INPUTS:  # one value per request row (see export/triton.py)
                array = np.full((stop - start, 1), float(np.asarray(array).reshape(-1)[0]), np.float32)
            else:
                array = np.ascontiguousarray(array[start:stop])
            tensor = httpclient.InferInput(name, list(array.shape), self._datatypes.get(name) or _NUMPY_TO_KSERVE[array.dtype])
            tensor.set_data_from_numpy(array, binary_data=False)
            inputs.append(tensor)
        requested = [httpclient.InferRequestedOutput(name, binary_data=False) for name in outputs]
        try:
            result = self.client.infer(self.model_name, inputs, outputs=requested)
        except (self._error, OSError, ConnectionError) as exc:
            raise BackendError(f"{self.model_path}: inference request failed ({str(exc).splitlines()[0][:160]})") from None
        return {name: result.as_numpy(name) for name in outputs}
