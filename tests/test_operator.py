"""What a person sees: plots, overlays, `occ inspect`, sample-size warnings, one CLI vocabulary."""
import hashlib
import json
import shutil

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.plots import DPI, FIGURE_SIZE, roc_figure, score_timeline_figure, write_png
from occ.evaluation.protocols import ClipScores
from occ.runtime.events.overlay import render_overlay
from occ.runtime.manifest import Threshold, read_manifest, write_manifest
from occ.runtime.scoring import FrameResult, sample_size_warning, threshold_warnings

WALKWAY = "walkway:height=48,width=72,train_clips=2,test_clips=3,frames_per_clip=30,seed=7"


def occ(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def png_size(path):
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable PNG"
    return image.shape[1], image.shape[0]


# ---- plots -----------------------------------------------------------------------------------------
def _clip():
    labels = np.zeros(60, bool)
    labels[20:35] = True
    labels[50:55] = True
    scores = np.where(labels, 2.0, 0.5) + np.random.default_rng(0).normal(0, 0.3, 60)
    return ClipScores("Test001", labels, scores, scores > 1.2)


def test_roc_figure_has_axes_auc_eer_and_the_operating_point(tmp_path):
    clip = _clip()
    figure = roc_figure(clip.labels, clip.scores, clip.decisions, "model on walkway")
    axes = figure.axes[0]
    assert axes.get_xlabel().startswith("false positive rate") and axes.get_ylabel().startswith("true positive rate")
    assert axes.get_title() == "model on walkway"
    assert len(axes.get_xticks()) >= 3 and len(axes.get_yticks()) >= 3
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert legend[0].startswith("ROC (AUC ") and any(t.startswith("equal error rate") for t in legend)
    fpr = clip.decisions[~clip.labels].mean()
    tpr = clip.decisions[clip.labels].mean()
    marker = [line for line in axes.get_lines() if line.get_label().startswith("stored threshold")][0]
    assert marker.get_xdata()[0] == pytest.approx(fpr) and marker.get_ydata()[0] == pytest.approx(tpr)
    path = write_png(figure, tmp_path / "roc.png")
    assert png_size(path) == (round(FIGURE_SIZE[1] * DPI), round(FIGURE_SIZE[1] * DPI))


def test_score_timeline_shades_the_labelled_ranges_and_draws_the_threshold(tmp_path):
    clip = _clip()
    figure = score_timeline_figure(clip, threshold=1.2)
    axes = figure.axes[0]
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("frame", "anomaly score", "Test001")
    spans = [patch for patch in axes.patches]  # axvspan → one rectangle per labelled range
    assert len(spans) == 2
    assert [round(p.get_x() + 0.5) for p in spans] == [20, 50]
    assert [round(p.get_width()) for p in spans] == [15, 5]
    threshold = [line for line in axes.get_lines() if line.get_label().startswith("threshold")][0]
    assert set(threshold.get_ydata()) == {1.2}
    assert png_size(write_png(figure, tmp_path / "t.png")) == (round(FIGURE_SIZE[0] * DPI), round(FIGURE_SIZE[1] * DPI))


def test_occ_eval_writes_the_plots(avid_onnx, tmp_path):
    result = occ("eval", avid_onnx, "--data", WALKWAY, "--plots", tmp_path / "plots", "--json", tmp_path / "r.json", "--quiet")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["roc.png", "scores_Test001.png", "scores_Test002.png", "scores_Test003.png"]
    assert json.loads((tmp_path / "r.json").read_text())["plots"][0].endswith("roc.png")
    assert png_size(tmp_path / "plots" / "roc.png")[0] == round(FIGURE_SIZE[1] * DPI)


def test_occ_eval_shows_false_alarms_per_hour_and_detection_delay(avid_onnx, tmp_path):
    result = CliRunner().invoke(app, ["eval", str(avid_onnx), "--data", WALKWAY, "--json", str(tmp_path / "r.json")],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    at = json.loads((tmp_path / "r.json").read_text())["at_stored_threshold"]
    false_alarms, delay = at["false_alarms_per_hour"], at["detection_delay"]
    assert false_alarms["fps"] == 10.0 and false_alarms["per_hour"] == pytest.approx(false_alarms["false_alarms"] / false_alarms["normal_hours"])
    assert delay["events"] == 3 and delay["detected"] + delay["missed"] == 3  # one anomalous episode per test clip
    assert "false alarms / h" in result.output and "delay (frames, median)" in result.output and "(10 frames/s)" in result.output
    assert f"{false_alarms['false_alarms']} in " in result.output and f"/{delay['events']} events caught" in result.output


def test_plots_refused_for_image_protocols_in_one_line(avid_onnx, tmp_path):
    result = occ("eval", avid_onnx, "--data", f"irmnist:{tmp_path}", "--plots", tmp_path / "p")
    assert result.exit_code == 2 and "plots are drawn for video data" in result.output
    assert len(result.output.strip().splitlines()) == 1


# ---- overlays --------------------------------------------------------------------------------------
def test_overlay_paints_only_flagged_pixels_and_shows_score_and_threshold(avid_onnx):
    manifest = read_manifest(avid_onnx)
    frame = np.full((64, 96), 100, np.uint8)
    normal = FrameResult(index=0, score=0.3, decision=False, location_scores=np.random.default_rng(0).random((4, 6)),
                         mask=np.zeros((32, 48), bool))
    image = render_overlay(frame, normal, manifest)
    legend = np.zeros(image.shape[:2], bool)
    legend[:20, :] = True  # the corner strip with the score
    assert (image[~legend] == 100).all(), "a normal frame gets no heat-map"
    assert (image[legend] != 100).any(), "the score and threshold are drawn in the corner"
    mask = np.zeros((32, 48), bool)
    mask[20:28, 30:40] = True
    flagged = FrameResult(index=0, score=1.7, decision=True, location_scores=np.random.default_rng(0).random((4, 6)),
                          mask=mask, boxes=[[60, 40, 80, 56]])
    image = render_overlay(frame, flagged, manifest)
    inside = cv2.resize(mask.astype(np.uint8), (96, 64), interpolation=cv2.INTER_NEAREST).astype(bool)
    outside = ~inside & ~legend
    outside[38:58, 58:82] = False  # the box and the contour
    assert (image[outside] == 100).all()
    assert (np.abs(image[inside].astype(int) - 100).sum(axis=1) > 0).mean() > 0.9
    assert (image[:20, :, 2] > 200).any(), "a flagged frame's score is red"


def test_alocc_flagged_patches_become_object_boxes(alocc_onnx, tiny_walkway):
    from occ.runtime.detector import open_detector

    detector = open_detector(str(alocc_onnx))
    tau = float(np.median([r.location_scores.max() for r in detector.process_clip(tiny_walkway.test[0].frames[:10])]))
    detector.set_thresholds(tau=tau)
    detector.reset()
    for result in detector.process_clip(tiny_walkway.test[0].frames[:10]):
        patches = int((result.location_scores > tau).sum())
        assert len(result.boxes) <= max(patches, 0)
        for x1, y1, x2, y2 in result.boxes:  # each box encloses flagged pixels and overlaps no other box
            assert result.mask[y1:y2, x1:x2].any()
        painted = np.zeros_like(result.mask)
        for x1, y1, x2, y2 in result.boxes:
            painted[y1:y2, x1:x2] = True
        assert (painted >= result.mask).all(), "every flagged pixel lies in a box"


# ---- occ inspect -----------------------------------------------------------------------------------
def _engine(onnx_path, folder):
    engine = folder / "model.engine"
    engine.write_bytes(b"serialized plan")
    sidecar = {"manifest": json.loads(read_manifest(onnx_path).to_json()), "tensorrt_version": "10.3.0",
               "gpu": {"name": "Orin", "compute_capability": "sm_87"}, "rebuild": "occ-export model.onnx --engine"}
    (folder / "model.engine.json").write_text(json.dumps(sidecar))
    return engine


def test_inspect_onnx_engine_and_checkpoint(avid_onnx, alocc_checkpoint, tmp_path):
    onnx = occ("inspect", avid_onnx, "--json", "-")
    assert onnx.exit_code == 0, onnx.output
    info = json.loads(onnx.stdout)
    assert info["method"] == "avid" and info["artifact"] == "ONNX model"
    assert info["sha256"] == hashlib.sha256(avid_onnx.read_bytes()).hexdigest()
    assert info["temporal_rule"]["name"] == "avid_triplet" and "I'(t-4)" in info["temporal_rule"]["stacks"]
    assert (info["input"]["height"], info["input"]["width"], info["input"]["channels"]) == (32, 48, 3)
    assert set(info["thresholds"]) == {"alpha", "zeta"} and info["thresholds"]["alpha"]["n_samples"] > 0
    backends = {row["backend"]: row for row in info["backends"]}
    assert backends["ort-cpu"]["usable"] and backends["ort-cpu"]["why_not"] is None
    assert "occ-export MODEL --engine" in backends["tensorrt"]["why_not"]

    engine = occ("inspect", _engine(avid_onnx, tmp_path), "--json", "-")
    assert engine.exit_code == 0, engine.output
    info = json.loads(engine.stdout)
    assert info["artifact"] == "TensorRT engine" and info["engine"]["tensorrt_version"] == "10.3.0"
    backends = {row["backend"]: row for row in info["backends"]}
    assert backends["ort-cpu"]["why_not"] == "runs .onnx files"
    if shutil.which("nvidia-smi") is None:
        assert not backends["tensorrt"]["usable"]

    table = occ("inspect", alocc_checkpoint)
    assert table.exit_code == 0, table.output
    for words in ("alocc", "training checkpoint", "tau", "frame_diff", "backends on this machine", "occ-export MODEL"):
        assert words in table.output


@pytest.mark.parametrize("name, content, message", [
    ("broken.onnx", b"\x00not protobuf", "not a readable ONNX model"),
    ("broken.pt", b"PK\x03\x04 torn", "not a readable torch checkpoint"),
    ("lonely.engine", b"plan", "manifest sidecar is missing"),
    ("model.txt", b"hello", "not an occ model"),
])
def test_inspect_refuses_a_broken_file_in_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    result = occ("inspect", path)
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1


# ---- sample sizes ----------------------------------------------------------------------------------
def test_a_threshold_from_too_few_frames_is_flagged(avid_onnx, tmp_path):
    few = Threshold(value=0.5, data="x", target_false_alarm_rate=0.01, n_samples=30)
    assert "calibrate on at least 300 frames" in sample_size_warning("tau", few)
    assert sample_size_warning("tau", Threshold(value=0.5, target_false_alarm_rate=0.01, n_samples=300)) is None
    assert sample_size_warning("tau", Threshold(value=0.5, target_false_alarm_rate=0.05, n_samples=60)) is None
    model = tmp_path / "m.onnx"
    shutil.copy(avid_onnx, model)
    manifest = read_manifest(model)
    manifest.set_threshold("alpha", Threshold(value=manifest.threshold("alpha"), data="x", target_false_alarm_rate=0.01, n_samples=30))
    manifest.set_threshold("zeta", Threshold(value=manifest.threshold("zeta"), data="x", target_false_alarm_rate=0.01, n_samples=3000))
    write_manifest(model, manifest)
    assert [w.split()[0] for w in threshold_warnings(read_manifest(model))] == ["alpha"]
    result = occ("inspect", model)
    assert result.exit_code == 0 and "warning: alpha was set at 1.0% false alarms from only 30 normal frames" in result.output
    assert "(until " in result.output  # the replaced value is listed as history


# ---- one CLI vocabulary ----------------------------------------------------------------------------
def _commands(command, path=()):
    if hasattr(command, "commands"):  # a group (typer may vendor its own click)
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def _options(command):
    return {name: param for param in command.params if param.param_type_name == "option" for name in param.opts}


def test_every_help_speaks_one_vocabulary():
    commands = dict(_commands(typer.main.get_command(app)))
    assert {"export", "run", "eval", "calibrate", "inspect", "demo", "train alocc", "train avid", "bench latency"} <= set(commands)
    json_help, quiet_help = set(), set()
    for path, command in commands.items():
        options = _options(command)
        for name, param in options.items():
            assert not param.hidden, f"occ {path} {name} is hidden: occ keeps no deprecated aliases"
            if name.startswith("--"):
                assert param.help, f"occ {path} {name} has no help"
        if "--json" in options:
            assert not options["--json"].is_flag and options["--json"].metavar == "PATH", f"occ {path}: --json takes a PATH"
            assert "--quiet" in options, f"occ {path} has --json but no --quiet"
            json_help.add(options["--json"].help)
            quiet_help.add(options["--quiet"].help)
        assert "--json-only" not in options
    assert len(json_help) == 1 and len(quiet_help) == 1, "--json and --quiet mean one thing everywhere"
    # both methods name a shared concept alike, with the same meaning
    alocc, avid = _options(commands["train alocc"]), _options(commands["train avid"])
    for name in set(alocc) & set(avid) - {"--data", "--height", "--width"}:
        assert alocc[name].help == avid[name].help, f"{name} means different things for alocc and avid"
    # a setting the service's configuration file also takes has the file's name
    from occ.runtime.service.config import SCHEMA

    keys = {key for table in SCHEMA.values() for key in table}
    run = _options(commands["run"])
    for name in ("--open-after", "--close-after", "--give-up-after", "--backend", "--preprocess", "--triton-url"):
        assert name in run and name[2:].replace("-", "_") in keys


# ---- metrics documentation -------------------------------------------------------------------------
def test_docs_list_every_metric():
    from types import SimpleNamespace
    from pathlib import Path

    from prometheus_client.parser import text_string_to_metric_families

    from occ.runtime.events import ServiceMetrics

    metrics = ServiceMetrics("m.onnx")
    camera = metrics.camera("c", lambda: SimpleNamespace(dropped=0, reconnects=0, connected=True, unreadable=0))
    camera.observe(FrameResult(index=0, score=0.1, decision=False, location_scores=np.zeros((1, 1))), 0.01, {"inference": 0.01})
    camera.event_opened()
    camera.sink_error("events.jsonl")
    camera.running("alocc", "0" * 64, {"tau": 3.2})
    families = {family.name for family in text_string_to_metric_families(metrics.render().decode())}
    assert len(families) == 20
    documented = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    for name in families:
        exposed = name + ("_total" if f"{name}_total" in metrics.render().decode() else "")
        assert f"| `{exposed}` |" in documented, f"{exposed} has no row in docs/metrics.md"
