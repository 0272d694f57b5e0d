"""cuda-python plumbing shared by the GPU preprocessing, the GPU detector and the TensorRT backend:
one status check, owning buffers and streams, NVRTC compilation. Needs ``occ[gpu]``; never torch."""
from .driver import (Context, CudaError, DeviceBuffer, Event, GpuUnavailable, PinnedBuffer, Stream, bindings, check,
                     device_pointer)

__all__ = ["Context", "CudaError", "DeviceBuffer", "Event", "GpuUnavailable", "PinnedBuffer", "Stream", "bindings", "check",
           "device_pointer"]
