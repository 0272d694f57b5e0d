"""The backend lifecycle every runtime shares (after Polygraphy's runners)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..manifest import Manifest


class BackendError(RuntimeError):
    """A backend that cannot load or run a model; one line naming the model and the problem."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, known before it opens a model. Every caller (the detectors,
    ``occ inspect``, the service configuration, the CLI, the benchmarks) asks these, never the
    backend's name, so a new backend needs no branch anywhere else.

    Args:
        runs_on: ``cpu``, ``gpu`` or ``server``.
        artifact: what the model argument must be: a file suffix (``.onnx``, ``.engine``, ``.pt``), or
            ``server``: a model's name on a server whose address is the ``url`` option.
        device_resident: it runs on device buffers (:meth:`Backend.device_outputs`,
            :meth:`Backend.bind_device`, :meth:`Backend.run_device`; opened by :meth:`Backend.on_device`),
            so preprocessing can stay on the GPU.
    """

    runs_on: str
    artifact: str
    device_resident: bool = False

    @property
    def on_server(self) -> bool:
        """The model is a name on a server (the ``url`` option), not a file here."""
        return self.artifact == "server"


class Backend:
    """Base class: public methods check, subclasses implement the ``_impl`` methods.

    What a backend can do is in :attr:`capabilities` (before a model is open) and, once active, in
    :attr:`batch_limits`, :meth:`input_dtype` and :attr:`runs_on_bound_stream`.

    Attributes:
        name: backend name (``ort-cpu``...).
        model_path: the model file (for a server backend, ``<url>/<model name>``).
        manifest: the model's manifest, available after :meth:`activate`.
    """

    name = "base"
    capabilities: ClassVar[Capabilities] = Capabilities(runs_on="cpu", artifact=".onnx")
    reconnects = 0  # a server backend counts the times its server came back after being lost
    # True when run_device only enqueues its work on the stream given to bind_device, so the
    # preprocessing before it needs no host wait; False when the host must synchronize first
    runs_on_bound_stream = False

    def __init__(self, model_path: str):
        self.model_path = str(model_path)
        self.manifest: Manifest | None = None
        self.input_names: list[str] = []
        self.output_names: list[str] = []
        # (min, max) samples the model runs at once, set on activation where the model fixes them
        # (a TensorRT profile, an ONNX Runtime InferenceSession with a fixed batch); None: any batch
        self.batch_limits: tuple[int, int] | None = None
        self._active = False

    @classmethod
    def on_device(cls, model_path: str, stream: Any, samples: int, cuda_graph: bool = True, share_stream: bool = True,
                  **options: Any) -> "Backend":
        """This backend (not yet activated) set up to run on device buffers, after preprocessing on
        ``stream`` (:class:`occ.runtime.cuda.driver.Stream`), ``samples`` rows of the batch input per run.

        Args:
            cuda_graph: capture the model as a CUDA graph on the first run, replay after (where the backend can).
            share_stream: run the model on ``stream`` (no host wait between preprocessing and model) where the
                backend can choose; see :attr:`runs_on_bound_stream`.
            options: the backend's own constructor options.
        """
        raise BackendError(f"{model_path}: backend {cls.name} cannot run on device buffers, so preprocessing cannot "
                           "stay on the GPU (use --preprocess cpu)")

    def input_dtype(self, name: str) -> np.dtype:
        """The dtype the active model takes for input ``name`` (a device-resident caller writes its
        buffers in it; the host path converts). float32 unless the backend knows otherwise."""
        if name not in self.input_names:
            raise BackendError(f"{self.model_path}: no input '{name}'; the model takes {self.input_names}")
        return np.dtype(np.float32)

    def activate(self) -> "Backend":
        if not self._active:
            self._activate_impl()
            self._active = True
        return self

    def deactivate(self) -> None:
        if self._active:
            self._deactivate_impl()
            self._active = False

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def infer(self, feed: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        if not self._active:
            raise BackendError(f"{self.model_path}: backend {self.name} is not active (use `with backend:`)")
        unknown = sorted(set(feed) - set(self.input_names))
        if unknown:
            raise BackendError(f"{self.model_path}: unknown input(s) {unknown}; the model takes {self.input_names}")
        wanted = outputs or self.output_names
        missing = sorted(set(wanted) - set(self.output_names))
        if missing:
            raise BackendError(f"{self.model_path}: no output(s) {missing}; the model gives {self.output_names}")
        if self.batch_limits is None or self.manifest is None:  # any batch runs as it is (the common case: no per-call lookups)
            return self._infer_impl(feed, wanted)
        batch_input = expected_input(self.manifest)[0]
        if batch_input not in feed:
            return self._infer_impl(feed, wanted)
        return infer_in_chunks(lambda part: self._infer_impl(part, wanted), feed, batch_input, *self.batch_limits)

    # Device-resident inference (GPU backends): inputs and outputs stay in device memory at fixed
    # addresses, which CUDA graph capture needs. ``DeviceTensor`` = (pointer, shape, numpy dtype).
    def device_outputs(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Shape and dtype of every output for these input shapes."""
        raise BackendError(f"{self.model_path}: backend {self.name} has no device-resident path")

    def bind_device(self, inputs: dict[str, tuple], outputs: dict[str, tuple], stream: Any) -> None:
        """Fix the device buffers of every input and output (``{name: (pointer, shape, dtype)}``)."""
        raise BackendError(f"{self.model_path}: backend {self.name} has no device-resident path")

    def run_device(self) -> None:
        """Run on the bound buffers; when it returns, outputs are complete or ordered on the bound stream."""
        raise BackendError(f"{self.model_path}: backend {self.name} has no device-resident path")

    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _deactivate_impl(self) -> None:
        raise NotImplementedError

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError


def expected_input(manifest: Manifest) -> tuple[str, tuple[int, ...]]:
    """The graph input the manifest's geometry implies, without its batch dimension."""
    spec = manifest.input
    if manifest.method == "alocc":
        return "patches", (spec.channels, manifest.patches.size, manifest.patches.size)
    return "frames", (spec.channels, spec.height, spec.width)


def samples_per_frame(manifest: Manifest) -> int:
    """Batch rows of the graph input per frame: ALOCC's patch count, one AVID frame."""
    return manifest.patches.count(manifest.input) if manifest.method == "alocc" else 1


def check_model_io(manifest: Manifest, inputs: dict[str, Sequence[Any]], outputs: Sequence[str], where: str) -> None:
    """The graph takes the input the manifest describes and gives every output its scoring reads;
    a mismatch is refused when the model loads, not at its first frame. Symbolic dimensions
    (the batch) match anything."""
    name, shape = expected_input(manifest)
    if name not in inputs:
        raise BackendError(f"{where}: the graph has no input '{name}' (inputs: {', '.join(inputs)}); manifest and graph disagree")
    actual = list(inputs[name])[1:]
    if len(actual) != len(shape) or any(isinstance(a, int) and a > 0 and a != b for a, b in zip(actual, shape)):
        raise BackendError(f"{where}: input '{name}' is {actual} per sample in the graph but the manifest says {list(shape)}")
    missing = [o for o in manifest.scoring.outputs if o not in outputs]
    if missing:
        raise BackendError(f"{where}: the graph lacks output(s) {', '.join(missing)} that the manifest's scoring reads")


def batch_chunks(total: int, low: int, high: int) -> list[tuple[int, int, int]]:
    """How ``total`` samples run on a model that takes ``low`` to ``high`` at once:
    ``[(start, count, run), ...]``, ``run`` = ``count`` padded up to ``low``. An ALOCC frame of 345
    patches on an engine whose profile ends at 256 runs as 256 + 89; on a fixed batch of 128
    (an ONNX Runtime CUDA graph) as 128 + 128 + 89 padded to 128."""
    if not 0 < low <= high:
        raise BackendError(f"a batch range needs 0 < min <= max, got {low}, {high}")
    chunks = []
    for start in range(0, total, high):
        count = min(high, total - start)
        chunks.append((start, count, max(count, low)))
    return chunks


def infer_in_chunks(run, feed: dict[str, np.ndarray], batch_input: str, low: int, high: int) -> dict[str, np.ndarray]:
    """``run(feed)`` over slices of ``feed[batch_input]`` that fit ``[low, high]`` (short slices padded
    with zeros, a valid normalized input whose results are dropped); batch-major outputs joined."""
    batch = feed[batch_input]
    total = len(batch)
    if low <= total <= high:
        return run(feed)
    parts: list[dict[str, np.ndarray]] = []
    for start, count, size in batch_chunks(total, low, high):
        piece = batch[start:start + count]
        if size > count:
            piece = np.concatenate([piece, np.zeros((size - count, *batch.shape[1:]), batch.dtype)])
        outputs = run({**feed, batch_input: np.ascontiguousarray(piece)})
        parts.append({name: value[:count] for name, value in outputs.items()})
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
