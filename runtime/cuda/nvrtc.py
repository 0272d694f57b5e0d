"""NVRTC compilation of CUDA kernels, cached per architecture, and their launches.

Compilation needs no GPU (tests compile every kernel for Jetson Orin, sm_87, and desktop GPUs,
sm_80 to sm_90); loading a module and launching needs one.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

from .driver import CudaError, bindings, check

OPTIONS = (b"--std=c++17", b"-default-device")


def cache_dir() -> Path:
    root = os.environ.get("OCC_KERNEL_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "occ", "kernels")
    return Path(root)


def compile_source(path: str | Path, arch: str) -> bytes:
    """CUBIN of one ``.cu`` file for ``arch`` (e.g. ``sm_87``), from the cache when present."""
    path = Path(path)
    name = path.name
    source = path.read_bytes()
    _, nvrtc = bindings()
    version = check(nvrtc.nvrtcVersion(), "nvrtcVersion")
    key = hashlib.sha256(source + b"\0".join(OPTIONS) + str(version).encode() + arch.encode()).hexdigest()[:24]
    cached = cache_dir() / f"{Path(name).stem}-{arch}-{key}.cubin"
    if cached.is_file():
        return cached.read_bytes()
    program = check(nvrtc.nvrtcCreateProgram(source, name.encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        options = [*OPTIONS, f"--gpu-architecture={arch}".encode()]
        status = nvrtc.nvrtcCompileProgram(program, len(options), options)
        if status[0] != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            size = check(nvrtc.nvrtcGetProgramLogSize(program), "nvrtcGetProgramLogSize")
            log = b" " * size
            check(nvrtc.nvrtcGetProgramLog(program, log), "nvrtcGetProgramLog")
            raise CudaError(f"NVRTC could not compile {name} for {arch}: {log.decode(errors='replace').strip()[:500]}")
        size = check(nvrtc.nvrtcGetCUBINSize(program), "nvrtcGetCUBINSize")
        cubin = b" " * size
        check(nvrtc.nvrtcGetCUBIN(program, cubin), "nvrtcGetCUBIN")
    finally:
        check(nvrtc.nvrtcDestroyProgram(program), "nvrtcDestroyProgram")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(cubin)
        os.replace(tmp, cached)
    except OSError:
        pass  # a read-only cache only costs a recompilation next time
    return cubin


class KernelModule:
    """The ``functions`` of one ``.cu`` file loaded into the current context (needs a GPU)."""

    def __init__(self, path: str | Path, functions: tuple[str, ...], arch: str):
        driver, _ = bindings()
        self.name = Path(path).name
        self.module = check(driver.cuModuleLoadData(compile_source(path, arch)), f"cuModuleLoadData({self.name})")
        self.functions = {fn: check(driver.cuModuleGetFunction(self.module, fn.encode()), f"cuModuleGetFunction({fn})")
                          for fn in functions}

    def prepare(self, function: str, types: tuple) -> "PreparedLaunch":
        """Argument storage for repeated launches of ``function`` (see :class:`PreparedLaunch`)."""
        return PreparedLaunch(self.functions[function], function, types)

    def launch(self, function: str, grid: tuple[int, int, int], block: tuple[int, int, int], args: tuple, types: tuple, stream) -> None:
        """Launch on ``stream``; ``types`` holds a ctypes type per argument (``c_void_p`` for device pointers)."""
        driver, _ = bindings()
        check(driver.cuLaunchKernel(self.functions[function], *grid, *block, 0, stream.handle, (args, types), 0),
              f"cuLaunchKernel({function})")


class PreparedLaunch:
    """A kernel's arguments kept in ctypes storage across launches: a per-frame launch only rewrites
    the values that change, instead of packing every argument again (the Python-side cost of a
    launch is what bounds small batches)."""

    def __init__(self, function, name: str, types: tuple):
        self.function, self.name = function, name
        self.values = [t() for t in types]
        self._pointers = (ctypes.c_void_p * len(types))(*[ctypes.addressof(v) for v in self.values])
        self._address = ctypes.addressof(self._pointers)

    def set(self, *values) -> "PreparedLaunch":
        for slot, value in zip(self.values, values):
            slot.value = value
        return self

    def __setitem__(self, index: int, value) -> None:
        self.values[index].value = value

    def launch(self, grid: tuple[int, int, int], block: tuple[int, int, int], stream) -> None:
        driver, _ = bindings()
        check(driver.cuLaunchKernel(self.function, *grid, *block, 0, stream.handle, self._address, 0),
              f"cuLaunchKernel({self.name})")


def ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b
