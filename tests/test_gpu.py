"""GPU pieces: kernels compile here for every target; execution parity runs only where a GPU is."""
import numpy as np
import pytest

from occ.runtime.gpu.compile import KERNELS, compile_source

cuda_python = pytest.importorskip("cuda.bindings", reason="cuda-python is not installed (pip install 'occ[test]')")

ARCHES = ("sm_80", "sm_86", "sm_87", "sm_89", "sm_90")  # A100, RTX 30, Jetson Orin, RTX 40, H100/H200


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_kernel_compiles_for_every_target(name, arch, tmp_path, monkeypatch):
    monkeypatch.setenv("OCC_KERNEL_CACHE", str(tmp_path))
    cubin = compile_source(name, arch)
    assert cubin[:4] == b"\x7fELF" and len(cubin) > 1000
    for function in KERNELS[name]:
        assert function.encode() in cubin  # extern "C": the symbol keeps its plain name
    # the second call is served from the cache
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and compile_source(name, arch) == cubin


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="unknown kernel file"):
        compile_source("nope.cu", "sm_87")


def _gpu_context():
    from occ.runtime.gpu.cuda import Context, CudaError, GpuUnavailable

    try:
        return Context()
    except (GpuUnavailable, CudaError) as exc:
        pytest.skip(f"no usable CUDA device here: {exc}")


@pytest.mark.parametrize("temporal,channels", [("avid_triplet", 3), ("frame_diff", 2), ("none", 1)])
def test_gpu_preprocessing_matches_the_numpy_reference(temporal, channels, rng):
    context = _gpu_context()
    from occ.runtime.gpu.cuda import PinnedBuffer
    from occ.runtime.gpu.preprocess import GpuPreprocessor
    from occ.runtime.manifest import InputSpec
    from occ.runtime.preprocess import FramePreprocessor

    spec = InputSpec(height=64, width=96, channels=channels, temporal=temporal)
    gpu = GpuPreprocessor(spec, (120, 180, 3), context=context)
    cpu = FramePreprocessor(spec)
    host = PinnedBuffer((channels, 64, 96), np.float32)
    for _ in range(7):
        frame = rng.integers(0, 256, (120, 180, 3), dtype=np.uint8)
        pointer = gpu.push(frame)
        from occ.runtime.gpu.cuda import bindings, check

        driver, _ = bindings()
        check(driver.cuMemcpyDtoHAsync(host.array.ctypes.data, pointer, host.nbytes, gpu.stream.handle), "cuMemcpyDtoHAsync")
        gpu.stream.synchronize()
        # 1e-3 grey levels before normalization (see runtime/gpu/preprocess.py)
        np.testing.assert_allclose(host.array, cpu.push(frame), atol=1e-3 / spec.norm_std * 2)
    gpu.free()
    host.free()
