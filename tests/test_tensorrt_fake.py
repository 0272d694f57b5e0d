"""The TensorRT paths (builder, ``occ engine attach``, the backend, the GPU pipeline's TensorRT branch)
driven through tests/fakes/tensorrt, a recording fake of the documented TensorRT Python API.

The fake checks calls, never results: whether a version-compatible runtime allows host code before
deserializing, whether ``set_input_shape``'s answer is read, which names reach TensorRT. Numerics
stay with the real parity tests (tests/test_export.py, tests/test_edge.py), skipped where TensorRT
is missing. Needs no TensorRT and no GPU; what needs CUDA memory (the backend's host path, the
GPU pipeline's buffers) is left to benchmarks/tensorrt_check.py on a machine with both.
"""
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.export.engine import BuildOptions, EngineBuildError, attach_engine, build_engine, dla_problem, output_type
from occ.runtime.backends.base import BackendError
from occ.runtime.backends.tensorrt import TensorRTBackend, compatibility_problem
from occ.runtime.detector.gpu import threshold_arrays
from occ.runtime.manifest import read_manifest

FAKE = Path(__file__).parent / "fakes" / "tensorrt" / "__init__.py"
runner = CliRunner()


@pytest.fixture
def trt(monkeypatch):
    """The fake as ``tensorrt``, for this test only."""
    spec = importlib.util.spec_from_file_location("tensorrt", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    module.configure("10.3.0.30")
    return module


@pytest.fixture
def avid(avid_onnx, tmp_path):
    return Path(shutil.copy(avid_onnx, tmp_path / "avid.onnx"))


def calls(trt, name):
    return [call[1:] for call in trt.calls if call[0] == name]


def io(name, mode, dtype, shape, profile=None):
    return {"name": name, "mode": mode, "dtype": dtype, "shape": list(shape), "profile": profile}


NUMPY_TO_TRT = {"float32": "FLOAT", "float16": "HALF", "bool": "BOOL", "int32": "INT32", "int8": "INT8"}


def avid_plan(trt, onnx_path, frames_dtype="FLOAT", threshold_dtype="FLOAT", outputs=None, thresholds=True, **plan):
    """An AVID plan as trtexec builds it from ``onnx_path``: the batch in a profile, α and ζ inputs
    (``thresholds=False``: without them), the graph's outputs."""
    import onnx

    from occ.export.engine import onnx_tensors

    graph = onnx_tensors(onnx.load(str(onnx_path)))
    frames = next(t for t in graph if t.name == "frames")
    sample = frames.shape[1:]
    tensors = [io("frames", "input", frames_dtype, (-1, *sample), [(b, *sample) for b in (1, 2, 4)])]
    if thresholds:
        tensors += [io("alpha", "input", threshold_dtype, (1,)), io("zeta", "input", threshold_dtype, (1,))]
    tensors += outputs or [io(t.name, "output", NUMPY_TO_TRT[t.dtype], t.shape) for t in graph if t.mode == "output"]
    return trt.make_plan(tensors, **plan)


def test_fp16_build_on_tensorrt_10_pins_fp32_islands_and_keeps_thresholds_as_inputs(trt, avid):
    engine = build_engine(avid, options=BuildOptions(batch=(1, 2, 4)))
    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert calls(trt, "parse") == [(["frames", "alpha", "zeta"],)]  # α and ζ are plain inputs, retunable per batch
    assert calls(trt, "build_serialized_network") == [(["FP16", "OBEY_PRECISION_CONSTRAINTS"],)]
    spec = read_manifest(avid).input
    assert calls(trt, "set_shape") == [("frames", tuple((b, spec.channels, spec.height, spec.width) for b in (1, 2, 4)))]
    assert calls(trt, "set_output_type")  # some layer outside the bodies was pinned to FP32
    assert sidecar["tensorrt_version"] == "10.3.0.30" and sidecar["version_compatible"] is False
    assert sidecar["rebuild"].startswith(f"occ export {avid} --engine --batch 1,2,4")


def test_failed_build_writes_nothing(trt, avid):
    trt.configure("10.3.0.30", build_fails=True)
    with pytest.raises(EngineBuildError, match="TensorRT build failed"):
        build_engine(avid, options=BuildOptions(batch=(1, 2, 4)))
    assert not avid.with_suffix(".engine").exists()


def test_version_compatible_engines_load_with_host_code_allowed(trt, avid):
    """Item 1: the build read its plan back with a runtime that did not allow host code (None, then
    AttributeError); the backend refused every such engine."""
    engine = build_engine(avid, options=BuildOptions(batch=(1, 2, 4), version_compatible=True))
    assert calls(trt, "deserialize_cuda_engine") == [(True, -1)]
    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert sidecar["version_compatible"] and sidecar["rebuild"].endswith("--version-compatible")
    trt.configure("10.7.0.23")  # a later TensorRT 10: a version-compatible engine runs there
    backend = TensorRTBackend(str(engine))
    backend.open_engine(trt, gpu=None)
    assert calls(trt, "deserialize_cuda_engine") == [(True, -1)]
    # attach: trtexec --versionCompatible engines say so
    plan = avid.with_name("vc.engine")
    plan.write_bytes(avid_plan(trt, avid, version_compatible=True))
    result = runner.invoke(app, ["engine", "attach", str(plan), "--onnx", str(avid)])
    assert result.exit_code == 2 and "--version-compatible" in result.output and not plan.with_name("vc.engine.json").exists()
    result = runner.invoke(app, ["engine", "attach", str(plan), "--onnx", str(avid), "--version-compatible"])
    assert result.exit_code == 0, result.output
    assert json.loads(plan.with_name("vc.engine.json").read_text())["version_compatible"] is True


def test_dla_builds_need_a_fixed_batch_a_tensorrt_with_dla_and_a_core(trt, avid, tmp_path):
    """Item 3: a dynamic profile, a TensorRT without DLA and a device without the core are refused."""
    result = runner.invoke(app, ["export", str(avid), "--engine", "--dla-core", "0"])
    assert result.exit_code == 2 and "--dla-core needs a fixed batch" in result.output.strip().splitlines()[-1]
    assert dla_problem("10.8.0", (1, 1, 1)) and dla_problem("11.2.0", (1, 1, 1)) and dla_problem("10.3.0", (1, 1, 1)) is None
    trt.configure("10.8.0.40", dla_cores=2)
    with pytest.raises(EngineBuildError, match="TensorRT 10.8.0.40 has no DLA"):
        build_engine(avid, options=BuildOptions(batch=(1, 1, 1), dla_core=0))
    trt.configure("10.3.0.30", dla_cores=0)
    with pytest.raises(EngineBuildError, match="this device has no DLA core"):
        build_engine(avid, options=BuildOptions(batch=(1, 1, 1), dla_core=0))
    trt.configure("10.3.0.30", dla_cores=2)
    engine = build_engine(avid, options=BuildOptions(batch=(1, 1, 1), dla_core=1))
    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    assert sidecar["dla_core"] == 1 and sidecar["dla"]["gpu_fallback_layers"]  # the FP32 islands fall back, named
    trt.calls.clear()
    TensorRTBackend(str(engine)).open_engine(trt, gpu=None)
    assert calls(trt, "deserialize_cuda_engine") == [(False, 1)]  # the runtime's DLA core comes from the sidecar


def test_attached_fp16_thresholds_are_fed_in_the_engines_dtype(trt, avid, tmp_path):
    """Item 7: α and ζ were uploaded as float32 whatever the engine took."""
    manifest = read_manifest(avid)
    plan = tmp_path / "fp16.engine"
    plan.write_bytes(avid_plan(trt, avid, frames_dtype="HALF", threshold_dtype="HALF"))
    _, notes = attach_engine(plan, avid)
    assert any("input alpha is float16: the threshold" in note for note in notes)
    backend = TensorRTBackend(str(plan))
    backend.open_engine(trt, gpu=None)
    values = threshold_arrays(backend, backend.manifest)
    assert {name: value.dtype for name, value in values.items()} == {"alpha": np.float16, "zeta": np.float16}
    assert values["alpha"][0] == np.float16(manifest.threshold("alpha"))
    assert backend.input_dtype("frames") == np.float16


def test_inspector_types_of_tensorrt_10_and_11(trt, avid, tmp_path):
    """Item 8: TensorRT 11's inspector splits Format/Datatype; the sidecar's types were all None."""
    assert output_type({"Format/Datatype": "Row major linear FP32"}) == "Row major linear FP32"
    assert output_type({"Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}) == \
        "Row major linear FP32 format (kLINEAR) Float"
    trt.configure("11.4.0.10")
    plan = tmp_path / "t11.engine"
    plan.write_bytes(avid_plan(trt, avid, layers=["conv1", "sigmoid"]))
    attach_engine(plan, avid)
    layers = json.loads(plan.with_name("t11.engine.json").read_text())["layer_precisions"]
    assert [layer["name"] for layer in layers] == ["conv1", "sigmoid"] and all(None not in layer["output_types"] for layer in layers)


def test_compatibility_is_tensorrts_rule_and_the_refusal_prints_the_rebuild(trt, avid):
    """Item 10: occ accepted other patch versions; TensorRT runs an engine only on the version that
    built it unless it was built version-compatible."""
    orin = {"name": "Orin", "compute_capability": "sm_87"}
    sidecar = {"tensorrt_version": "10.3.0.30", "gpu": orin, "version_compatible": False, "rebuild": "occ export m.onnx --engine --batch 1,8,32"}
    assert compatibility_problem(sidecar, "10.3.0.30", orin) is None
    problem = compatibility_problem(sidecar, "10.3.1.4", orin)
    assert "TensorRT 10.3.0.30" in problem and problem.endswith("rebuild: occ export m.onnx --engine --batch 1,8,32")
    compatible = {**sidecar, "version_compatible": True}
    assert compatibility_problem(compatible, "10.7.0.23", orin) is None and compatibility_problem(compatible, "11.1.0", orin) is None
    assert "older" in compatibility_problem(compatible, "10.2.0", orin)
    assert compatibility_problem({**compatible, "tensorrt_version": "8.6.1"}, "11.0.0", orin)
    engine = build_engine(avid, options=BuildOptions(batch=(1, 2, 4)))
    trt.configure("10.3.1.4")
    with pytest.raises(BackendError, match=r"rebuild: occ export .*avid.onnx --engine --batch 1,2,4"):
        TensorRTBackend(str(engine)).open_engine(trt, gpu=None)


def test_input_shapes_are_checked_and_an_engine_without_threshold_inputs_is_refused(trt, avid, tmp_path):
    """Item 11: set_input_shape's False was ignored. An engine holding α and ζ as constants (attached
    from a model exported before occ 0.2) is refused, at attach and at open, in one line."""
    manifest = read_manifest(avid)
    spec = manifest.input
    sample = (spec.channels, spec.height, spec.width)
    folded = tmp_path / "folded.engine"
    folded.write_bytes(avid_plan(trt, avid, thresholds=False))
    with pytest.raises(EngineBuildError, match="the engine has no input 'alpha'; the engine has no input 'zeta'"):
        attach_engine(folded, avid)
    plan = tmp_path / "plain.engine"
    plan.write_bytes(avid_plan(trt, avid))
    sidecar_path, _ = attach_engine(plan, avid)
    old = json.loads(sidecar_path.read_text())
    folded.with_name(folded.name + ".json").write_text(json.dumps({**old, "fixed_inputs": ["alpha", "zeta"]}))
    with pytest.raises(BackendError, match=r"holds alpha, zeta as constants .*; rebuild: occ export") as info:
        TensorRTBackend(str(folded)).open_engine(trt, gpu=None)
    assert "\n" not in str(info.value)
    backend = TensorRTBackend(str(plan))
    backend.open_engine(trt, gpu=None)
    assert backend.batch_limits == (1, 4)
    trt.calls.clear()
    shapes = backend.device_outputs({"frames": (2, *sample), "alpha": (1,), "zeta": (1,)})
    assert calls(trt, "set_input_shape") == [("frames", (2, *sample)), ("alpha", (1,)), ("zeta", (1,))]
    assert shapes["score"] == ((2,), np.float32) and shapes["mask"] == ((2, spec.height, spec.width), np.bool_)
    with pytest.raises(BackendError, match=r"TensorRT refused shape \[8, .*\] for input 'frames'"):
        backend.device_outputs({"frames": (8, *sample)})
    with pytest.raises(BackendError, match=r"\['beta'\] are not inputs of this engine"):
        backend.device_outputs({"frames": (2, *sample), "beta": (1,)})


def test_the_gpu_pipelines_tensorrt_branch_binds_and_runs_on_the_callers_stream(trt, avid, tmp_path):
    """What GpuPipeline asks of the TensorRT backend, with device addresses as plain ints (the CUDA
    buffers themselves need a GPU)."""
    manifest = read_manifest(avid)
    spec = manifest.input
    sample = (spec.channels, spec.height, spec.width)
    engine = build_engine(avid, options=BuildOptions(batch=(1, 2, 4)))
    backend = TensorRTBackend(str(engine))
    backend.open_engine(trt, gpu=None)
    values = threshold_arrays(backend, manifest)
    assert {name: value.dtype for name, value in values.items()} == {"alpha": np.float32, "zeta": np.float32}
    inputs = {"frames": (4096, (2, *sample), np.float32), "alpha": (8192, (1,), np.float32), "zeta": (8196, (1,), np.float32)}
    shapes = backend.device_outputs({name: shape for name, (_, shape, _) in inputs.items()})
    outputs = {name: (16384 + 1024 * i, *shapes[name]) for i, name in enumerate(shapes)}
    trt.calls.clear()

    class Stream:
        ptr = 0x5000

    backend.bind_device(inputs, outputs, Stream())
    backend.run_device()
    assert {name for name, _ in calls(trt, "set_tensor_address")} == {"frames", "alpha", "zeta", *shapes}
    assert calls(trt, "execute_async_v3") == [(0x5000,)]
    with pytest.raises(BackendError, match=r"needs device buffers for inputs \['zeta'\]"):
        backend.bind_device({k: v for k, v in inputs.items() if k != "zeta"}, outputs, Stream())


def test_bf16_and_fp8_engine_io_is_refused_in_one_line(trt, avid, tmp_path):
    """Item 12: tensorrt.nptype raises TypeError for BF16/FP8; attach let it through as a traceback."""
    manifest = read_manifest(avid)
    spec = manifest.input
    for dtype in ("BF16", "FP8"):
        plan = tmp_path / f"{dtype}.engine"
        plan.write_bytes(avid_plan(trt, avid, outputs=[io("score", "output", dtype, (-1,)),
                                                           io("mask", "output", "BOOL", (-1, spec.height, spec.width)),
                                                           io("region_anomaly", "output", "FLOAT", (-1, 1, 1))]))
        result = runner.invoke(app, ["engine", "attach", str(plan), "--onnx", str(avid)])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert f"tensor 'score' is {dtype}, which numpy cannot hold" in result.output
        assert not plan.with_name(plan.name + ".json").exists()


def test_stream_and_buffer_addresses_come_from_the_native_handle():
    """Item 12: int(CUstream) is deprecated in cuda-python 12.9+; the handle is read with
    cuda.bindings.utils.get_cuda_native_handle where it exists."""
    import warnings

    driver = pytest.importorskip("cuda.bindings.driver")
    from occ.runtime.cuda.driver import DeviceBuffer, Stream, native_handle

    stream, buffer = Stream.__new__(Stream), DeviceBuffer.__new__(DeviceBuffer)
    stream.handle, buffer._handle = driver.CUstream(0x1234), driver.CUdeviceptr(0x8000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert stream.ptr == 0x1234 and buffer.ptr == 0x8000 and native_handle(77) == 77
        assert native_handle(driver.CUevent(0x99)) == 0x99


def test_the_tensorrt_check_runs_every_step_in_order_into_one_json(trt, alocc_onnx, avid_onnx, tmp_path):
    """benchmarks/tensorrt_check.py with the fake: every step runs in order and lands in one JSON,
    a step that needs what is missing here (a GPU, trtexec) recording why instead of stopping the rest."""
    from occ.benchmarks.tensorrt_check import run

    out = tmp_path / "check.json"
    run(alocc_onnx, avid_onnx, tmp_path / "work", out)
    report = json.loads(out.read_text())
    steps = ["engines_alocc_fp16", "engines_alocc_int8", "engines_avid_fp16", "engines_avid_int8", "version_compatible",
             "attach_fp16_io", "inspector_keys", "int8_convtranspose"]
    assert list(report["seconds"]) == steps and report["tensorrt"] == "10.3.0.30"
    assert report["inspector_keys"]["output_keys"] == ["Format/Datatype", "Name"]
    layers = report["int8_convtranspose"]["layers"]
    assert layers and all(layer["name"].endswith("ConvTranspose") for layer in layers)
    for name in ("avid.fp16.engine", "avid.int8.engine", "avid.vc.engine", "alocc.int8.engine"):
        assert (tmp_path / "work" / name).is_file() and (tmp_path / "work" / f"{name}.json").is_file()
