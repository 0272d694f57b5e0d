"""The edge path: INT8 Q/DQ export, engine builds from the ONNX (what runs without TensorRT), engines
built elsewhere (the binding check), batches cut to what a model takes, and Python 3.10."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets import write_ucsd_layout
from occ.export.engine import (BuildOptions, EngineBuildError, TensorInfo, binding_problems, engine_source, frames_profile,
                               onnx_tensors, profile_shapes, rebuild_command)
from occ.export.int8 import INT8_AGREEMENT, boundary_convolutions, export_int8
from occ.export.verify import ExportError
from occ.runtime.backends import OrtBackend
from occ.runtime.backends.base import batch_chunks
from occ.runtime.detector import open_detector
from occ.runtime.detector.cpu import Detector
from occ.runtime.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
HAS_TENSORRT = __import__("importlib").util.find_spec("tensorrt") is not None
runner = CliRunner()


@pytest.fixture(scope="module")
def walkway_folder(tiny_walkway, tmp_path_factory):
    return write_ucsd_layout(tiny_walkway, tmp_path_factory.mktemp("data") / "walkway")


@pytest.fixture(scope="module")
def int8_models(alocc_onnx, avid_onnx, walkway_folder, tmp_path_factory):
    """Both models with their INT8 siblings, in a folder of their own."""
    folder = tmp_path_factory.mktemp("int8")
    results = {}
    for model in (alocc_onnx, avid_onnx):
        copy = Path(shutil.copy(model, folder / model.name))
        results[copy.stem] = (copy, export_int8(copy, str(walkway_folder), calib_frames=40))
    return results


def test_int8_export_is_qdq_with_fp32_islands_and_agrees(int8_models, tiny_walkway):
    for name, (fp32, result) in int8_models.items():
        assert result.path == fp32.with_name(f"{fp32.stem}.int8.onnx") and result.path.is_file()
        assert all(result.decisions) and all(d.required == INT8_AGREEMENT for d in result.decisions)
        model = onnx.load(str(result.path))
        onnx.checker.check_model(model, full_check=True)
        nodes = model.graph.node
        # symmetric INT8 (zero point 0, TensorRT's only INT8) on the inputs of convolutions only
        scales = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
        for node in nodes:
            if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
                zero_point = scales[node.input[2]]
                assert zero_point.dtype == np.int8 and not zero_point.any()
        dequantized = {n.output[0] for n in nodes if n.op_type == "DequantizeLinear"}
        readers = {n.op_type for n in nodes if any(i in dequantized for i in n.input)}
        assert readers <= {"Conv", "ConvTranspose"}, readers  # the residual reads the float input, not a rounded one
        weights_per_channel = [n for n in nodes if n.op_type == "DequantizeLinear" and scales.get(n.input[1], np.zeros(1)).size > 1]
        assert weights_per_channel, "weights are quantized per output channel"
        # the convolutions whose output leaves the body (logits, last R/I layer) stay float
        convs = [n for n in nodes if n.op_type in ("Conv", "ConvTranspose")]
        floats = [n for n in convs if n.input[0] not in dequantized]
        assert floats and len(floats) < len(convs)
        assert {n.name for n in floats} == set(boundary_convolutions(model))
        manifest = read_manifest(result.path)
        assert manifest.export["precision"] == "int8" and manifest.export["int8_convolutions"] == len(convs) - len(floats)
        assert manifest.export["calibration"]["frames"] == 40
        # the runtime runs it and decides like FP32 on every test frame
        a = [r for clip in tiny_walkway.test for r in open_detector(str(fp32)).process_clip(clip.frames)]
        b = [r for clip in tiny_walkway.test for r in open_detector(str(result.path)).process_clip(clip.frames)]
        assert np.mean([x.decision == y.decision for x, y in zip(a, b)]) >= INT8_AGREEMENT, name


def test_int8_off_budget_writes_nothing(avid_onnx, walkway_folder, tmp_path):
    model = Path(shutil.copy(avid_onnx, tmp_path / "m.onnx"))
    # calibrated on a single frame of another scene: the ranges are off, and an impossible budget
    # (more than all decisions) must fail with the report and leave no file
    with pytest.raises(ExportError, match="disagrees with FP32 beyond budget") as info:
        export_int8(model, str(walkway_folder), calib_frames=1, required=1.01)
    assert any(line.startswith("FAILED frame decisions") for line in info.value.report)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_int8_refuses_a_model_that_is_not_fp32(int8_models, walkway_folder):
    _, result = int8_models["avid"]
    with pytest.raises(ExportError, match="calibrated from the FP32 model"):
        export_int8(result.path, str(walkway_folder))


def test_export_options_are_checked_before_any_work(alocc_onnx, tmp_path):
    model = Path(shutil.copy(alocc_onnx, tmp_path / "m.onnx"))
    for args, message in ((["--int8"], "--int8 needs --calib-data"), (["--calib-data", "walkway"], "--calib-data goes with --int8"),
                          (["--int8", "--calib-data", str(tmp_path / "none")], "must be a data folder"),
                          (["--int8", "--calib-data", "walkway", "--calib-frames", "0"], "--calib-frames must be >= 1"),
                          (["--engine", "--batch", "8,1,32"], "--batch must be MIN,OPT,MAX")):
        result = runner.invoke(app, ["export", str(model), *args], env={"COLUMNS": "250"})
        assert result.exit_code == 2 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_engine_sources_profiles_and_threshold_inputs(int8_models, alocc_onnx, avid_onnx, tmp_path):
    alocc = Path(shutil.copy(alocc_onnx, tmp_path / "a.onnx"))
    assert engine_source(alocc, "fp16", strongly_typed=False) == alocc
    with pytest.raises(EngineBuildError, match="a.fp16.onnx; run occ-export --fp16"):
        engine_source(alocc, "fp16", strongly_typed=True)
    with pytest.raises(EngineBuildError, match="a.int8.onnx; run occ-export --int8"):
        engine_source(alocc, "int8", strongly_typed=True)
    fp32, quantized = int8_models["alocc"]
    assert engine_source(fp32, "int8", strongly_typed=True) == quantized.path
    # ALOCC's --batch counts frames: the patches profile holds whole frames (15 patches each here)
    manifest = read_manifest(alocc)
    per_frame = manifest.patches.count(manifest.input)
    assert per_frame == 15
    assert profile_shapes(manifest, (1, 2, 4)) == {"patches": ((15, 2, 16, 16), (30, 2, 16, 16), (60, 2, 16, 16))}
    assert profile_shapes(read_manifest(avid_onnx), (1, 8, 32))["frames"][2] == (32, 3, 32, 48)
    assert "--int8 --calib-data SPEC" in rebuild_command("m.onnx", BuildOptions(precision="int8"))
    # α and ζ are plain inputs without defaults, which TensorRT would freeze into the engine as
    # constants: engines take them per batch (retunable, as on ONNX Runtime)
    session = ort.InferenceSession(str(avid_onnx), providers=["CPUExecutionProvider"])
    assert {i.name for i in session.get_inputs()} == {"frames", "alpha", "zeta"}
    assert not session.get_overridable_initializers()
    with pytest.raises(Exception, match="alpha|zeta"):
        session.run(["score"], {"frames": np.zeros((2, 3, 32, 48), np.float32)})


def test_binding_check_against_the_onnx_graph(alocc_onnx, avid_onnx):
    graph = onnx_tensors(onnx.load(str(avid_onnx)))
    alpha_zeta = [t for t in graph if t.name in ("alpha", "zeta")]
    assert [t.shape for t in alpha_zeta] == [(1,), (1,)]
    # an engine that holds α and ζ as constants (from a model exported before occ 0.2) is refused
    problems, _ = binding_problems([t for t in graph if t.name != "zeta"], graph)
    assert "the engine has no input 'zeta'" in "; ".join(problems)
    frames = next(t for t in graph if t.name == "frames")
    assert frames.shape == (-1, 3, 32, 48) and frames.dtype == "float32"
    # an engine as trtexec builds it: the batch in a profile, an FP16 input format
    engine = [TensorInfo("frames", "input", "float16", (-1, 3, 32, 48), ((1, 3, 32, 48), (4, 3, 32, 48), (8, 3, 32, 48)))]
    engine += [t for t in graph if t.mode == "output" or t.name in ("alpha", "zeta")]
    problems, notes = binding_problems(engine, graph)
    assert problems == []
    assert any("float16 in the engine" in n for n in notes)
    assert frames_profile(read_manifest(avid_onnx), engine) == [1, 4, 8]
    # each kind of mismatch is named
    wrong = [TensorInfo("frames", "input", "float32", (-1, 3, 64, 96)), TensorInfo("alpha", "input", "int32", (1,)),
             *[TensorInfo(t.name if t.name != "score" else "logits", "output", t.dtype, t.shape) for t in graph if t.mode == "output"]]
    problems, _ = binding_problems(wrong, graph)
    text = "; ".join(problems)
    assert "input 'frames' has shape [-1, 3, 64, 96] in the engine but [-1, 3, 32, 48]" in text
    assert "input 'alpha' is int32 in the engine but float32" in text
    assert "the engine has no output 'score'" in text and "the engine's output 'logits' is not in the graph" in text
    assert "the engine has no input 'zeta'" in text
    alocc_graph = onnx_tensors(onnx.load(str(alocc_onnx)))
    patches = [TensorInfo("patches", "input", "float32", (-1, 2, 16, 16), ((15, 2, 16, 16), (60, 2, 16, 16), (120, 2, 16, 16)))]
    assert frames_profile(read_manifest(alocc_onnx), patches + [t for t in alocc_graph if t.mode == "output"]) == [1, 4, 8]


def test_engine_commands_without_tensorrt_write_nothing(alocc_onnx, tmp_path):
    model = Path(shutil.copy(alocc_onnx, tmp_path / "m.onnx"))
    plan = tmp_path / "m.engine"
    plan.write_bytes(b"a plan from trtexec")
    (tmp_path / "other.plan").write_bytes(b"x")
    result = runner.invoke(app, ["engine", "attach", str(tmp_path / "other.plan"), "--onnx", str(model)])
    assert result.exit_code == 2 and "by the .engine suffix" in result.output
    sidecar = tmp_path / "m.engine.json"
    sidecar.write_text('{"mine": true}')
    result = runner.invoke(app, ["engine", "attach", str(plan), "--onnx", str(model)])
    assert result.exit_code == 2 and "a sidecar already exists" in result.output
    assert sidecar.read_text() == '{"mine": true}'  # never replaced
    sidecar.unlink()
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (["engine", "attach", str(plan), "--onnx", str(model)], ["export", str(model), "--engine"]):
        result = runner.invoke(app, args, env={"COLUMNS": "250"})
        if HAS_TENSORRT:
            continue
        assert result.exit_code == 2 and "TensorRT is not installed" in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT is not installed here (NVIDIA's packages or JetPack provide it)")
def test_int8_engine_builds_and_agrees(int8_models, tiny_walkway):  # pragma: no cover - needs TensorRT + GPU
    from occ.export.engine import build_engine

    for fp32, _ in int8_models.values():
        engine = build_engine(fp32, options=BuildOptions(batch=(1, 2, 4), precision="int8"))
        assert json.loads(engine.with_name(engine.name + ".json").read_text())["precision"] == "int8"
        a = open_detector(str(fp32)).process_clip(tiny_walkway.test[0].frames)
        b = open_detector(str(engine), backend="tensorrt").process_clip(tiny_walkway.test[0].frames)
        assert np.mean([x.decision == y.decision for x, y in zip(a, b)]) >= INT8_AGREEMENT


def test_batches_are_cut_to_what_the_model_takes(alocc_onnx, avid_onnx, tiny_walkway):
    assert batch_chunks(345, 1, 256) == [(0, 256, 256), (256, 89, 89)]
    assert batch_chunks(345, 128, 128) == [(0, 128, 128), (128, 128, 128), (256, 89, 128)]
    assert batch_chunks(10, 16, 64) == [(0, 10, 16)]
    frames = tiny_walkway.test[0].frames
    for model, fixed in ((alocc_onnx, 7), (avid_onnx, 4)):  # an ALOCC frame is 15 patches: 7 + 7 + 1 padded to 7
        reference = Detector(OrtBackend(str(model))).process_clip(frames)
        backend = OrtBackend(str(model), fixed_dimensions={"batch": fixed})
        detector = Detector(backend)
        assert backend.batch_limits == (fixed, fixed)
        cut = detector.process_clip(frames)
        np.testing.assert_array_equal([r.score for r in cut], [r.score for r in reference])
        assert [r.decision for r in cut] == [r.decision for r in reference]
        streamed = [detector.process(frame) for frame in frames[:3]]  # one frame at a time too
        assert len(streamed) == 3


def test_sources_are_python_310_compatible(tmp_path):
    """JetPack 6 runs Python 3.10; no 3.10 interpreter is at hand, so the syntax and the standard
    library calls are checked statically (vermin) for everything a camera box or workstation runs."""
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    assert vermin, "vermin is part of the test extra"
    folders = [str(ROOT / name) for name in ("runtime", "evaluation", "export", "train", "benchmarks", "occ", "tests")]
    result = subprocess.run([vermin, "--no-tips", "--violations", "--target=3.10-", "--eval-annotations", "--backport", "typing",
                             *folders], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    # and the check can fail: a 3.11-only module is reported
    (tmp_path / "probe.py").write_text("import tomllib\n")
    probe = subprocess.run([vermin, "--no-tips", "--violations", "--target=3.10-", str(tmp_path / "probe.py")],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "tomllib" in probe.stdout
