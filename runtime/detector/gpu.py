"""The whole frame path on the GPU: uint8 frames → GPU preprocessing → model → results on the host.

Nothing leaves the device between the raw frame upload and the model's outputs: the preprocessing
kernels write straight into the model's input buffer, the model (ONNX Runtime CUDA with IOBinding,
or a TensorRT engine) reads it in place and writes its outputs into fixed device buffers, and only
the outputs the detector needs are copied back (pinned memory). Fixed addresses let ONNX Runtime
capture the model as a CUDA graph; a shared stream lets the model run after the preprocessing
without the host waiting in between.

    pipeline = GpuPipeline("avid.fp16.onnx", backend="ort-cuda", streams=4, frame_size=(240, 360))
    results = pipeline.process(frames)          # frames: (4, 240, 360, 3) uint8, one per camera
"""
from __future__ import annotations

import numpy as np

from ..backends import BackendError, BackendKind, backend_kind
from ..backends.base import batch_chunks, samples_per_frame
from ..cuda.driver import Context, DeviceBuffer, GpuUnavailable, PinnedBuffer, Stream, bindings, check
from ..manifest import read_manifest
from ..preprocess.gpu import GpuPreprocessor
from ..scoring.decide import FrameResult, on_frame
from ..scoring.zones import Zone
from .cpu import Detector


def device_resident_kind(model_path: str, backend: str) -> BackendKind:
    """The registered backend ``backend``, refused when it cannot run on device buffers."""
    kind = backend_kind(backend)
    if not kind.capabilities.device_resident:
        raise BackendError(f"{model_path}: backend {backend} cannot run on device buffers, so preprocessing cannot stay "
                           "on the GPU (use --preprocess cpu)")
    return kind


def threshold_arrays(backend, manifest) -> dict[str, np.ndarray]:
    """AVID's α and ζ as the model's device inputs take them, in the model's dtype; none for ALOCC
    (τ applies to the results)."""
    if manifest.method != "avid":
        return {}
    return {name: np.array([manifest.threshold(name)], backend.input_dtype(name)) for name in ("alpha", "zeta")}


class GpuPipeline:
    """Frames of ``streams`` cameras in, one :class:`FrameResult` per camera out.

    A batch beyond the backend's batch limits (one ALOCC frame's patches beyond a TensorRT
    profile's maximum) runs as several model runs on slices of the input buffer, the last one padded.

    Args:
        model_path: the model file the backend runs (``.onnx``, its ``.fp16.onnx`` sibling for FP16, ``.engine``...).
        backend: a registered backend whose capabilities say ``device_resident`` (``ort-cuda``, ``tensorrt``).
        streams: cameras per batch (the model's batch; for ALOCC each camera's patches).
        frame_size: raw frame ``(height, width)`` in pixels.
        source_format: raw pixel layout (see :data:`occ.runtime.preprocess.gpu.SOURCE_FORMATS`).
        cuda_graph: capture the model as a CUDA graph on the first run, replay after (where the backend can).
        share_stream: run the model on the preprocessing stream (no host wait between), where the backend can choose.
        outputs: graph outputs copied back (default: what the detector's results need, without
            AVID's full-resolution ``intersection`` map, which overlays can ask for).
        backend_options: the backend's own options (see :meth:`occ.runtime.backends.Backend.on_device`).
    """

    def __init__(self, model_path: str, backend: str = "ort-cuda", streams: int = 1, frame_size: tuple[int, int] = (240, 360),
                 source_format: str = "bgr", cuda_graph: bool = True, share_stream: bool = True,
                 outputs: list[str] | None = None, backend_options: dict | None = None):
        kind = device_resident_kind(model_path, backend)
        self.context = Context()
        self.stream = Stream()
        samples = streams * samples_per_frame(read_manifest(model_path))
        engine = kind.backend.on_device(model_path, self.stream, samples, cuda_graph=cuda_graph, share_stream=share_stream,
                                        **(backend_options or {}))
        self.detector = Detector(engine)
        self._wait_before_model = not engine.runs_on_bound_stream
        self.backend = engine
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        manifest = self.detector.manifest
        alocc = manifest.method == "alocc"
        self.input_name = "patches" if alocc else "frames"
        input_dtype = engine.input_dtype(self.input_name)
        self.preprocessor = GpuPreprocessor(manifest.input, frame_size, source_format=source_format,
                                            precision="fp16" if input_dtype == np.float16 else "fp32",
                                            patches=manifest.patches if alocc else None, streams=streams,
                                            context=self.context, stream=self.stream)
        self.streams = streams
        self.input = DeviceBuffer(int(np.prod(self.preprocessor.output_shape)) * np.dtype(input_dtype).itemsize)
        inputs = {self.input_name: (self.input.ptr, self.preprocessor.output_shape, input_dtype)}
        self._thresholds: dict[str, DeviceBuffer] = {}
        for name, value in threshold_arrays(engine, manifest).items():  # AVID: device scalars that set_thresholds rewrites
            self._thresholds[name] = DeviceBuffer(value.nbytes)
            inputs[name] = (self._thresholds[name].ptr, value.shape, value.dtype)
        self._upload_thresholds()
        wanted = outputs or [o for o in self.detector.outputs if o != "intersection"]
        total = self.preprocessor.output_shape[0]
        limits = engine.batch_limits or (total, total)
        self._chunks = batch_chunks(total, *limits)
        self._run_samples = max(size for _, _, size in self._chunks)  # every slice runs padded to this many
        self._staging = None
        if self._chunks != [(0, total, total)]:
            # the model runs on a fixed staging buffer (fixed addresses: CUDA graphs, bound once);
            # each slice of the preprocessor's output is copied in, and its results copied out
            sample_shape = tuple(self.preprocessor.output_shape[1:])
            self._sample_bytes = int(np.prod(sample_shape)) * np.dtype(input_dtype).itemsize
            self._staging = DeviceBuffer(self._run_samples * self._sample_bytes)
            inputs[self.input_name] = (self._staging.ptr, (self._run_samples, *sample_shape), input_dtype)
        shapes = engine.device_outputs({name: shape for name, (_, shape, _) in inputs.items()})
        unknown = sorted(set(wanted) - set(shapes))
        if unknown:
            raise BackendError(f"{model_path}: no output(s) {unknown}; the model gives {sorted(shapes)}")
        self._device_outputs = {name: DeviceBuffer(int(np.prod(shape)) * dtype.itemsize) for name, (shape, dtype) in shapes.items()}
        full = {name: ((total, *shape[1:]) if self._staging is not None else shape, dtype) for name, (shape, dtype) in shapes.items()}
        self._results = self._device_outputs if self._staging is None else {
            name: DeviceBuffer(int(np.prod(full[name][0])) * full[name][1].itemsize) for name in wanted}
        self._host_outputs = {name: PinnedBuffer(full[name][0], full[name][1]) for name in wanted}
        self._result_sample_bytes = {name: buffer.nbytes // self._host_outputs[name].array.shape[0]
                                     for name, buffer in self._results.items()}
        engine.bind_device(inputs, {name: (buffer.ptr, *shapes[name]) for name, buffer in self._device_outputs.items()},
                           self.stream)

    def set_thresholds(self, **values: float) -> None:
        """Retune thresholds on the running graph (AVID's α and ζ are rewritten in device memory:
        no re-export, no rebinding; ALOCC's τ applies to the results)."""
        self.detector.set_thresholds(**values)
        self._upload_thresholds()

    def _upload_thresholds(self) -> None:
        values = threshold_arrays(self.backend, self.detector.manifest)
        for name, buffer in self._thresholds.items():
            buffer.upload(values[name], self.stream)
        self.stream.synchronize()

    def reset(self) -> None:
        """Forget temporal context of every stream (clip boundary, reconnect)."""
        self.preprocessor.reset()

    @property
    def host_frames(self) -> np.ndarray:
        """Pinned host memory for the next batch of raw frames (see ``GpuPreprocessor.host_frames``):
        write frames here and call :meth:`infer` with none to save a host copy."""
        return self.preprocessor.host_frames

    def infer(self, frames: np.ndarray | None = None, device_frames=None) -> dict[str, np.ndarray]:
        """Raw frames (host array, device pointer, or none: what is in :attr:`host_frames`) → the
        wanted outputs, copied to the host."""
        self.preprocessor.push(frames, device_frames=device_frames, out=self.input.ptr)
        return self.infer_prepared()

    def infer_prepared(self) -> dict[str, np.ndarray]:
        """The model on what the preprocessor last wrote into the input buffer → outputs on the host
        (the second half of :meth:`infer`, separate so benchmarks can time the stages)."""
        driver, _ = bindings()
        if self._staging is None:
            if self._wait_before_model:
                self.stream.synchronize()
            self.backend.run_device()
        else:
            self._run_in_slices(driver)
        for name, host in self._host_outputs.items():
            check(driver.cuMemcpyDtoHAsync(host.array.ctypes.data, self._results[name].ptr, host.nbytes,
                                           self.stream.handle), "cuMemcpyDtoHAsync")
        self.stream.synchronize()
        return {name: host.array.copy() for name, host in self._host_outputs.items()}

    def _run_in_slices(self, driver) -> None:
        """The model over slices of the input buffer (beyond the backend's batch limits), all on the pipeline's stream."""
        for start, count, _ in self._chunks:
            check(driver.cuMemcpyDtoDAsync(self._staging.ptr, self.input.ptr + start * self._sample_bytes,
                                           count * self._sample_bytes, self.stream.handle), "cuMemcpyDtoDAsync")
            if count < self._run_samples:  # zeros: a valid normalized input; the padded results are not copied out
                check(driver.cuMemsetD8Async(self._staging.ptr + count * self._sample_bytes, 0,
                                             (self._run_samples - count) * self._sample_bytes, self.stream.handle), "cuMemsetD8Async")
            if self._wait_before_model:
                self.stream.synchronize()
            self.backend.run_device()
            for name, result in self._results.items():
                per_sample = self._result_sample_bytes[name]
                check(driver.cuMemcpyDtoDAsync(result.ptr + start * per_sample, self._device_outputs[name].ptr,
                                               count * per_sample, self.stream.handle), "cuMemcpyDtoDAsync")

    def process(self, frames: np.ndarray | None = None, device_frames=None) -> list[FrameResult]:
        """One result per stream (score, decision, mask and boxes, as the CPU detector gives)."""
        return self.detector.finish(self.infer(frames, device_frames), self.frame_size)

    def close(self) -> None:
        self.detector.close()
        self.preprocessor.free()
        extra = [] if self._staging is None else [self._staging, *self._results.values()]
        for buffer in [self.input, *self._thresholds.values(), *self._device_outputs.values(), *extra]:
            buffer.free()
        for host in self._host_outputs.values():
            host.free()
        self.stream.free()


class GpuStreamDetector:
    """One camera through :class:`GpuPipeline`, with the CPU :class:`Detector`'s streaming interface
    (``process``, ``process_clip``, ``reset``, ``set_thresholds``, ``close``, ``manifest``), so the
    service and every command use either without knowing which. The pipeline is built at the first
    frame, which fixes the frame size and pixel layout; a stream that changes either gets a new
    pipeline (and a fresh temporal context)."""

    _LAYOUTS = {1: "gray", 3: "bgr", 4: "bgra"}

    def __init__(self, model_path: str, backend: str = "ort-cuda", cuda_graph: bool = True):
        self.model_path, self.backend, self.cuda_graph = str(model_path), backend, cuda_graph
        device_resident_kind(model_path, backend)
        try:  # fail before the stream is opened, not at its first frame
            Context()
        except GpuUnavailable as exc:
            raise GpuUnavailable(f"{model_path}: preprocessing on the GPU needs an NVIDIA GPU: {exc}") from None
        self.manifest = read_manifest(self.model_path)
        self._pipeline: GpuPipeline | None = None
        self._key: tuple | None = None
        self._overrides: dict[str, float] = {}
        self._zones: list[Zone] = []
        self._index = 0
        self.stage_seconds: dict[str, float] = {}  # one fused device pipeline: no separate stages to time

    def set_thresholds(self, **values: float) -> None:
        self._overrides.update({name: float(value) for name, value in values.items()})
        self.manifest = self.manifest.with_thresholds(values)
        if self._pipeline is not None:
            self._pipeline.set_thresholds(**values)

    def set_zones(self, zones: list[Zone]) -> None:
        """Ignore and sensitivity zones in source-frame pixels, as :meth:`Detector.set_zones`."""
        self._zones = list(zones)
        if self._pipeline is not None:
            self._pipeline.detector.set_zones(self._zones)

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        channels = 1 if frame.ndim == 2 else frame.shape[2]
        if channels not in self._LAYOUTS or frame.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 gray, BGR or BGRA, got {frame.dtype} {frame.shape}")
        key = (frame.shape[:2], channels)
        if key != self._key:
            if self._pipeline is not None:
                self._pipeline.close()
            self._pipeline = GpuPipeline(self.model_path, self.backend, frame_size=frame.shape[:2],
                                         source_format=self._LAYOUTS[channels], cuda_graph=self.cuda_graph)
            self._key = key
            if self._overrides:
                self._pipeline.set_thresholds(**self._overrides)
            self._pipeline.detector.set_zones(self._zones)
        result = on_frame(self._pipeline.process(frame)[0], self.manifest, frame.shape[:2])
        result.index, result.timestamp = self._index, timestamp
        self._index += 1
        return result

    def process_clip(self, frames: np.ndarray) -> list[FrameResult]:
        """A whole clip, frame by frame through the pipeline (indices from 0)."""
        self.reset()
        self._index = 0
        return [self.process(frame) for frame in frames]

    def reset(self) -> None:
        if self._pipeline is not None:
            self._pipeline.reset()

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None
