"""TensorRT backend: a plain ``.engine`` plan plus its ``<name>.engine.json`` sidecar (manifest and
build facts). Device memory, streams and events through cuda-python; ``execute_async_v3``.

Written against the TensorRT 10 and 11 Python API and never run (no TensorRT was available where
occ was developed). An engine built for another TensorRT version or GPU is refused with the
command that rebuilds it (``occ-export`` builds engines; the runtime only loads them).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import engine_sidecar, read_manifest
from .base import Backend, BackendError, expected_input


def compatibility_problem(sidecar: dict[str, Any], tensorrt_version: str, gpu: dict[str, Any] | None) -> str | None:
    """Why an engine cannot run here (another TensorRT version or GPU), or None when it can."""
    built = sidecar.get("tensorrt_version", "?")
    if not sidecar.get("version_compatible") and built.split(".")[:2] != tensorrt_version.split(".")[:2]:
        return f"engine built with TensorRT {built}, this is TensorRT {tensorrt_version}; rebuild: {sidecar.get('rebuild')}"
    built_gpu = (sidecar.get("gpu") or {}).get("compute_capability")
    here = (gpu or {}).get("compute_capability")
    if built_gpu and here and built_gpu != here:
        return (f"engine built for {sidecar['gpu'].get('name')} ({built_gpu}), this GPU is {gpu.get('name')} ({here}); "
                f"rebuild: {sidecar.get('rebuild')}")
    return None


class TensorRTBackend(Backend):
    """Args:
        model_path: the ``.engine`` file (its sidecar ``.engine.json`` must lie beside it).
    """

    name = "tensorrt"

    def __init__(self, model_path: str):
        super().__init__(model_path)
        self._buffers: dict = {}
        self.fixed_inputs: dict[str, float] = {}

    def _activate_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(f"{self.model_path}: TensorRT is not installed here (JetPack or NVIDIA's packages provide it)") from None
        from ..cuda.driver import Context, Stream

        path = Path(self.model_path)
        if not path.is_file():
            raise BackendError(f"{path}: engine file not found")
        self.manifest = read_manifest(path)
        sidecar = json.loads(engine_sidecar(path).read_text())
        self.context_cuda = Context()
        problem = compatibility_problem(sidecar, trt.__version__, {"name": self.context_cuda.name,
                                                                    "compute_capability": self.context_cuda.arch})
        if problem:
            raise BackendError(f"{path}: {problem}")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{path}: TensorRT cannot deserialize this engine")
        self.context = self.engine.create_execution_context()
        self.stream = Stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        # an engine built elsewhere may hold α and ζ as constants (the ONNX defaults at build time)
        self.fixed_inputs = {name: self.manifest.threshold(name) for name in sidecar.get("fixed_inputs", [])}
        self.input_names += list(self.fixed_inputs)
        batch_input = expected_input(self.manifest)[0]
        if batch_input in self.input_names and -1 in tuple(self.engine.get_tensor_shape(batch_input)):
            low, _, high = self.engine.get_tensor_profile_shape(batch_input, 0)
            self.batch_limits = (int(low[0]), int(high[0]))  # frames' patches beyond the profile run in slices
        elif batch_input in self.input_names:
            fixed = int(self.engine.get_tensor_shape(batch_input)[0])
            self.batch_limits = (fixed, fixed)
        self._trt = trt

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
        trt = self._trt
        for name, value in self.fixed_inputs.items():
            if name in feed and not np.allclose(feed[name], value, rtol=1e-6, atol=0):
                raise BackendError(f"{self.model_path}: this engine holds {name} = {value:g} as a constant; retuning it needs an "
                                   "engine built by occ-export --engine (which takes the thresholds as inputs)")
        for name in self.input_names:
            if name not in feed or name in self.fixed_inputs:
                continue
            array = np.ascontiguousarray(feed[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
            self.context.set_input_shape(name, array.shape)
            buffer = self._buffer(name, array.nbytes)
            buffer.upload(array, self.stream)
            self.context.set_tensor_address(name, buffer.ptr)
        results = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            results[name] = np.empty(shape, dtype)
            self.context.set_tensor_address(name, self._buffer(name, results[name].nbytes).ptr)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise BackendError(f"{self.model_path}: execute_async_v3 failed")
        for name in outputs:
            self._buffers[name].download(results[name], self.stream)
        self.stream.synchronize()
        return {name: results[name] for name in outputs}

    def device_outputs(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        trt = self._trt
        for name in self.input_names:
            if name in input_shapes:
                self.context.set_input_shape(name, tuple(input_shapes[name]))
        return {name: (tuple(self.context.get_tensor_shape(name)), np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
                for name in self.output_names}

    def bind_device(self, inputs: dict[str, tuple], outputs: dict[str, tuple], stream) -> None:
        """Tensor addresses set once; ``execute_async_v3`` then runs on the caller's ``stream``, so the
        preprocessing before it and the copies after it need no host synchronization."""
        from ..cuda.driver import device_pointer

        missing = sorted(set(self.input_names) - set(inputs) - set(self.fixed_inputs))
        if missing:
            raise BackendError(f"{self.model_path}: the engine needs device buffers for inputs {missing}")
        for name, (pointer, shape, _dtype) in inputs.items():
            if name in self.fixed_inputs:
                continue  # a constant of the engine; the pipeline refuses to retune it (set_thresholds)
            self.context.set_input_shape(name, tuple(shape))
            self.context.set_tensor_address(name, device_pointer(pointer))
        for name, (pointer, _shape, _dtype) in outputs.items():
            self.context.set_tensor_address(name, device_pointer(pointer))
        self._device_stream = stream

    def run_device(self) -> None:
        if not self.context.execute_async_v3(self._device_stream.ptr):
            raise BackendError(f"{self.model_path}: execute_async_v3 failed")
