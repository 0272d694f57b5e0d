"""The preprocessing reference on the GPU: uint8 frames → network input, in device memory.

One kernel launch per batch (``kernels/preprocess_frames.cu``) does what
:class:`occ.runtime.preprocess.reference.FramePreprocessor` does per frame: luma (gray, BGR, BGRA or the
luma plane of NV12, what Jetson cameras deliver), bilinear resize, the temporal rule (for AVID a
ring of averaged frames kept on the GPU), normalization to FP32 or FP16, written straight into the
inference input buffer. For ALOCC a second launch (``kernels/extract_patches.cu``) cuts the patch
batch. A batch is ``streams`` independent cameras advancing together, each with its own temporal
state.

Tolerance against the numpy reference: 1e-3 in 0..255 units before normalization (the kernel
interpolates in float32 with OpenCV's half-pixel convention; the difference is the order of float
rounding), about 1e-5 after normalization in FP32; FP16 outputs add half-precision rounding
(relative 2⁻¹¹, i.e. ≤ 5e-4 on values in −1..1).
"""
from __future__ import annotations

import ctypes

import numpy as np

from pathlib import Path

from ..cuda.driver import Context, DeviceBuffer, PinnedBuffer, Stream, bindings, check, device_pointer
from ..cuda.nvrtc import KernelModule, ceil_div
from ..manifest import InputSpec, PatchSpec
from .reference import AVID_OFFSETS, PatchGrid, channel_means

KERNEL_DIR = Path(__file__).with_name("kernels")
# one operation per file; one extern "C" name per output precision
KERNELS = {
    "preprocess_frames.cu": ("preprocess_frames_f32", "preprocess_frames_f16"),
    "extract_patches.cu": ("extract_patches_f32", "extract_patches_f16"),
}


def load_kernels(name: str, arch: str) -> KernelModule:
    """The kernels of ``kernels/<name>`` for this GPU (compiled on first use, then cached)."""
    return KernelModule(KERNEL_DIR / name, KERNELS[name], arch)


_P = ctypes.c_void_p  # cuda-python packs device pointers given as ints only under this type
_I = ctypes.c_int
_L = ctypes.c_longlong
_F = ctypes.c_float
# name: (kernel code, bytes per pixel of the packed raw frame that the kernel reads)
SOURCE_FORMATS = {"gray": (0, 1), "bgr": (1, 3), "bgra": (2, 4), "nv12": (3, 1), "nv12_full": (4, 1)}
_TEMPORAL = {"none": 0, "avid_triplet": 1, "frame_diff": 2}
_RING_SLOTS = max(AVID_OFFSETS) + 1


def resize_taps(source: int, target: int, axis: str) -> tuple[np.ndarray, np.ndarray]:
    """Source taps ``(target, 2)`` and weights ``(target,)`` of OpenCV's INTER_LINEAR along one axis.

    As ``cv::resize`` computes them: position ``(i + 0.5) · source / target − 0.5`` and its
    fractional part in double precision, the weight then rounded to float. Columns clamp the tap
    and zero the weight outside the image; rows keep the weight and clamp both row indices, as
    OpenCV's vertical pass does. Output ``i`` = ``(1 − w)·src[tap0] + w·src[tap1]``.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    scale = 1.0 / (target / source)
    position = (np.arange(target) + 0.5) * scale - 0.5
    tap = np.floor(position).astype(np.int64)
    weight = (position - tap).astype(np.float32)
    if axis == "x":
        low, high = tap < 0, tap >= source - 1
        weight[low | high] = 0.0
        tap = np.where(low, 0, np.where(high, source - 1, tap))
        taps = np.stack([tap, np.minimum(tap + 1, source - 1)], axis=1)
    else:
        taps = np.stack([np.clip(tap, 0, source - 1), np.clip(tap + 1, 0, source - 1)], axis=1)
    return taps.astype(np.int32), weight


class GpuPreprocessor:
    """Streaming GPU form of :class:`occ.runtime.preprocess.FramePreprocessor` for ``streams`` cameras.

    Args:
        spec: the manifest's input specification.
        frame_size: raw frame ``(height, width)`` in pixels.
        source_format: raw pixel layout, one of :data:`SOURCE_FORMATS` (``nv12``: limited range
            luma expanded to 0..255; ``nv12_full``: taken as is).
        precision: ``fp32`` or ``fp16`` output.
        patches: ALOCC patch geometry (then :meth:`push` returns the patch batch).
        streams: cameras per batch; :meth:`push` takes one frame of each.
        context: an existing :class:`Context` (one is created otherwise).
        stream: the CUDA stream every copy and launch goes on (one is created otherwise).
    """

    def __init__(self, spec: InputSpec, frame_size: tuple[int, int], source_format: str = "bgr", precision: str = "fp32",
                 patches: PatchSpec | None = None, streams: int = 1, context: Context | None = None,
                 stream: Stream | None = None):
        spec.validate()
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        if source_format not in SOURCE_FORMATS:
            raise ValueError(f"source_format must be one of {sorted(SOURCE_FORMATS)}, got {source_format!r}")
        if spec.interpolation != "bilinear":
            raise ValueError(f"the GPU preprocessing implements bilinear resizing only; the model asks for {spec.interpolation!r}")
        if len(frame_size) != 2 or min(frame_size) < 2:
            raise ValueError(f"frame_size must be (height, width) of at least 2x2 pixels, got {frame_size}")
        if streams < 1:
            raise ValueError(f"streams must be ≥ 1, got {streams}")
        self.spec, self.frame_size, self.source_format = spec, tuple(int(v) for v in frame_size), source_format
        self.precision, self.streams = precision, int(streams)
        self.context = context or Context()
        self.stream = stream or Stream()
        self.k_frames = load_kernels("preprocess_frames.cu", self.context.arch)
        self.k_patches = load_kernels("extract_patches.cu", self.context.arch) if patches else None
        h, w = self.frame_size
        code, per_pixel = SOURCE_FORMATS[source_format]
        self.frame_bytes = h * w * per_pixel  # only the luma plane of NV12 is read and uploaded
        self.device_frame_bytes = h * w * 3 // 2 if source_format.startswith("nv12") else self.frame_bytes
        self.pixels = spec.height * spec.width
        self.itemsize = 2 if precision == "fp16" else 4
        self.staging = PinnedBuffer((self.streams, self.frame_bytes), np.uint8)
        self.source = DeviceBuffer(self.streams * self.frame_bytes)
        self.previous = DeviceBuffer(self.streams * self.pixels * 4)
        self.ring = DeviceBuffer(self.streams * _RING_SLOTS * self.pixels * 4 if spec.temporal == "avid_triplet" else 4)
        self.output = DeviceBuffer(self.streams * spec.channels * self.pixels * self.itemsize)
        self.grid = PatchGrid.from_spec(patches, spec) if patches else None
        if self.grid:
            self.tops = DeviceBuffer(4 * self.grid.rows)
            self.lefts = DeviceBuffer(4 * self.grid.cols)
            self._index_arrays = (np.asarray(self.grid.tops, np.int32), np.asarray(self.grid.lefts, np.int32))
            self.tops.upload(self._index_arrays[0], self.stream)
            self.lefts.upload(self._index_arrays[1], self.stream)
            self.patch_output = DeviceBuffer(self.streams * self.grid.count * spec.channels * patches.size**2 * self.itemsize)
        self.mean = float(channel_means(spec)[0])
        x_taps, x_weights = resize_taps(w, spec.width, "x")
        y_taps, y_weights = resize_taps(h, spec.height, "y")
        self.tables = [DeviceBuffer(a.nbytes) for a in (x_taps, x_weights, y_taps, y_weights)]
        for buffer, array in zip(self.tables, (x_taps, x_weights, y_taps, y_weights)):
            buffer.upload(array, self.stream)
        self.stream.synchronize()  # the tables' host arrays go out of scope
        kernel = "preprocess_frames_f16" if precision == "fp16" else "preprocess_frames_f32"
        self._frames_launch = self.k_frames.prepare(
            kernel, (_P, _L, _I, _I, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _F, _F, _P, _L, _I, _I)).set(
            0, 0, w * per_pixel, code, *(t.ptr for t in self.tables), self.previous.ptr, self.ring.ptr, _RING_SLOTS,
            0, 0, 0, _TEMPORAL[spec.temporal], 1, self.mean, 1.0 / spec.norm_std, 0, spec.channels * self.pixels,
            spec.height, spec.width)
        self._frames_grid = (ceil_div(spec.width, 32), ceil_div(spec.height, 8), self.streams)
        if self.grid:
            kernel = "extract_patches_f16" if precision == "fp16" else "extract_patches_f32"
            self._patches_launch = self.k_patches.prepare(kernel, (_P, _I, _I, _I, _P, _P, _I, _I, _I, _P)).set(
                0, spec.channels, spec.height, spec.width, self.tops.ptr, self.lefts.ptr, self.grid.rows, self.grid.cols,
                self.grid.size, 0)
            self._patches_grid = (ceil_div(self.grid.size**2, 256), self.streams * self.grid.count, spec.channels)
        self.frames = 0

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of what :meth:`push` writes: ``(streams, C, H, W)`` or the patch batch."""
        c, s = self.spec.channels, self.spec
        if self.grid:
            return (self.streams * self.grid.count, c, self.grid.size, self.grid.size)
        return (self.streams, c, s.height, s.width)

    @property
    def output_dtype(self) -> type:
        return np.float16 if self.precision == "fp16" else np.float32

    def reset(self) -> None:
        """Forget temporal context (a clip boundary or a reconnect): the next frame starts anew."""
        self.frames = 0

    @property
    def host_frames(self) -> np.ndarray:
        """Pinned host memory for one batch of raw frames, ``(streams, height, width[, channels])``
        (NV12: its luma plane). A decoder that writes here saves a host copy: call :meth:`push`
        with no frames to upload it as it is."""
        h, w = self.frame_size
        per_pixel = SOURCE_FORMATS[self.source_format][1]
        return self.staging.array.reshape((self.streams, h, w) + ((per_pixel,) if per_pixel > 1 else ()))

    def push(self, frames: np.ndarray | None = None, device_frames=None, out=None) -> int:
        """Preprocess one frame of every stream; returns the device pointer of the network input.

        Args:
            frames: host uint8 frames, ``(streams, height, width[, channels])`` (or one frame when
                ``streams`` is 1; NV12 as ``(height * 3 / 2, width)``), copied through pinned memory;
                or nothing, to upload what was written into :attr:`host_frames`; or
            device_frames: a device pointer (occ, pycuda, CuPy, PyTorch) to ``streams`` packed raw
                frames back to back.
            out: optional device pointer to write the network input to (e.g. the engine's input
                buffer); the preprocessor's own buffer otherwise.
        """
        if device_frames is None:
            if frames is not None:
                self._stage(frames)
            self.source.upload(self.staging.array, self.stream)
            source_ptr, source_stride = self.source.ptr, self.frame_bytes
        else:
            source_ptr, source_stride = device_pointer(device_frames), self.device_frame_bytes
        t = self.frames
        # frame max(t − k, 0) lives in ring slot max(t − k, 0) mod 5: the reference's clip-start rule
        slot_a, slot_b = (max(t - k, 0) % _RING_SLOTS for k in AVID_OFFSETS[:2])
        network_input = device_pointer(out) if (out is not None and self.grid is None) else self.output.ptr
        launch = self._frames_launch
        launch[0], launch[1], launch[11], launch[12], launch[13] = source_ptr, source_stride, t % _RING_SLOTS, slot_a, slot_b
        launch[15], launch[18] = int(t == 0), network_input
        launch.launch(self._frames_grid, (32, 8, 1), self.stream)
        self.frames += 1
        if self.grid is None:
            return network_input
        destination = device_pointer(out) if out is not None else self.patch_output.ptr
        self._patches_launch[0], self._patches_launch[9] = network_input, destination
        self._patches_launch.launch(self._patches_grid, (256, 1, 1), self.stream)
        return destination

    def _stage(self, frames: np.ndarray | None) -> None:
        h, w = self.frame_size
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames))}")
        planar = self.source_format in ("gray", "nv12", "nv12_full")
        if planar and frames.ndim in (3, 4) and frames.shape[-1] == 1 and frames.shape[-2] != 1:
            frames = frames[..., 0]  # gray given as (H, W, 1)
        batch = frames[None] if frames.ndim == (2 if planar else 3) else frames
        if batch.shape[0] != self.streams:
            raise ValueError(f"expected one frame for each of {self.streams} streams, got {batch.shape[0]}")
        if self.source_format.startswith("nv12"):
            if batch.shape[1:3] != (h * 3 // 2, w):
                raise ValueError(f"NV12 frames must be ({h * 3 // 2}, {w}) uint8, got {batch.shape[1:]}")
            self.staging.array[...] = batch[:, :h, :w].reshape(self.streams, -1)
            return
        per_pixel = SOURCE_FORMATS[self.source_format][1]
        channels = batch.shape[3] if batch.ndim == 4 else 1 if batch.ndim == 3 else None
        if batch.shape[1:3] != (h, w) or channels != per_pixel:
            raise ValueError(f"{self.source_format} frames must be ({h}, {w}, {per_pixel}) uint8, got {batch.shape[1:]}")
        self.staging.array[...] = batch.reshape(self.streams, -1)

    def read_output(self, pointer: int | None = None) -> np.ndarray:
        """Copy what :meth:`push` wrote (at ``pointer``, default its own buffer) back to the host."""
        driver, _ = bindings()
        if pointer is None:
            pointer = self.patch_output.ptr if self.grid else self.output.ptr
        host = np.empty(self.output_shape, self.output_dtype)
        check(driver.cuMemcpyDtoHAsync(host.ctypes.data, pointer, host.nbytes, self.stream.handle), "cuMemcpyDtoHAsync")
        self.stream.synchronize()
        return host

    def free(self) -> None:
        for buffer in [self.source, self.previous, self.ring, self.output, *self.tables,
                       *([self.tops, self.lefts, self.patch_output] if self.grid else [])]:
            buffer.free()
        self.staging.free()
