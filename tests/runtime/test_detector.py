"""The runtime with the committed tiny models: streaming and clip scoring, site thresholds, occ run
and occ calibrate, ONNX Runtime's fixed and device-bound batches (moved from tests/test_runtime.py)."""
import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets.video import write_video
from occ.evaluation.protocols import score_clips
from occ.evaluation.report import report
from occ.runtime.detector import open_detector
from occ.runtime.scoring import location_stats, normalize_by_location, quantile_threshold

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def test_streaming_detector_equals_clip_scoring(alocc_onnx, avid_onnx, tiny_walkway):
    clip = tiny_walkway.test[0]
    for model in (alocc_onnx, avid_onnx):
        detector = open_detector(str(model))
        batch = detector.process_clip(clip.frames)
        detector.reset()
        stream = [detector.process(f) for f in clip.frames]
        np.testing.assert_allclose([r.score for r in stream], [r.score for r in batch], rtol=1e-5, atol=1e-5)
        assert [r.index for r in stream] == list(range(len(clip)))


def test_eval_report_has_all_labelled_variants(avid_onnx, tiny_walkway):
    detector = open_detector(str(avid_onnx), pixel_maps=True)
    result = report(score_clips(detector, tiny_walkway.test), smoothing=3)
    assert set(result.to_json()["frame_level"]) == {"raw"}  # what a camera runs; the variants that need the whole video apart
    assert set(result.frame_level_offline) == {"smoothed_3", "per_video_minmax", "per_video_minmax_smoothed_3"}
    assert 0.0 <= result.pixel_level.auc <= 1.0  # the walkway has pixel masks
    assert result.frames == sum(len(c) for c in tiny_walkway.test)


def test_site_thresholds_change_the_decisions_not_the_model(alocc_onnx, avid_onnx, tiny_walkway):
    """Overridden thresholds (the service's [thresholds]) go through the same scoring rule."""
    clip = tiny_walkway.test[0].frames[:12]
    alocc = open_detector(str(alocc_onnx))
    alocc.set_thresholds(tau=-1e9)
    for result in alocc.process_clip(clip):  # every patch over τ: one object covering the whole grid
        assert result.decision and result.mask.all() and result.boxes == [[0, 0, alocc.manifest.input.width, alocc.manifest.input.height]]
    avid = open_detector(str(avid_onnx))
    avid.set_thresholds(alpha=1e9)
    assert not any(r.decision or r.mask.any() for r in avid.process_clip(clip))
    with pytest.raises(ValueError, match="threshold name for avid is 'tau'"):
        avid.set_thresholds(tau=1.0)
    assert "site override" in avid.manifest.thresholds["alpha"].data


def test_occ_run_on_a_real_video_file(alocc_onnx, tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[0].frames)
    out, overlay = tmp_path / "scores.jsonl", tmp_path / "overlay.avi"
    result = invoke("run", alocc_onnx, "--source", video, "--out", out, "--overlay", overlay)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(tiny_walkway.test[0])
    assert {"frame", "score", "decision", "boxes", "location_scores"} <= set(lines[0])
    assert np.array(lines[0]["location_scores"]).shape == (3, 5)  # 48x72 frame, 16 px patches
    assert overlay.stat().st_size > 0


def test_calibration_hits_its_false_alarm_rate(rng):
    normal = rng.gamma(2.0, 1.0, size=20000)
    calibration, held_out = normal[:10000], normal[10000:]
    threshold = quantile_threshold(calibration, 0.01, data="synthetic normal scores")
    observed = float(np.mean(held_out > threshold.value))
    sampling_error = np.sqrt(0.01 * 0.99 / len(held_out))
    assert abs(observed - 0.01) < 4 * sampling_error
    assert threshold.n_samples == 10000 and threshold.target_false_alarm_rate == 0.01


def test_scene_aware_scoring_ignores_a_busy_region(rng):
    # A fixed camera where one location (index 3) always varies a lot (a tree in the wind).
    normal = rng.normal(0.0, 1.0, size=(2000, 8))
    normal[:, 3] = rng.normal(0.0, 6.0, size=2000)
    stats = location_stats(normal[:1000])
    test_normal = normal[1000:]
    anomalous = rng.normal(0.0, 1.0, size=(1000, 8))
    anomalous[:, 5] += 5.0  # a real anomaly at a quiet location
    from occ.evaluation.metrics import roc_auc

    labels = np.r_[np.zeros(1000), np.ones(1000)]
    plain = np.r_[test_normal.max(axis=1), anomalous.max(axis=1)]
    aware = np.r_[normalize_by_location(test_normal, stats).max(axis=1), normalize_by_location(anomalous, stats).max(axis=1)]
    assert roc_auc(labels, plain) < 0.8  # the busy location drowns the anomaly
    assert roc_auc(labels, aware) > 0.95


def test_calibrate_command_updates_the_embedded_manifest(alocc_onnx, tiny_walkway, tmp_path):
    from occ.runtime.manifest import read_manifest, write_manifest

    model = tmp_path / "m.onnx"
    shutil.copy(alocc_onnx, model)
    os.chmod(model, 0o644)
    # footage the model was not trained on (its training clips are refused): the frames of a test clip
    video = write_video(tmp_path / "normal.avi", tiny_walkway.test[0].frames)
    before = read_manifest(model).threshold("tau")
    # --split 0/0/100: the whole video is calibration footage (by default only its last 20 %)
    result = invoke("calibrate", model, "--data", video, "--false-alarm-rate", "0.2", "--split", "0/0/100", "--json", tmp_path / "calibration.json")
    assert result.exit_code == 0, result.output
    manifest = read_manifest(model)
    assert manifest.threshold("tau") != before
    assert manifest.thresholds["tau"].target_false_alarm_rate == 0.2 and manifest.thresholds["tau"].n_samples == len(tiny_walkway.test[0])
    assert manifest.threshold_history[-1]["value"] == before
    assert not (tmp_path / "m.onnx.json").exists() and model.stat().st_mode & 0o777 == 0o644  # mode kept
    report = json.loads((tmp_path / "calibration.json").read_text())
    assert report["thresholds"]["tau"]["value"] == manifest.threshold("tau")
    assert report["warnings"] == []  # 30 frames at 20 %: 6 beyond the threshold, enough
    again = invoke("calibrate", model, "--data", video, "--false-alarm-rate", "0.01", "--split", "0/0/100", "--quiet")
    assert again.exit_code == 0 and "warning: tau was set at 1.0% false alarms from only 30 normal frames" in again.output
    write_manifest(model, manifest)  # back to 20 % for the check below
    # the new threshold flags about 20 % of the calibration frames (as decoded from the video)
    from occ.evaluation.datasets import read_video

    detector = open_detector(str(model))
    flagged = np.mean([r.decision for r in detector.process_clip(np.stack(list(read_video(video))))])
    assert 0.1 <= flagged <= 0.3


def test_ort_fixed_dimensions_make_the_batch_static_and_outputs_follow(avid_onnx):
    from occ.runtime.backends import OrtBackend
    from occ.runtime.manifest import ManifestError, read_manifest

    manifest = read_manifest(avid_onnx)
    assert manifest.method == "avid"
    spec = manifest.input
    with OrtBackend(str(avid_onnx), fixed_dimensions={"batch": 3}) as backend:
        shapes = backend.device_outputs({"frames": (3, spec.channels, spec.height, spec.width)})
        assert shapes["score"] == ((3,), np.dtype(np.float32))
        assert shapes["mask"][0] == (3, spec.height, spec.width)
        frames = np.random.default_rng(0).uniform(-1, 1, (5, spec.channels, spec.height, spec.width)).astype(np.float32)
        thresholds = {name: np.array([manifest.threshold(name)], np.float32) for name in ("alpha", "zeta")}
        assert backend.batch_limits == (3, 3)
        assert backend.infer({"frames": frames[:3], **thresholds}, ["score"])["score"].shape == (3,)
        # the batch is fixed at 3: 2 frames run padded to 3, 5 as 3 + 2 padded; the results are the unfixed model's
        with OrtBackend(str(avid_onnx)) as free:
            for count in (2, 5):
                expected = free.infer({"frames": frames[:count], **thresholds}, ["score"])["score"]
                np.testing.assert_allclose(backend.infer({"frames": frames[:count], **thresholds}, ["score"])["score"], expected,
                                           rtol=1e-6)
    with pytest.raises(ManifestError, match="not an occ model"):
        read_manifest(__file__)


def test_a_manifest_that_disagrees_with_its_graph_is_refused_when_the_model_loads(avid_onnx, tmp_path):
    import onnx

    from occ.runtime.backends import BackendError, OrtBackend
    from occ.runtime.manifest import METADATA_KEY, read_manifest

    manifest = read_manifest(avid_onnx)
    manifest.input.height, manifest.input.width = 64, 96  # the graph takes 32x48
    manifest.regions.rows, manifest.regions.cols = 16, 24
    model = onnx.load(str(avid_onnx))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = manifest.to_json()
    onnx.save(model, str(tmp_path / "liar.onnx"))
    with pytest.raises(BackendError, match=r"input 'frames' is \[3, 32, 48\] per sample in the graph but the manifest says \[3, 64, 96\]"):
        OrtBackend(str(tmp_path / "liar.onnx")).activate()


def test_gpu_preprocessing_without_a_gpu_is_one_line_naming_the_problem(avid_onnx, tmp_path, tiny_walkway):
    from occ.runtime.cuda import Context, CudaError, GpuUnavailable

    try:
        Context()
        pytest.skip("a CUDA device is present here: the GPU path runs instead (tests/test_gpu.py)")
    except (GpuUnavailable, CudaError):
        pass
    from occ.evaluation.datasets import write_ucsd_layout

    clip = write_ucsd_layout(tiny_walkway, tmp_path / "walkway") / "Test" / "Test001"
    result = invoke("run", avid_onnx, "--source", clip, "--backend", "ort-cuda", "--preprocess", "gpu", "--out", tmp_path / "frames.jsonl")
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "preprocessing on the GPU needs an NVIDIA GPU" in lines[0]
    result = invoke("run", avid_onnx, "--source", clip, "--preprocess", "gpu", "--out", tmp_path / "frames.jsonl")
    assert result.exit_code == 2 and "backend ort-cpu cannot run on device buffers" in result.output


def test_ort_device_binding_runs_in_place_and_alpha_zeta_are_bindable(avid_onnx):
    """The IOBinding path the GPU pipeline uses, on the CPU provider (buffers given by address)."""
    from occ.runtime.backends import OrtBackend

    with OrtBackend(str(avid_onnx), fixed_dimensions={"batch": 2}) as backend:
        spec = backend.manifest.input
        frames = np.random.default_rng(0).normal(size=(2, spec.channels, spec.height, spec.width)).astype(np.float32)
        alpha = np.array([backend.manifest.threshold("alpha")], np.float32)
        zeta = np.array([backend.manifest.threshold("zeta")], np.float32)
        shapes = backend.device_outputs({"frames": frames.shape})
        outputs = {name: np.full(shape, 7, dtype) for name, (shape, dtype) in shapes.items()}
        inputs = {"frames": frames, "alpha": alpha, "zeta": zeta}
        backend.bind_device({k: (v.ctypes.data, v.shape, v.dtype) for k, v in inputs.items()},
                            {k: (v.ctypes.data, v.shape, v.dtype) for k, v in outputs.items()}, None)
        backend.run_device()
        want = backend.infer(inputs)
        for name in shapes:
            np.testing.assert_array_equal(outputs[name], want[name])
        alpha[0] = 1e6  # rewritten in place: the next run sees it without rebinding
        backend.run_device()
        assert not outputs["mask"].any()
