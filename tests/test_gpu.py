"""GPU pieces: kernels compile here for every target; execution parity runs only where a GPU is."""
import numpy as np
import pytest

from occ.runtime.cuda.nvrtc import compile_source
from occ.runtime.preprocess.gpu import KERNEL_DIR, KERNELS

cuda_python = pytest.importorskip("cuda.bindings", reason="cuda-python is not installed (pip install 'occ[test]')")

ARCHES = ("sm_80", "sm_86", "sm_87", "sm_89", "sm_90")  # A100, RTX 30, Jetson Orin, RTX 40, H100/H200


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_kernel_compiles_for_every_target(name, arch, tmp_path, monkeypatch):
    monkeypatch.setenv("OCC_KERNEL_CACHE", str(tmp_path))
    cubin = compile_source(KERNEL_DIR / name, arch)
    assert cubin[:4] == b"\x7fELF" and len(cubin) > 1000
    for function in KERNELS[name]:
        assert function.encode() in cubin  # extern "C": the symbol keeps its plain name
    # the second call is served from the cache
    cached = list(tmp_path.iterdir())
    assert len(cached) == 1 and compile_source(KERNEL_DIR / name, arch) == cubin


def test_a_kernel_that_does_not_compile_names_its_file_and_the_error(tmp_path, monkeypatch):
    from occ.runtime.cuda import CudaError

    monkeypatch.setenv("OCC_KERNEL_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken.cu"
    broken.write_text('extern "C" __global__ void broken(float* x) { x[0] = undefined_name; }\n')
    with pytest.raises(CudaError, match=r"NVRTC could not compile broken\.cu for sm_87: .*undefined_name"):
        compile_source(broken, "sm_87")


def _gpu_context():
    from occ.runtime.cuda.driver import Context, CudaError, GpuUnavailable

    try:
        return Context()
    except (GpuUnavailable, CudaError) as exc:
        pytest.skip(f"no usable CUDA device here: {exc}")


def test_gpu_preprocessor_refuses_bad_settings_before_touching_a_gpu():
    from occ.runtime.preprocess.gpu import GpuPreprocessor
    from occ.runtime.manifest import InputSpec

    spec = InputSpec(height=64, width=96, channels=3, temporal="avid_triplet")
    with pytest.raises(ValueError, match="precision must be fp32 or fp16"):
        GpuPreprocessor(spec, (120, 180), precision="int8")
    with pytest.raises(ValueError, match="source_format must be one of"):
        GpuPreprocessor(spec, (120, 180), source_format="yuyv")
    with pytest.raises(ValueError, match="bilinear resizing only"):
        GpuPreprocessor(InputSpec(height=64, width=96, channels=1, interpolation="area"), (120, 180))
    with pytest.raises(ValueError, match="streams must be"):
        GpuPreprocessor(spec, (120, 180), streams=0)


@pytest.mark.parametrize("streams", [1, 3])
@pytest.mark.parametrize("source_format", ["bgr", "gray", "nv12"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("temporal,channels", [("avid_triplet", 3), ("frame_diff", 2), ("none", 1)])
def test_gpu_preprocessing_matches_the_numpy_reference(temporal, channels, precision, source_format, streams, rng):
    context = _gpu_context()
    from occ.runtime.preprocess.gpu import GpuPreprocessor
    from occ.runtime.manifest import InputSpec
    from occ.runtime.preprocess import FramePreprocessor, nv12_to_gray

    spec = InputSpec(height=64, width=96, channels=channels, temporal=temporal)
    gpu = GpuPreprocessor(spec, (120, 180), source_format=source_format, precision=precision, streams=streams, context=context)
    cpu = [FramePreprocessor(spec) for _ in range(streams)]
    # FP32: 1e-3 grey levels before normalization; FP16: half rounding of values in -1..1 (see runtime/preprocess/gpu.py)
    tolerance = 1e-3 / spec.norm_std if precision == "fp32" else 1e-3
    for step in range(8):
        if step == 6:  # a clip boundary: both forget their temporal context
            gpu.reset()
            for c in cpu:
                c.reset()
        shape = {"bgr": (streams, 120, 180, 3), "gray": (streams, 120, 180), "nv12": (streams, 180, 180)}[source_format]
        frames = rng.integers(0, 256, shape, dtype=np.uint8)
        gray = [nv12_to_gray(f, 120, 180) for f in frames] if source_format == "nv12" else list(frames)
        gpu.push(frames if streams > 1 else frames[0])
        want = np.stack([c.push(g) for c, g in zip(cpu, gray)])
        np.testing.assert_allclose(gpu.read_output().astype(np.float32), want, atol=tolerance, rtol=0)
    gpu.free()


def test_gpu_patch_batch_matches_the_reference_patches(rng):
    context = _gpu_context()
    from occ.runtime.preprocess.gpu import GpuPreprocessor
    from occ.runtime.manifest import InputSpec, PatchSpec
    from occ.runtime.preprocess import FramePreprocessor, PatchGrid

    spec = InputSpec(height=60, width=90, channels=2, temporal="frame_diff")
    patches = PatchSpec(size=20, stride=10)
    grid = PatchGrid.from_spec(patches, spec)
    gpu = GpuPreprocessor(spec, (120, 180), source_format="bgr", patches=patches, streams=2, context=context)
    cpu = [FramePreprocessor(spec) for _ in range(2)]
    for _ in range(3):
        frames = rng.integers(0, 256, (2, 120, 180, 3), dtype=np.uint8)
        gpu.push(frames)
        want = np.concatenate([grid.extract(c.push(f)) for c, f in zip(cpu, frames)])
        np.testing.assert_allclose(gpu.read_output(), want, atol=1e-3 / spec.norm_std, rtol=0)
    gpu.free()


def _ort_cuda():
    import onnxruntime

    if hasattr(onnxruntime, "preload_dlls"):
        onnxruntime.preload_dlls()
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime here has no CUDAExecutionProvider (pip install 'occ[gpu]')")


@pytest.mark.parametrize("model", ["alocc_onnx", "avid_onnx"])
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_gpu_pipeline_gives_the_cpu_detectors_results(model, cuda_graph, request, tiny_walkway):
    _gpu_context()
    _ort_cuda()
    from occ.runtime.detector import open_detector
    from occ.runtime.detector.gpu import GpuPipeline

    path = str(request.getfixturevalue(model))
    clip = tiny_walkway.test[0]
    reference = open_detector(path, "ort-cpu")
    pipeline = GpuPipeline(path, "ort-cuda", frame_size=clip.frames.shape[1:3], source_format="gray", cuda_graph=cuda_graph)
    for frame in clip.frames[:12]:
        want, got = reference.process(frame), pipeline.process(frame)[0]
        # FP32 on both sides; cuDNN and MLAS sum in different orders
        assert abs(want.score - got.score) <= 1e-3 * max(1.0, abs(want.score))
        if want.mask is not None:
            assert np.mean(want.mask != got.mask) <= 1e-3
    if model == "avid_onnx":  # α/ζ retuned on the running graph: an α above every residual empties the mask
        pipeline.set_thresholds(alpha=1e6)
        assert not any(r.mask.any() for r in pipeline.process(clip.frames[12]))
    pipeline.close()
    reference.close()


@pytest.mark.parametrize("source,target", [((240, 360), (120, 176)), ((240, 360), (256, 384)), ((120, 180), (64, 96)),
                                           ((240, 360), (120, 180)), ((48, 72), (48, 72)), ((31, 47), (64, 96))])
def test_resize_tables_reproduce_opencv_bilinear(source, target, rng):
    """The kernel's resize, done in numpy from the same tables, equals cv2.resize (the reference)."""
    import cv2

    from occ.runtime.preprocess.gpu import resize_taps

    image = rng.integers(0, 256, source).astype(np.float32)
    x_taps, x_weights = resize_taps(source[1], target[1], "x")
    y_taps, y_weights = resize_taps(source[0], target[0], "y")
    rows = image[:, x_taps[:, 0]] * (1 - x_weights) + image[:, x_taps[:, 1]] * x_weights
    got = rows[y_taps[:, 0]] * (1 - y_weights)[:, None] + rows[y_taps[:, 1]] * y_weights[:, None]
    want = cv2.resize(image, (target[1], target[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)  # float rounding order only
