"""cuda-python (``cuda.bindings``) helpers: one check for every status, small owning buffer types.

Every driver and NVRTC call goes through :func:`check`, which raises :class:`CudaError` naming the
call and the error. Buffers own their memory and free it once (``free()`` is idempotent, and they
work as context managers). Streams are passed explicitly to every copy and launch.

Device pointers from other stacks (pycuda ``DeviceAllocation``, CuPy ``ndarray``, PyTorch CUDA
tensors) are accepted wherever a pointer is: :func:`device_pointer` reads their address.
"""
from __future__ import annotations

import ctypes
from typing import Any

import numpy as np


class GpuUnavailable(RuntimeError):
    """cuda-python or a CUDA device is missing; the message says what to install."""


class CudaError(RuntimeError):
    """A CUDA driver or NVRTC call failed."""


def bindings() -> tuple[Any, Any]:
    """``(driver, nvrtc)`` modules of cuda-python (12.6+ layout, or the older ``cuda.cuda``)."""
    try:
        from cuda.bindings import driver, nvrtc
    except ImportError:
        try:
            from cuda import cuda as driver, nvrtc  # cuda-python < 12.6
        except ImportError:
            raise GpuUnavailable("cuda-python is not installed: pip install 'occ[gpu]' (or cuda-python nvidia-cuda-nvrtc)") from None
    return driver, nvrtc


def gpu_problem() -> str | None:
    """Why CUDA work cannot run on this machine (no cuda-python, no driver, no device), or None."""
    try:
        driver, _ = bindings()
        check(driver.cuInit(0), "cuInit")
        count = check(driver.cuDeviceGetCount(), "cuDeviceGetCount")
    except GpuUnavailable as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - cuda-python raises its own loader errors when libcuda is absent
        return f"no usable NVIDIA driver ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})".replace(": )", ")")
    return None if count else "no CUDA device"


def check(result: Any, call: str) -> Any:
    """Unwrap a cuda-python ``(status, *values)`` result or raise naming ``call`` and the error."""
    driver, nvrtc = bindings()
    status, *values = result if isinstance(result, tuple) else (result,)
    if isinstance(status, driver.CUresult):
        if status != driver.CUresult.CUDA_SUCCESS:
            _, name = driver.cuGetErrorName(status)
            raise CudaError(f"{call} failed: {name.decode() if isinstance(name, bytes) else status}")
    elif isinstance(status, nvrtc.nvrtcResult):
        if status != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            _, text = nvrtc.nvrtcGetErrorString(status)
            raise CudaError(f"{call} failed: {text.decode() if isinstance(text, bytes) else status}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def native_handle(handle: Any) -> int:
    """The C handle a cuda-python driver object wraps (a ``CUstream``, a ``CUevent``) as an int.

    cuda-python 12.9 added ``cuda.bindings.utils.get_cuda_native_handle`` and deprecated ``int()``
    on its driver types for this (NVIDIA/cuda-python#564, #773); older releases have only ``int()``.
    """
    if isinstance(handle, int):
        return handle
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(handle)
    return int(get_cuda_native_handle(handle))


def device_pointer(buffer: Any) -> int:
    """The device address of a buffer from occ, pycuda, CuPy or PyTorch, or of a plain int."""
    if isinstance(buffer, int):
        return buffer
    if hasattr(buffer, "ptr") and isinstance(getattr(buffer, "ptr"), int):  # occ DeviceBuffer
        return buffer.ptr
    if hasattr(buffer, "data_ptr"):  # torch.Tensor
        return int(buffer.data_ptr())
    if hasattr(buffer, "data") and hasattr(buffer.data, "ptr"):  # cupy.ndarray
        return int(buffer.data.ptr)
    if hasattr(buffer, "__cuda_array_interface__"):
        return int(buffer.__cuda_array_interface__["data"][0])
    try:
        return int(buffer)  # pycuda.driver.DeviceAllocation converts to its address
    except (TypeError, ValueError):
        raise TypeError(f"cannot read a device pointer from {type(buffer).__name__}") from None


class Context:
    """The device's primary context, made current on this thread."""

    def __init__(self, device: int = 0):
        driver, _ = bindings()
        try:
            check(driver.cuInit(0), "cuInit")
        except CudaError as exc:
            raise GpuUnavailable(f"CUDA driver present but unusable: {exc}") from None
        except Exception as exc:  # cuda-python raises its own loader errors when libcuda is absent
            raise GpuUnavailable(f"no NVIDIA driver here ({type(exc).__name__})") from None
        count = check(driver.cuDeviceGetCount(), "cuDeviceGetCount")
        if count == 0:
            raise GpuUnavailable("no CUDA device")
        self.device = check(driver.cuDeviceGet(device), "cuDeviceGet")
        self.context = check(driver.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        check(driver.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        attribute = driver.CUdevice_attribute
        major = check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.device), "cuDeviceGetAttribute")
        minor = check(driver.cuDeviceGetAttribute(attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.device), "cuDeviceGetAttribute")
        self.arch = f"sm_{major}{minor}"
        name = check(driver.cuDeviceGetName(256, self.device), "cuDeviceGetName")
        self.name = name.split(b"\0", 1)[0].decode()


class Stream:
    def __init__(self):
        driver, _ = bindings()
        self.handle = check(driver.cuStreamCreate(0), "cuStreamCreate")

    @property
    def ptr(self) -> int:
        return native_handle(self.handle)

    def synchronize(self) -> None:
        driver, _ = bindings()
        check(driver.cuStreamSynchronize(self.handle), "cuStreamSynchronize")

    def free(self) -> None:
        if self.handle is not None:
            driver, _ = bindings()
            check(driver.cuStreamDestroy(self.handle), "cuStreamDestroy")
            self.handle = None


class Event:
    def __init__(self):
        driver, _ = bindings()
        self.handle = check(driver.cuEventCreate(0), "cuEventCreate")

    def record(self, stream: Stream) -> None:
        driver, _ = bindings()
        check(driver.cuEventRecord(self.handle, stream.handle), "cuEventRecord")

    def elapsed_ms(self, start: "Event") -> float:
        driver, _ = bindings()
        check(driver.cuEventSynchronize(self.handle), "cuEventSynchronize")
        return float(check(driver.cuEventElapsedTime(start.handle, self.handle), "cuEventElapsedTime"))


class DeviceBuffer:
    """``nbytes`` of device memory, freed once."""

    def __init__(self, nbytes: int):
        driver, _ = bindings()
        self.nbytes = int(nbytes)
        self._handle = check(driver.cuMemAlloc(max(self.nbytes, 1)), f"cuMemAlloc({self.nbytes})")

    @property
    def ptr(self) -> int:
        return int(self._handle)  # a CUdeviceptr is the address itself (a value type, not a handle)

    def upload(self, array: np.ndarray, stream: Stream) -> None:
        driver, _ = bindings()
        if array.nbytes > self.nbytes:
            raise ValueError(f"{array.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        check(driver.cuMemcpyHtoDAsync(self._handle, array.ctypes.data, array.nbytes, stream.handle), "cuMemcpyHtoDAsync")

    def download(self, array: np.ndarray, stream: Stream) -> None:
        driver, _ = bindings()
        check(driver.cuMemcpyDtoHAsync(array.ctypes.data, self._handle, array.nbytes, stream.handle), "cuMemcpyDtoHAsync")

    def free(self) -> None:
        if self._handle is not None:
            driver, _ = bindings()
            check(driver.cuMemFree(self._handle), "cuMemFree")
            self._handle = None

    def __enter__(self) -> "DeviceBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.free()


class PinnedBuffer:
    """Page-locked host memory viewed as a numpy array (fast, truly asynchronous copies)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        driver, _ = bindings()
        self.nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self._ptr = check(driver.cuMemAllocHost(max(self.nbytes, 1)), f"cuMemAllocHost({self.nbytes})")
        raw = (ctypes.c_byte * self.nbytes).from_address(int(self._ptr))
        self.array = np.frombuffer(raw, dtype=dtype).reshape(shape)

    def free(self) -> None:
        if self._ptr is not None:
            driver, _ = bindings()
            self.array = None
            check(driver.cuMemFreeHost(self._ptr), "cuMemFreeHost")
            self._ptr = None
