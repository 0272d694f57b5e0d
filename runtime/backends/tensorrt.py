"""TensorRT backend: a plain ``.engine`` plan plus its ``<name>.engine.json`` sidecar (manifest and
build facts). Device memory, streams and events through cuda-python; ``execute_async_v3``.

Written against the TensorRT 10 and 11 Python API and never run against a real TensorRT (none was
available where occ was developed); tests/test_tensorrt_fake.py drives every TensorRT call here
through a recording fake of the documented API. An engine built for another TensorRT version or
GPU is refused with the command that rebuilds it (``occ export`` builds engines; the runtime only
loads them). The TensorRT rules (compatibility, deserialization, shapes, dtypes) live in the
functions below, which ``occ.export.engine`` calls too.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import engine_sidecar, read_manifest
from .base import Backend, BackendError, Capabilities, expected_input

# Version-compatible engines across a major version: TensorRT 10 docs, "Version Compatibility" (8 → 9
# and 10); TensorRT 11.4 support matrix, "Engine Portability" (10 → 11, and no other pair).
CROSS_MAJOR_COMPATIBLE = {(8, 9), (8, 10), (10, 11)}


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` → ``(10, 3, 0, 30)``; parts that are not numbers end it."""
    parts = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def version_problem(built: str, here: str, version_compatible: bool) -> str | None:
    """TensorRT's own rule. By default an engine runs only on the TensorRT version that built it;
    a version-compatible one (TensorRT 8.6+) also on later versions of its major, and on the next
    major where NVIDIA lists it (TensorRT 10 docs, "Version Compatibility"; TensorRT 11 docs,
    "Engine Compatibility")."""
    if not version_compatible:
        if built == here:
            return None
        return f"engine built with TensorRT {built}, this is TensorRT {here} (an engine runs only on the version that built it)"
    old, new = version_tuple(built), version_tuple(here)
    if not old or not new:
        return f"cannot compare TensorRT versions {built!r} and {here!r}"
    if old[:2] < (8, 6):
        return f"engine built with TensorRT {built}: version compatibility starts at TensorRT 8.6"
    if new < old:
        return (f"engine built with TensorRT {built}, this is the older TensorRT {here} "
                "(a version-compatible engine runs only on later versions)")
    if old[0] != new[0] and (old[0], new[0]) not in CROSS_MAJOR_COMPATIBLE:
        return f"engine built with TensorRT {built} cannot run on TensorRT {here}, even version-compatible"
    return None


def compatibility_problem(sidecar: dict[str, Any], tensorrt_version: str, gpu: dict[str, Any] | None) -> str | None:
    """Why an engine cannot run here (another TensorRT version or GPU), or None when it can; the
    reason ends with the command that rebuilds the engine."""
    rebuild = sidecar.get("rebuild")
    problem = version_problem(str(sidecar.get("tensorrt_version", "?")), tensorrt_version, bool(sidecar.get("version_compatible")))
    if problem:
        return f"{problem}; rebuild: {rebuild}"
    built_gpu = (sidecar.get("gpu") or {}).get("compute_capability")
    here = (gpu or {}).get("compute_capability")
    if built_gpu and here and built_gpu != here:
        return (f"engine built for {sidecar['gpu'].get('name')} ({built_gpu}), this GPU is {gpu.get('name')} ({here}); "
                f"rebuild: {rebuild}")
    return None


def deserialize_engine(trt, plan: bytes, where: str, version_compatible: bool = False, dla_core: int | None = None,
                       logger=None) -> tuple[Any, Any]:
    """``(runtime, engine)`` from a serialized plan; the runtime must outlive the engine.

    Raises:
        BackendError: TensorRT returned no engine (the TensorRT log above says why).
    """
    runtime = trt.Runtime(logger or trt.Logger(trt.Logger.WARNING))
    if version_compatible:
        # a version-compatible plan embeds TensorRT's lean runtime (host code), which a runtime loads only
        # when allowed: TensorRT 10 docs, "Version Compatibility" (IRuntime::setEngineHostCodeAllowed);
        # Polygraphy's EngineFromBytes sets it for the same reason
        runtime.engine_host_code_allowed = True
    if dla_core is not None:
        runtime.DLA_core = dla_core  # the DLA core the engine's DLA layers run on (IRuntime.DLA_core)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        hint = "" if version_compatible else " (if it was built version-compatible, say so: occ engine attach --version-compatible)"
        raise BackendError(f"{where}: TensorRT {trt.__version__} cannot deserialize this engine; see the TensorRT log above{hint}")
    return runtime, engine


def numpy_dtype(trt, engine, name: str, where: str) -> np.dtype:
    """The numpy dtype of an engine tensor; BF16, FP8, FP4 and INT4 I/O (no numpy type:
    ``tensorrt.nptype`` raises TypeError for them, TensorRT 10 Python API) are refused in one line."""
    dtype = engine.get_tensor_dtype(name)
    try:
        return np.dtype(trt.nptype(dtype))
    except TypeError:
        raise BackendError(f"{where}: tensor '{name}' is {str(dtype).split('.')[-1]}, which numpy cannot hold; build the engine "
                           "with float32, float16, int8, int32 or bool I/O (trtexec --inputIOFormats/--outputIOFormats)") from None


def engine_io(trt, engine) -> tuple[list[str], list[str]]:
    """``(inputs, outputs)``: an engine's I/O tensor names through the name-based API (TensorRT 10+)."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    return ([n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT],
            [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT])


def set_input_shapes(context, engine_inputs: list[str], shapes: dict[str, tuple[int, ...]], where: str) -> None:
    """``set_input_shape`` for each engine input in ``shapes``, checked as Polygraphy's runner does:
    TensorRT returns False (it does not raise) for a shape outside the profile (TensorRT 10 Python
    API, ``IExecutionContext.set_input_shape``). Names that are not engine inputs are refused."""
    unknown = sorted(set(shapes) - set(engine_inputs))
    if unknown:
        raise BackendError(f"{where}: {unknown} are not inputs of this engine; it takes {engine_inputs}")
    for name, shape in shapes.items():
        if not context.set_input_shape(name, tuple(int(d) for d in shape)):
            raise BackendError(f"{where}: TensorRT refused shape {list(shape)} for input '{name}' (outside the engine's profile?)")


class TensorRTBackend(Backend):
    """Args:
        model_path: the ``.engine`` file (its sidecar ``.engine.json`` must lie beside it).
    """

    name = "tensorrt"
    capabilities = Capabilities(runs_on="gpu", artifact=".engine", device_resident=True)
    runs_on_bound_stream = True  # execute_async_v3 runs on the stream bind_device was given

    def __init__(self, model_path: str):
        super().__init__(model_path)
        self._buffers: dict = {}
        self.engine_inputs: list[str] = []

    @classmethod
    def on_device(cls, model_path: str, stream: Any, samples: int, cuda_graph: bool = True, share_stream: bool = True,
                  **options: Any) -> "TensorRTBackend":
        # the engine's optimization profile fixes the batches it takes, and it always runs on the
        # caller's stream; occ does not capture TensorRT in CUDA graphs
        if options:
            raise BackendError(f"{model_path}: the tensorrt backend takes no option(s) {sorted(options)}")
        return cls(model_path)

    def input_dtype(self, name: str) -> np.dtype:
        if name not in self.engine_inputs:
            raise BackendError(f"{self.model_path}: '{name}' is not an input tensor of this engine; it takes {self.engine_inputs}")
        return self.dtypes[name]

    def _activate_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(f"{self.model_path}: TensorRT is not installed here (JetPack or NVIDIA's packages provide it)") from None
        from ..cuda.driver import Context, Stream

        if not Path(self.model_path).is_file():
            raise BackendError(f"{self.model_path}: engine file not found")
        self.context_cuda = Context()
        self.open_engine(trt, {"name": self.context_cuda.name, "compute_capability": self.context_cuda.arch})
        self.stream = Stream()

    def open_engine(self, trt, gpu: dict[str, Any] | None) -> None:
        """The TensorRT half of :meth:`activate` (no CUDA memory): check the sidecar against this
        TensorRT and GPU, deserialize, create the execution context, read the I/O tensors."""
        path = Path(self.model_path)
        if not path.is_file():
            raise BackendError(f"{path}: engine file not found")
        self.manifest = read_manifest(path)
        sidecar = json.loads(engine_sidecar(path).read_text())
        problem = compatibility_problem(sidecar, trt.__version__, gpu)
        if problem:
            raise BackendError(f"{path}: {problem}")
        if sidecar.get("fixed_inputs"):
            raise BackendError(f"{path}: this engine holds {', '.join(sidecar['fixed_inputs'])} as constants (attached from a model "
                               f"exported before occ 0.2); rebuild: {sidecar.get('rebuild', 'occ export MODEL.onnx --engine')}")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime, self.engine = deserialize_engine(trt, path.read_bytes(), str(path), bool(sidecar.get("version_compatible")),
                                                       sidecar.get("dla_core"), self.logger)
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{path}: TensorRT could not create an execution context (out of device memory?)")
        self.engine_inputs, self.output_names = engine_io(trt, self.engine)
        self.dtypes = {name: numpy_dtype(trt, self.engine, name, str(path)) for name in self.engine_inputs + self.output_names}
        self.input_names = list(self.engine_inputs)
        batch_input = expected_input(self.manifest)[0]
        if batch_input in self.engine_inputs and -1 in tuple(self.engine.get_tensor_shape(batch_input)):
            low, _, high = self.engine.get_tensor_profile_shape(batch_input, 0)
            self.batch_limits = (int(low[0]), int(high[0]))  # frames' patches beyond the profile run in slices
        elif batch_input in self.engine_inputs:
            fixed = int(self.engine.get_tensor_shape(batch_input)[0])
            self.batch_limits = (fixed, fixed)

    def _deactivate_impl(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers.clear()
        self.context = self.engine = self.runtime = None
        self.stream.free()

    def _buffer(self, name: str, nbytes: int):
        from ..cuda.driver import DeviceBuffer

        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                buffer.free()
            buffer = self._buffers[name] = DeviceBuffer(nbytes)
        return buffer

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        arrays = {name: np.ascontiguousarray(feed[name], dtype=self.dtypes[name]) for name in self.engine_inputs if name in feed}
        set_input_shapes(self.context, self.engine_inputs, {name: array.shape for name, array in arrays.items()}, self.model_path)
        for name, array in arrays.items():
            buffer = self._buffer(name, array.nbytes)
            buffer.upload(array, self.stream)
            self.context.set_tensor_address(name, buffer.ptr)
        results = {}
        for name in self.output_names:
            results[name] = np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self.context.set_tensor_address(name, self._buffer(name, results[name].nbytes).ptr)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise BackendError(f"{self.model_path}: execute_async_v3 failed")
        for name in outputs:
            self._buffers[name].download(results[name], self.stream)
        self.stream.synchronize()
        return {name: results[name] for name in outputs}

    def device_outputs(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        set_input_shapes(self.context, self.engine_inputs, input_shapes, self.model_path)
        return {name: (tuple(int(d) for d in self.context.get_tensor_shape(name)), self.dtypes[name]) for name in self.output_names}

    def bind_device(self, inputs: dict[str, tuple], outputs: dict[str, tuple], stream) -> None:
        """Tensor addresses set once; ``execute_async_v3`` then runs on the caller's ``stream``, so the
        preprocessing before it and the copies after it need no host synchronization."""
        from ..cuda.driver import device_pointer

        missing = sorted(set(self.engine_inputs) - set(inputs))
        if missing:
            raise BackendError(f"{self.model_path}: the engine needs device buffers for inputs {missing}")
        set_input_shapes(self.context, self.engine_inputs, {name: shape for name, (_, shape, _) in inputs.items()}, self.model_path)
        for name, (pointer, _shape, _dtype) in {**inputs, **outputs}.items():
            if not self.context.set_tensor_address(name, device_pointer(pointer)):
                raise BackendError(f"{self.model_path}: TensorRT refused the device address of '{name}'")
        self._device_stream = stream

    def run_device(self) -> None:
        if not self.context.execute_async_v3(self._device_stream.ptr):
            raise BackendError(f"{self.model_path}: execute_async_v3 failed")
