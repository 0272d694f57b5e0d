"""TensorRT backend: a plain ``.engine`` plan plus its ``<name>.engine.json`` sidecar (manifest and
build facts). Device memory, streams and events through cuda-python; ``execute_async_v3``.

Written against the TensorRT 10 and 11 Python API; never run in this project's workplace (no
TensorRT there). An engine built for another TensorRT version or GPU is refused with the rebuild
command (``--rebuild`` rebuilds it from the ONNX beside it).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..manifest import Manifest
from .base import Backend, BackendError


class TensorRTBackend(Backend):
    """Args:
        model_path: the ``.engine`` file (its sidecar ``.engine.json`` must lie beside it).
        rebuild: rebuild from the ONNX named in the sidecar when the engine does not fit here.
    """

    name = "tensorrt"

    def __init__(self, model_path: str, rebuild: bool = False):
        super().__init__(model_path)
        self.rebuild = rebuild
        self._buffers: dict = {}

    def _activate_impl(self) -> None:
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendError(f"{self.model_path}: TensorRT is not installed here (JetPack or NVIDIA's packages provide it)") from None
        from ..gpu.cuda import Context, Stream

        path = Path(self.model_path)
        sidecar_path = path.with_name(path.name + ".json")
        if not path.is_file():
            raise BackendError(f"{path}: engine file not found")
        if not sidecar_path.is_file():
            raise BackendError(f"{sidecar_path}: the engine's manifest sidecar is missing; rebuild with occ-export --engine")
        sidecar = json.loads(sidecar_path.read_text())
        self.manifest = Manifest.from_dict(sidecar["manifest"], str(sidecar_path))
        self.context_cuda = Context()
        from .tensorrt_build import compatibility_problem

        problem = compatibility_problem(sidecar, trt.__version__, {"name": self.context_cuda.name,
                                                                    "compute_capability": self.context_cuda.arch})
        if problem:
            if not self.rebuild:
                raise BackendError(f"{path}: {problem}")
            from .tensorrt_build import BuildOptions, build_engine

            build_engine(path.with_name(sidecar["onnx"].replace(".fp16.onnx", ".onnx")), path,
                         BuildOptions(batch=tuple(sidecar["batch_profile"]), dla_core=sidecar.get("dla_core")))
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
        self._trt = trt

    def _deactivate_impl(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers.clear()
        self.context = self.engine = self.runtime = None
        self.stream.free()

    def _buffer(self, name: str, nbytes: int):
        from ..gpu.cuda import DeviceBuffer

        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                buffer.free()
            buffer = self._buffers[name] = DeviceBuffer(nbytes)
        return buffer

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        trt = self._trt
        for name in self.input_names:
            if name not in feed:
                continue  # inputs with defaults (alpha, zeta) keep the engine's values
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
        from ..gpu.cuda import device_pointer

        missing = sorted(set(self.input_names) - set(inputs))
        if missing:
            raise BackendError(f"{self.model_path}: the engine needs device buffers for inputs {missing}")
        for name, (pointer, shape, _dtype) in inputs.items():
            self.context.set_input_shape(name, tuple(shape))
            self.context.set_tensor_address(name, device_pointer(pointer))
        for name, (pointer, _shape, _dtype) in outputs.items():
            self.context.set_tensor_address(name, device_pointer(pointer))
        self._device_stream = stream

    def run_device(self) -> None:
        if not self.context.execute_async_v3(self._device_stream.ptr):
            raise BackendError(f"{self.model_path}: execute_async_v3 failed")
