"""The preprocessing reference on the GPU: uint8 frame → network input, in device memory.

Per frame: upload (pinned host → device, or a device pointer from pycuda/CuPy/PyTorch) → luma and
bilinear resize (``gray_resize.cu``) → temporal rule (``temporal_average.cu`` into a ring buffer of
averaged frames for AVID) → normalized channels in FP32 or FP16 (``gather_channels.cu``) written
straight into the engine's input buffer → for ALOCC, the patch batch (``extract_patches.cu``).
NV12 frames (Jetson cameras) go through ``nv12_luma.cu`` first.

Tolerance against the numpy reference: 1e-3 in 0..255 units before normalization (the kernel
interpolates in float32 with the same half-pixel convention as OpenCV; the difference is float
rounding order), i.e. about 1e-5 after normalization in FP32; FP16 outputs add half-precision
rounding (relative 2⁻¹¹).
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..manifest import InputSpec, PatchSpec
from ..preprocess import AVID_OFFSETS, PatchGrid, channel_means
from .compile import KernelModule, ceil_div
from .cuda import Context, DeviceBuffer, PinnedBuffer, Stream, bindings, check, device_pointer

_I = ctypes.c_int
_F = ctypes.c_float


class GpuPreprocessor:
    """Streaming GPU form of :class:`occ.runtime.preprocess.FramePreprocessor`.

    Args:
        spec: the manifest's input specification.
        source_shape: raw frame ``(height, width, channels)`` (uint8; channels 1 or 3).
        precision: ``fp32`` or ``fp16`` output.
        patches: ALOCC patch geometry (then :meth:`push` returns the patch batch).
        context: an existing :class:`Context` (one is created otherwise).
        stream: the stream every copy and launch goes on (one is created otherwise).
    """

    def __init__(self, spec: InputSpec, source_shape: tuple[int, int, int], precision: str = "fp32",
                 patches: PatchSpec | None = None, context: Context | None = None, stream: Stream | None = None):
        if precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {precision!r}")
        if len(source_shape) != 3 or source_shape[2] not in (1, 3):
            raise ValueError(f"source frames must be (height, width, 1 or 3) uint8, got {source_shape}")
        self.spec, self.source_shape, self.precision = spec, tuple(source_shape), precision
        self.context = context or Context()
        self.stream = stream or Stream()
        arch = self.context.arch
        self.k_resize = KernelModule("gray_resize.cu", arch)
        self.k_average = KernelModule("temporal_average.cu", arch)
        self.k_gather = KernelModule("gather_channels.cu", arch)
        self.k_patches = KernelModule("extract_patches.cu", arch) if patches else None
        h, w = spec.height, spec.width
        self.pixels = h * w
        itemsize = 2 if precision == "fp16" else 4
        self.staging = PinnedBuffer(self.source_shape, np.uint8)
        self.source = DeviceBuffer(int(np.prod(self.source_shape)))
        self.current = DeviceBuffer(self.pixels * 4)
        self.previous = DeviceBuffer(self.pixels * 4)
        slots = max(AVID_OFFSETS) + 1
        self.ring = [DeviceBuffer(self.pixels * 4) for _ in range(slots if spec.temporal == "avid_triplet" else 0)]
        self.output = DeviceBuffer(spec.channels * self.pixels * itemsize)
        self.grid = None
        if patches:
            self.grid = PatchGrid.from_spec(patches, spec)
            self.tops = DeviceBuffer(4 * self.grid.rows)
            self.lefts = DeviceBuffer(4 * self.grid.cols)
            self.tops.upload(np.asarray(self.grid.tops, np.int32), self.stream)
            self.lefts.upload(np.asarray(self.grid.lefts, np.int32), self.stream)
            self.patch_output = DeviceBuffer(self.grid.count * spec.channels * patches.size**2 * itemsize)
        self.frames = 0

    def reset(self) -> None:
        self.frames = 0

    def push(self, frame: np.ndarray | None = None, device_frame=None, out=None) -> int:
        """Preprocess one frame; returns the device pointer of the network input (or patch batch).

        Args:
            frame: host uint8 frame of ``source_shape`` (copied through pinned memory), or
            device_frame: a device pointer (occ, pycuda, CuPy, PyTorch) to a packed uint8 frame.
            out: optional device pointer to write the network input to (e.g. the engine's input).
        """
        h, w, c = self.source_shape
        if device_frame is None:
            if frame is None or frame.dtype != np.uint8 or frame.reshape(h, w, -1).shape != self.source_shape:
                raise ValueError(f"frame must be uint8 of shape {self.source_shape}")
            self.staging.array[...] = frame.reshape(self.source_shape)
            self.source.upload(self.staging.array, self.stream)
            source_ptr = self.source.ptr
        else:
            source_ptr = device_pointer(device_frame)
        spec = self.spec
        block = (16, 16, 1)
        self.k_resize.launch("gray_resize_u8", (ceil_div(spec.width, 16), ceil_div(spec.height, 16), 1), block,
                             (source_ptr, h, w, w * c, c, self.current.ptr, spec.height, spec.width),
                             (None, _I, _I, _I, _I, None, _I, _I), self.stream)
        first = int(self.frames == 0)
        linear = (ceil_div(self.pixels, 256), 1, 1), (256, 1, 1)
        if spec.temporal == "avid_triplet":
            slot = self.ring[self.frames % len(self.ring)]
            self.k_average.launch("temporal_average", *linear, (self.current.ptr, self.previous.ptr, slot.ptr, self.pixels, first),
                                  (None, None, None, _I, _I), self.stream)
            # frame max(t − k, 0) lives in ring slot (t − k) mod 5: the clip-start rule of the reference
            channels = [self.ring[max(self.frames - k, 0) % len(self.ring)].ptr for k in AVID_OFFSETS]
            difference = 0
        elif spec.temporal == "frame_diff":
            if first:  # at a clip start I(t-1) := I(t)
                self._copy(self.current, self.previous)
            channels = [self.current.ptr, self.previous.ptr, self.current.ptr]
            difference = 1
        else:
            channels = [self.current.ptr] * 3
            difference = 0
        target = device_pointer(out) if (out is not None and self.grid is None) else self.output.ptr
        mean = float(channel_means(spec)[0])
        kernel = "gather_channels_f16" if self.precision == "fp16" else "gather_channels_f32"
        self.k_gather.launch(kernel, *linear, (*channels, spec.channels, difference, mean, 1.0 / spec.norm_std, target, self.pixels),
                             (None, None, None, _I, _I, _F, _F, None, _I), self.stream)
        if spec.temporal == "frame_diff":
            self._copy(self.current, self.previous)  # I(t) becomes the next frame's I(t-1)
        self.frames += 1
        if self.grid is None:
            return target
        size = self.grid.size
        destination = device_pointer(out) if out is not None else self.patch_output.ptr
        kernel = "extract_patches_f16" if self.precision == "fp16" else "extract_patches_f32"
        self.k_patches.launch(kernel, (ceil_div(size * size, 256), self.grid.count, spec.channels), (256, 1, 1),
                              (target, spec.channels, spec.height, spec.width, self.tops.ptr, self.lefts.ptr,
                               self.grid.rows, self.grid.cols, size, destination),
                              (None, _I, _I, _I, None, None, _I, _I, _I, None), self.stream)
        return destination

    def _copy(self, source: DeviceBuffer, destination: DeviceBuffer) -> None:
        driver, _ = bindings()
        check(driver.cuMemcpyDtoDAsync(destination.ptr, source.ptr, source.nbytes, self.stream.handle), "cuMemcpyDtoDAsync")

    def free(self) -> None:
        for buffer in [self.source, self.current, self.previous, self.output, *self.ring,
                       *( [self.tops, self.lefts, self.patch_output] if self.grid else [] )]:
            buffer.free()
        self.staging.free()
