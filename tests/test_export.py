import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from occ.export.onnx_export import ExportError, export_onnx
from occ.runtime.backends import BackendError, OrtBackend
from occ.runtime.manifest import METADATA_KEY, ManifestError
from occ.train.common import load_checkpoint
from occ.train.train_alocc import build_scorer
from occ.train.train_avid import build_graph


def test_alocc_export_parity_on_real_samples(alocc_checkpoint, tiny_walkway, tmp_path):
    result = export_onnx(alocc_checkpoint, tmp_path / "m.onnx")
    assert all(result.outputs) and all(result.decisions)
    assert [d.name for d in result.decisions] == ["frame decisions", "patch decisions at tau"]
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    assert any(p.key == METADATA_KEY for p in model.metadata_props)
    from occ import __version__

    assert (model.producer_name, model.producer_version) == ("occ", __version__)
    # Independent check: PyTorch vs ONNX Runtime on test frames with anomalies, batch of 37.
    checkpoint = load_checkpoint(alocc_checkpoint)
    scorer = build_scorer(checkpoint.architecture, checkpoint.state_dicts)
    from occ.runtime.preprocess import PatchGrid, preprocess_clip

    grid = PatchGrid.from_spec(checkpoint.manifest.patches, checkpoint.manifest.input)
    patches = grid.extract_clip(preprocess_clip(tiny_walkway.test[0].frames, checkpoint.manifest.input))
    flat = np.ascontiguousarray(patches.reshape(-1, *patches.shape[2:])[:37])
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["score", "reconstruction_error"]
    got = dict(zip(names, session.run(None, {"patches": flat})))
    with torch.no_grad():
        ref = scorer(torch.from_numpy(flat))
    np.testing.assert_allclose(got["score"], ref[0].numpy(), atol=1e-4)
    assert result.manifest.export["source_checkpoint_sha256"] == checkpoint.sha256


def test_failing_parity_leaves_no_file(alocc_checkpoint, tmp_path):
    out = tmp_path / "never.onnx"
    with pytest.raises(ExportError) as info:
        export_onnx(alocc_checkpoint, out, tolerance=0.0)  # float32 kernels differ in the last bits
    assert any(line.startswith("FAILED score") for line in info.value.report)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_avid_export_mask_parity_and_threshold_inputs(avid_checkpoint, tiny_walkway, tmp_path):
    result = export_onnx(avid_checkpoint, tmp_path / "v.onnx")
    assert result.extra["mask IoU"] == 1.0
    checkpoint = load_checkpoint(avid_checkpoint)
    graph = build_graph(checkpoint.architecture, checkpoint.state_dicts, checkpoint.manifest)
    from occ.runtime.preprocess import preprocess_clip

    frames = np.ascontiguousarray(preprocess_clip(tiny_walkway.test[0].frames, checkpoint.manifest.input)[10:20])
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    # α and ζ are plain inputs (no initializer defaults: ONNX Runtime lists them, TensorRT keeps them inputs)
    assert [i.name for i in session.get_inputs()] == ["frames", "alpha", "zeta"] and not session.get_overridable_initializers()
    alpha, zeta = checkpoint.manifest.threshold("alpha"), checkpoint.manifest.threshold("zeta")
    stored = {"alpha": np.array([alpha], np.float32), "zeta": np.array([zeta], np.float32)}
    default = session.run(["mask", "score"], {"frames": frames, **stored})
    with torch.no_grad():
        ref = graph(torch.from_numpy(frames), torch.tensor([alpha]), torch.tensor([zeta]))
    # Masks agree except, at most, pixels whose intersection value lies within float32 noise of 1.
    differ = default[0] != ref[1].numpy()
    assert np.all(np.abs(ref[4].numpy()[differ] - 1.0) < 1e-4)
    # retuned without re-export: lower alpha and a zeta near 1 give a larger mask, identical to PyTorch
    loose = {"alpha": np.array([alpha / 4], np.float32), "zeta": np.array([0.9999], np.float32)}
    low = session.run(["mask"], {"frames": frames, **loose})[0]
    with torch.no_grad():
        ref_low = graph(torch.from_numpy(frames), torch.from_numpy(loose["alpha"]), torch.from_numpy(loose["zeta"]))
    differ = low != ref_low[1].numpy()
    assert np.all(np.abs(ref_low[4].numpy()[differ] - 1.0) < 1e-4)
    assert low.sum() > default[0].sum()


def test_runtime_refuses_models_without_manifest(alocc_onnx, tmp_path):
    model = onnx.load(str(alocc_onnx))
    del model.metadata_props[:]
    stripped = tmp_path / "stripped.onnx"
    onnx.save(model, str(stripped))
    with pytest.raises(ManifestError, match="no occ manifest"):
        OrtBackend(str(stripped)).activate()
    with pytest.raises(BackendError, match="model file not found"):
        OrtBackend(str(tmp_path / "none.onnx")).activate()
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(BackendError, match="cannot load"):
        OrtBackend(str(tmp_path / "junk.onnx")).activate()


def test_fp16_export_keeps_fp32_islands_and_agrees(alocc_checkpoint, avid_checkpoint, tiny_walkway, tmp_path):
    from onnx import TensorProto

    from occ.export.fp16 import _SHAPE_OPS, FP16_OPS, export_fp16
    from occ.runtime.detector import open_detector

    for checkpoint in (alocc_checkpoint, avid_checkpoint):
        exported = export_onnx(checkpoint, tmp_path / f"{checkpoint.stem}.onnx")
        fp32 = exported.path
        result = export_fp16(fp32, samples=exported.samples)
        assert result.path.name == f"{checkpoint.stem}.fp16.onnx" and all(result.decisions)
        model = onnx.load(str(result.path))
        onnx.checker.check_model(model, full_check=True)
        # inputs and outputs keep FP32 (callers do not change); the bodies hold FP16 weights
        assert all(v.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.BOOL) for v in [*model.graph.input, *model.graph.output])
        assert any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer)
        # every compute op outside the convolutional bodies reads FP32 (types from ONNX inference)
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.value_info, *inferred.graph.input]}
        types.update({i.name: i.data_type for i in inferred.graph.initializer})
        for node in inferred.graph.node:
            if node.op_type not in FP16_OPS | _SHAPE_OPS | {"Cast"}:
                assert TensorProto.FLOAT16 not in [types.get(name) for name in node.input], f"{node.op_type} reads FP16"
        assert sum(t == TensorProto.FLOAT16 for t in types.values()) > 10
        assert result.manifest.export["precision"] == "fp16"
        # the runtime runs it and decides like the FP32 model on real frames
        a = open_detector(str(fp32)).process_clip(tiny_walkway.test[0].frames)
        b = open_detector(str(result.path)).process_clip(tiny_walkway.test[0].frames)
        agreement = np.mean([x.decision == y.decision for x, y in zip(a, b)])
        assert agreement >= 0.95


def test_decisions_at_the_threshold_are_ties_not_disagreements():
    from occ.export.verify import at_threshold, compare_decisions

    tau = 2.0
    reference = np.array([1.0, 1.995, 2.004, 3.0, 2.5])
    candidate = np.array([1.0, 2.001, 1.999, 3.0, 1.9])  # two flips at τ (0.25 % and 0.2 % off it), one far from it
    tied = at_threshold(reference, tau, 0.01)
    assert tied.tolist() == [False, True, True, False, False]
    strict = compare_decisions("frames", reference > tau, candidate > tau, 0.995)
    assert strict.agreement == 0.4 and strict.ties == 0 and not strict
    banded = compare_decisions("frames", reference > tau, candidate > tau, 0.995, tied)
    # the flip at 2.5 → 1.9 is 25 % off τ: still a disagreement, over the 3 frames counted
    assert banded.count == 3 and banded.ties == 2 and banded.agreement == 2 / 3 and not banded
    assert "2 at the threshold not counted" in banded.line()
    agreeing = compare_decisions("frames", reference[:4] > tau, candidate[:4] > tau, 0.995, tied[:4])
    assert agreeing and agreeing.count == 2


def test_a_region_at_the_gate_threshold_is_a_tie_not_a_disagreement(avid_checkpoint, tmp_path):
    """ζ is a quantile of calibration regions, so a verification frame can hold the region that set
    it; a last-bit difference then moves a whole block of the maps (seen on the demo's AVID)."""
    from occ.export.onnx_export import build_graph as export_graph
    from occ.export.onnx_export import verification_samples
    from occ.export.verify import GATE_TIE_BAND, frames_at_gate

    checkpoint = load_checkpoint(avid_checkpoint)
    zeta = 0.9
    regions = np.full((3, 2, 2), 0.5)
    regions[1, 0, 1] = 1 - zeta                            # exactly at the gate
    regions[2, 1, 0] = (1 - zeta) * (1 + 10 * GATE_TIE_BAND)  # near it, but outside the band
    checkpoint.manifest.thresholds["zeta"].value = zeta
    assert frames_at_gate(checkpoint.manifest, regions).tolist() == [False, True, False]

    # the real checkpoint with ζ put on one of its own verification frames' regions
    module = export_graph(checkpoint)[0]
    samples = verification_samples(checkpoint, None)
    alpha = torch.tensor([checkpoint.manifest.threshold("alpha")])
    with torch.no_grad():
        region_anomaly = module(torch.from_numpy(samples), alpha, torch.tensor([0.5]))[3].numpy()
    payload = torch.load(avid_checkpoint, weights_only=True)
    manifest = json.loads(payload["manifest"]) if isinstance(payload["manifest"], str) else payload["manifest"]
    manifest["thresholds"]["zeta"]["value"] = float(1 - np.float32(region_anomaly[2].max()))
    payload["manifest"] = json.dumps(manifest) if isinstance(payload["manifest"], str) else manifest
    torch.save(payload, tmp_path / "at_gate.pt")
    result = export_onnx(tmp_path / "at_gate.pt", tmp_path / "at_gate.onnx")
    assert result.extra["frames with a region at ζ, not compared"] >= 1
    assert result.extra["verified_on"] == f"{len(samples) - result.extra['frames with a region at ζ, not compared']} frames"


def test_engine_compatibility_rules_and_missing_tensorrt(alocc_onnx, tmp_path):
    from occ.export.engine import EngineBuildError, build_engine
    from occ.runtime.backends.tensorrt import TensorRTBackend, compatibility_problem

    sidecar = {"tensorrt_version": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "sm_87"},
               "version_compatible": False, "rebuild": "occ-export m.onnx --engine --batch 1,8,32"}
    assert compatibility_problem(sidecar, "10.3.0", {"name": "Orin", "compute_capability": "sm_87"}) is None
    assert "TensorRT 10.3.0" in compatibility_problem(sidecar, "10.3.1", {"name": "Orin", "compute_capability": "sm_87"})  # TensorRT's rule: exact
    problem = compatibility_problem(sidecar, "10.7.0", {"name": "Orin", "compute_capability": "sm_87"})
    assert "TensorRT 10.3.0" in problem and "occ-export m.onnx --engine" in problem
    assert "sm_90" in compatibility_problem(sidecar, "10.3.0", {"name": "H100", "compute_capability": "sm_90"})
    assert compatibility_problem({**sidecar, "version_compatible": True}, "10.7.0", None) is None
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(EngineBuildError, match="TensorRT is not installed"):
            build_engine(alocc_onnx, tmp_path / "m.engine")
        with pytest.raises(BackendError, match="TensorRT is not installed"):
            TensorRTBackend(str(tmp_path / "m.engine")).activate()
        assert not (tmp_path / "m.engine").exists()


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt") is None, reason="TensorRT is not installed here")
def test_tensorrt_engine_agrees_with_onnx_runtime(alocc_checkpoint, tmp_path):  # pragma: no cover - needs TensorRT + GPU
    from occ.export.engine import BuildOptions, build_engine
    from occ.export.fp16 import export_fp16
    from occ.runtime.detector import open_detector

    exported = export_onnx(alocc_checkpoint, tmp_path / "m.onnx")
    export_fp16(exported.path, samples=exported.samples)
    engine = build_engine(exported.path, options=BuildOptions(batch=(1, 64, 256)))
    frames = np.random.default_rng(0).integers(0, 256, (20, 48, 72), dtype=np.uint8)
    a = open_detector(str(exported.path)).process_clip(frames)
    b = open_detector(str(engine), backend="tensorrt").process_clip(frames)
    assert np.mean([x.decision == y.decision for x, y in zip(a, b)]) >= 0.995


@pytest.fixture(scope="module")
def glyph_grids():
    """3×3 grids of synthetic glyph digits (tests/mnist_files.py); glyph 3 is the irregularity."""
    from mnist_files import glyph_digits

    from occ.evaluation.datasets.irmnist import build_irmnist

    rng = np.random.default_rng(0)
    return build_irmnist(*glyph_digits(rng, 300), *glyph_digits(rng, 200), n_train=40, n_test=20, grid=3, seed=0)


@pytest.fixture(scope="module")
def memory_checkpoint(tmp_path_factory, glyph_grids):
    """A tiny single-image AVID model whose gate scores regions with a RegionMemory."""
    from occ.train.train_avid import avid_config, image_data, train_avid

    # the images recipe (aligned regions, no skips, a code) at a tiny size
    config = avid_config("images", height=48, width=48, base_width=4, epochs=1, batch_size=8, region_memory=120, code_channels=4,
                         residual_kernel=3)
    path = tmp_path_factory.mktemp("memory") / "memory.pt"
    import io

    from rich.console import Console

    train_avid(image_data(glyph_grids.train, config, "glyph grids"), config, path, Console(file=io.StringIO()))
    return path


def test_region_memory_model_exports_with_parity_retunes_and_finds_the_unseen_digit(memory_checkpoint, glyph_grids, tmp_path):
    from occ.evaluation.metrics import roc_auc
    from occ.export.fp16 import export_fp16
    from occ.runtime.preprocess import preprocess_clip
    from occ.train.avid import RegionMemory
    from occ.train.avid_blocks import EvidenceScore, SoftGate

    checkpoint = load_checkpoint(memory_checkpoint)
    graph = build_graph(checkpoint.architecture, checkpoint.state_dicts, checkpoint.manifest)
    # the graph is composed from the manifest's scoring contract
    scoring = checkpoint.manifest.scoring
    assert (scoring.region_scorer, scoring.gate, scoring.residual_weight, scoring.frame_score) == ("memory", "soft", 0.2, "evidence")
    assert isinstance(graph.detector, RegionMemory) and isinstance(graph.gate, SoftGate) and isinstance(graph.frame_score, EvidenceScore)
    # at most the asked-for bank, one row per distinct region; the level from held-out regions
    assert checkpoint.architecture["region_memory"] == len(graph.detector.bank) == 120
    assert float(graph.detector.level) > graph.detector.floor
    assert checkpoint.manifest.thresholds["alpha"].method.startswith("median")
    assert graph.detector.align and checkpoint.architecture["region_alignment"]

    result = export_onnx(memory_checkpoint, tmp_path / "m.onnx")
    assert result.extra["mask IoU"] == 1.0
    frames = np.ascontiguousarray(preprocess_clip(list(glyph_grids.test), checkpoint.manifest.input))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    names = ["score", "mask", "region_anomaly", "intersection"]
    alpha, zeta = checkpoint.manifest.threshold("alpha"), checkpoint.manifest.threshold("zeta")
    stored = {"alpha": np.array([alpha], np.float32), "zeta": np.array([zeta], np.float32)}
    for thresholds in (stored, {"alpha": np.array([alpha / 4], np.float32), "zeta": np.array([0.9999], np.float32)}):
        got = dict(zip(names, session.run(names, {"frames": frames, **thresholds})))
        with torch.no_grad():
            ref = graph(torch.from_numpy(frames), torch.from_numpy(thresholds["alpha"]), torch.from_numpy(thresholds["zeta"]))
        # fresh digits (none in the bank): distances well above the floor, float32 agreement
        np.testing.assert_allclose(got["region_anomaly"], ref[3].numpy(), atol=1e-4)
        np.testing.assert_allclose(got["score"], ref[0].numpy(), rtol=2e-5, atol=1e-4)  # loosened: sums in the 10^4s
        differ = got["mask"] != ref[1].numpy()
        assert np.all(np.abs(ref[4].numpy()[differ] - 1.0) < 1e-4)
    assert got["mask"].sum() > session.run(["mask"], {"frames": frames, **stored})[0].sum()  # retuned without re-export
    # the recipe's frame score: the blocks' evidence summed, as the runtime's numpy definition has it
    from occ.runtime.scoring import block_peaks, block_values, frame_scores

    assert "evidence" in checkpoint.manifest.thresholds["zeta"].method
    stored = dict(zip(["score", "residual", "region_anomaly"],
                      session.run(["score", "residual", "region_anomaly"], {"frames": frames, **stored})))
    values = block_values(block_peaks(stored["residual"], checkpoint.manifest.regions.cell), stored["region_anomaly"], alpha, zeta, scoring)
    np.testing.assert_allclose(stored["score"], frame_scores(values, scoring), rtol=1e-4, atol=1e-5)
    # the memory knows the normal glyphs: the unseen digit's cells rank first
    assert roc_auc(glyph_grids.test_cells.ravel(), got["region_anomaly"].ravel()) > 0.95
    # FP16: the bank's distances stay FP32, the decisions agree with FP32
    fp16 = export_fp16(result.path, samples=result.samples)
    assert all(fp16.decisions)
    # recalibrated on site by the rule its scoring contract names (the soft gate's)
    from occ.evaluation.calibration import thresholds_from_footage
    from occ.runtime.detector import open_detector

    normal = glyph_grids.test[~glyph_grids.test_labels]
    updated = thresholds_from_footage(open_detector(str(result.path)), [normal], 0.1, "normal glyph grids")
    assert updated.frames == len(normal) and updated.manifest.thresholds["alpha"].method.startswith("median")
    assert "frame score (evidence)" in updated.manifest.thresholds["zeta"].method


def test_region_memory_refuses_video_in_one_line(tmp_path, tiny_walkway):
    from occ.train.train_avid import avid_config, video_data

    config = avid_config("video", height=32, width=48, base_width=4, depth=2, epochs=1, region_memory=100, residual_weight=0.2)
    with pytest.raises(ValueError, match="the region memory is for single images"):
        video_data(tiny_walkway.train, config, "tiny walkway")
    assert not (tmp_path / "never.pt").exists()


def test_a_failed_verification_is_its_report_and_one_line(alocc_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from occ.cli import app

    out = tmp_path / "never.onnx"
    result = CliRunner().invoke(app, ["export", str(alocc_checkpoint), "--out", str(out), "--tolerance", "1e-12"],
                                env={"COLUMNS": "250"})  # float32 kernels differ in the last bits
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert any(line.startswith("FAILED score") for line in lines)
    assert lines[-1] == f"error: {alocc_checkpoint}: ONNX Runtime disagrees with PyTorch; nothing written"
    assert not out.exists()
