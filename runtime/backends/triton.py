"""A model served by Triton Inference Server (or any KServe v2 server), as an occ backend.

The client sends what the local runtime would feed the graph (after the same preprocessing
reference) over the KServe v2 HTTP protocol with ``tritonclient``, and reads the manifest
from the model's configuration (``parameters["occ.manifest"]``, written by
``occ-export --triton``), so ``occ run --triton URL --model NAME`` produces the events the local
runtime does. AVID's α and ζ go with every request (per-request inputs of shape (batch, 1) in the
served graph); ALOCC's τ is applied here, as locally. An output the configuration reshapes
(a score per frame: ``dims: [1]``, ``reshape: []``) comes back from Triton with the configured
dims and is given back in the graph's own shape.

A server lost mid-stream (refused or dropped connections, the model not ready) is waited for with
the sources' reconnect rules: a first delay of ``backoff`` seconds, doubled after each failed try
up to ``max_backoff``, giving up after ``give_up_after`` seconds (None: never); the frame in hand
is sent again once the model is ready, so a file source loses no frame (a live source drops what
its buffer cannot hold meanwhile, and counts it). A server that answers but serves a model with
another manifest is refused. At start a server that does not answer is an error at once (a wrong
address is not an outage).

Tensors travel in binary (KServe's binary tensor data extension) when the server lists that
extension in its metadata, as Triton does; as JSON otherwise (a plain KServe v2 server): JSON
writes every value as text, which costs milliseconds per AVID frame.

Tested against a real tritonserver (PyTriton's, Python backend running the exported ONNX) and,
for the JSON path, a KServe v2 server written in the tests.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ..manifest import Manifest
from .base import Backend, BackendError, Capabilities, check_model_io

log = logging.getLogger("occ.backend")

THRESHOLD_INPUTS = ("alpha", "zeta")
_NUMPY_TO_KSERVE = {np.dtype(np.float32): "FP32", np.dtype(np.float16): "FP16", np.dtype(np.bool_): "BOOL",
                    np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}
_KSERVE_TO_NUMPY = {kserve: dtype for dtype, kserve in _NUMPY_TO_KSERVE.items()}


class _ServerLost(Exception):
    """The server did not answer, or answered that the model is not ready."""


class TritonBackend(Backend):
    """Args:
        url: the server's HTTP endpoint, ``host:port`` or ``http://host:port``.
        model_name: the model's name in the server's repository.
        timeout_s: connection and network timeout, seconds.
        backoff: first wait before reconnecting to a server lost mid-stream, seconds (doubled per failed try).
        max_backoff: longest wait between reconnection tries, seconds.
        give_up_after: seconds without the server before a request fails (None: keep trying).
        stop: an event that ends the wait for a lost server (the service's stop request).

    Attributes:
        reconnects: times the server came back after it was lost.
    """

    name = "triton"
    capabilities = Capabilities(runs_on="server", artifact="server")

    def __init__(self, url: str, model_name: str, timeout_s: float = 30.0, backoff: float = 0.5, max_backoff: float = 8.0,
                 give_up_after: float | None = None, stop: threading.Event | None = None):
        super().__init__(f"{url.rstrip('/')}/{model_name}")
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        self.backoff, self.max_backoff, self.give_up_after = backoff, max_backoff, give_up_after
        self.stop = stop or threading.Event()
        self.client = None
        self.max_batch_size = 0
        self.reconnects = 0
        self.gave_up = False  # set when give_up_after passed without the server (the service exits with code 3)
        self.binary_data = False  # tensors in binary (the server has the extension) or as JSON
        self._manifest_text = ""
        self._output_reshape: dict[str, list[int]] = {}

    def _activate_impl(self) -> None:
        try:
            import tritonclient.http as httpclient
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise BackendError(f"{self.model_path}: the Triton client needs tritonclient: pip install 'occ[triton]'") from None
        self._httpclient = httpclient
        self._error = InferenceServerException
        try:
            self._connect()
        except _ServerLost as exc:
            raise BackendError(f"{self.model_path}: {exc}") from None

    def _connect(self) -> None:
        """A new client; the model's configuration, metadata and manifest read and checked."""
        self._close_client()
        address = self.url.split("://", 1)[-1].rstrip("/")
        ssl = self.url.startswith("https://")
        try:
            self.client = self._httpclient.InferenceServerClient(address, ssl=ssl, connection_timeout=self.timeout_s,
                                                                 network_timeout=self.timeout_s)
            ready = self.client.is_model_ready(self.model_name)
            config = self.client.get_model_config(self.model_name) if ready else None
            metadata = self.client.get_model_metadata(self.model_name) if ready else None
            extensions = self._server_extensions() if ready else []
        except Exception as exc:  # noqa: BLE001 - the HTTP client raises its own types (e.g. geventhttpclient's), not only OSError
            raise _ServerLost(f"no answer from the server ({_first_line(exc)})") from None
        if not ready:
            raise _ServerLost(f"the server has no ready model named {self.model_name!r}")
        text = (config.get("parameters") or {}).get("occ.manifest", {}).get("string_value")
        if not text:
            raise BackendError(f"{self.model_path}: the model's configuration carries no occ manifest "
                               "(export the repository with occ-export --triton)")
        if self._manifest_text and text != self._manifest_text:
            raise BackendError(f"{self.model_path}: the server came back with another model (its manifest differs); "
                               "restart occ to use it")
        self._manifest_text = text
        self.binary_data = "binary_tensor_data" in extensions
        self.manifest = Manifest.from_json(text, self.model_path)
        self.max_batch_size = int(config.get("max_batch_size", 0))
        self.batch_limits = (1, self.max_batch_size) if self.max_batch_size > 0 else None
        # Triton answers with the configured dims; the graph's shape is the reshape (a score per frame: [] not [1])
        self._output_reshape = {t["name"]: list(t["reshape"].get("shape", [])) for t in config.get("output", []) if "reshape" in t}
        self._datatypes = {t["name"]: t["datatype"] for t in metadata["inputs"] + metadata["outputs"]}
        self.input_names = [t["name"] for t in metadata["inputs"]]
        self.output_names = [t["name"] for t in metadata["outputs"]]
        check_model_io(self.manifest, {t["name"]: t.get("shape", []) for t in metadata["inputs"]}, self.output_names,
                       self.model_path)

    def input_dtype(self, name: str) -> np.dtype:
        if name not in self.input_names:
            raise BackendError(f"{self.model_path}: no input '{name}'; the model takes {self.input_names}")
        return np.dtype(_KSERVE_TO_NUMPY[self._datatypes[name]])

    def _server_extensions(self) -> list[str]:
        """The protocol extensions the server lists (none when it has no server metadata endpoint)."""
        try:
            return list(self.client.get_server_metadata().get("extensions", []))
        except self._error:
            return []

    def _close_client(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - a client whose server is gone may fail to close; it is dropped either way
                pass
        self.client = None

    def _deactivate_impl(self) -> None:
        self._close_client()

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        # Backend.infer has cut the feed to the server's max_batch_size (batch_limits)
        main = next(name for name in feed if name not in THRESHOLD_INPUTS)
        return self._request(feed, main, 0, len(feed[main]), outputs)

    def _request(self, feed: dict[str, np.ndarray], main: str, start: int, stop: int, outputs: list[str]) -> dict[str, np.ndarray]:
        failed_while_ready = 0
        while True:
            try:
                result = self._send(feed, main, start, stop, outputs)
            except Exception as exc:  # noqa: BLE001 - whether the server is lost is asked of the server, below
                if self._model_ready():
                    # the server answers: retry once (a kept-alive connection it closed), then the request itself is at fault
                    failed_while_ready += 1
                    if failed_while_ready < 2:
                        continue
                    raise BackendError(f"{self.model_path}: inference request failed ({_first_line(exc)})") from None
                self._wait_for_server(_first_line(exc))
                failed_while_ready = 0
                continue
            return {name: result.as_numpy(name).reshape(stop - start, *self._output_reshape[name])
                    if name in self._output_reshape else result.as_numpy(name) for name in outputs}

    def _send(self, feed: dict[str, np.ndarray], main: str, start: int, stop: int, outputs: list[str]):
        httpclient = self._httpclient
        inputs = []
        for name, array in feed.items():
            if name in THRESHOLD_INPUTS:  # one value per request row (see export/triton.py)
                array = np.full((stop - start, 1), float(np.asarray(array).reshape(-1)[0]), np.float32)
            else:
                array = np.ascontiguousarray(array[start:stop])
            tensor = httpclient.InferInput(name, list(array.shape), self._datatypes.get(name) or _NUMPY_TO_KSERVE[array.dtype])
            tensor.set_data_from_numpy(array, binary_data=self.binary_data)
            inputs.append(tensor)
        requested = [httpclient.InferRequestedOutput(name, binary_data=self.binary_data) for name in outputs]
        return self.client.infer(self.model_name, inputs, outputs=requested)

    def _model_ready(self) -> bool:
        try:
            return bool(self.client.is_model_ready(self.model_name))
        except Exception:  # noqa: BLE001 - no answer is the answer
            return False

    def _wait_for_server(self, reason: str) -> None:
        """Reconnect with the sources' rules until the model is ready again (or give up, or stop)."""
        lost_at = time.monotonic()
        delay = self.backoff
        log.warning("server lost", extra={"path": self.model_path})
        while True:
            if self.stop.wait(delay):
                raise BackendError(f"{self.model_path}: stopped while waiting for the server ({reason})")
            try:
                self._connect()
            except _ServerLost as exc:
                reason = str(exc)
            else:
                self.reconnects += 1
                log.info("server back", extra={"path": self.model_path, "reconnects": self.reconnects})
                return
            if self.give_up_after is not None and time.monotonic() - lost_at >= self.give_up_after:
                self.gave_up = True
                raise BackendError(f"{self.model_path}: gave up after {self.give_up_after:g} s without the server ({reason})")
            delay = min(delay * 2, self.max_backoff)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:160]
