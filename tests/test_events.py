"""What an operator gets from `occ run`: event and per-frame lines checked against their JSON Schema
on real output, event clips, the command line's rules, and the metrics that answer the docs."""
import datetime
import hashlib
import json
import shutil
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets.video import write_video
from occ.evaluation.datasets.walkway import write_ucsd_layout
from occ.runtime.events import EVENT_SCHEMA, FRAME_SCHEMA, SCHEMA_FILES, EventContext, iso_time
from occ.runtime.service import CameraConfig, Service, ServiceConfig

from service_utils import free_port, parse_metrics, wait_for

jsonschema = pytest.importorskip("jsonschema")

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
FPS = 10.0  # write_video's frame rate: clip positions are frame / FPS


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def validator(schema: str):
    document = json.loads(SCHEMA_FILES[schema].read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def doubled_video(tiny_walkway, tmp_path_factory):
    """The walkway's first test clip at twice its size (96x144), so source pixels differ from the
    network's (48x72): a real video file, written with OpenCV."""
    frames = np.stack([cv2.resize(f, (144, 96), interpolation=cv2.INTER_NEAREST) for f in tiny_walkway.test[0].frames])
    return write_video(tmp_path_factory.mktemp("video") / "gate.avi", frames, fps=FPS)


def _tau_between_scores(alocc_onnx, video, tmp_path) -> float:
    """A τ halfway between two frame scores near the 70th percentile of the clip: some frames fire, some not."""
    out = tmp_path / "probe.jsonl"
    assert invoke("run", alocc_onnx, "--source", video, "--out", out).exit_code == 0
    scores = np.unique([line["score"] for line in read_lines(out)])
    at = int(len(scores) * 0.7)
    return float(f"{(scores[at] + scores[at + 1]) / 2:.6g}")


def test_every_line_of_occ_run_validates_and_carries_what_an_operator_needs(alocc_onnx, doubled_video, tmp_path):
    tau = _tau_between_scores(alocc_onnx, doubled_video, tmp_path)
    events, frames, snaps = tmp_path / "events.jsonl", tmp_path / "frames.jsonl", tmp_path / "snaps"
    result = invoke("run", alocc_onnx, "--source", doubled_video, "--events", events, "--out", frames, "--snapshots", snaps,
                    "--open-after", 1, "--close-after", 2, "--threshold", f"tau={tau}")
    assert result.exit_code == 0, result.output
    assert f"thresholds tau={tau:.5g} (tau from --threshold, not saved)" in result.output

    frame_lines, event_lines = read_lines(frames), read_lines(events)
    check_frame, check_event = validator(FRAME_SCHEMA), validator(EVENT_SCHEMA)
    for line in frame_lines:
        check_frame.validate(line)
    for line in event_lines:
        check_event.validate(line)
    assert len(frame_lines) == 30 and event_lines, "the clip fires at this τ"

    for line in frame_lines:
        assert line["clip_s"] == pytest.approx(line["frame"] / FPS) and line["wall_time"] is None  # a file: clip positions
        assert line["decision"] == (line["score"] > tau)
        assert all(float(f"{v:.4g}") == v for v in [line["score"], *np.ravel(line["location_scores"])])  # 4 significant digits
        assert line["frame_size"] == [96, 144] and np.shape(line["location_scores"]) == (3, 5)
        # network pixels (48x72) scaled to the source's (96x144): every coordinate even, areas in fours,
        # at least one 16-pixel patch (32 source pixels square) per box
        assert all(v % 2 == 0 for box in line["boxes"] for v in box)
        assert all(0 <= x1 < x2 <= 144 and 0 <= y1 < y2 <= 96 for x1, y1, x2, y2 in line["boxes"])
        assert line["mask_area"] % 4 == 0
        assert len(line["boxes"]) * 32 * 32 <= line["mask_area"] <= sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in line["boxes"])
        assert (line["mask_area"] > 0) == line["decision"]

    sha256 = hashlib.sha256(alocc_onnx.read_bytes()).hexdigest()
    for line in event_lines:
        assert (line["camera"], line["model"], line["model_sha256"], line["method"]) == ("gate", alocc_onnx.name, sha256, "alocc")
        assert line["thresholds"] == {"tau": tau}
        for at in ("start", "end", "peak"):
            assert line[f"{at}_clip_s"] == pytest.approx(line[f"{at}_frame"] / FPS) and line[f"{at}_wall_time"] is None
    by_frame = {line["frame"]: line for line in frame_lines}
    closed = [line for line in event_lines if line["type"] == "closed"]
    assert len(closed) == sum(line["type"] == "opened" for line in event_lines)
    for event in closed:
        peak = by_frame[event["peak_frame"]]
        assert event["peak_score"] == pytest.approx(peak["score"], rel=1e-3)
        assert (event["mask_area"], event["boxes"]) == (peak["mask_area"], peak["boxes"])  # source pixels, as the frame lines
        assert event["snapshot"] and (tmp_path / "snaps").resolve() == (tmp_path / event["snapshot"]).resolve().parent
        assert cv2.imread(event["snapshot"]).shape[:2] == (96, 144)
        clip = cv2.VideoCapture(event["clip"])
        count = int(clip.get(cv2.CAP_PROP_FRAME_COUNT))
        clip.release()
        # 2 s (20 frames) before the first frame, the event, up to 2 s after: cut by the clip's ends
        expected = min(event["start_frame"], 20) + (event["end_frame"] - event["start_frame"] + 1) + min(29 - event["end_frame"], 20)
        assert count <= expected and count >= event["end_frame"] - event["start_frame"] + 1
    assert len(list(snaps.glob("*.avi"))) == len({line["clip"] for line in closed}) and not list(snaps.glob(".*"))


def test_frame_lines_can_be_limited_to_events(alocc_onnx, doubled_video, tmp_path):
    tau = _tau_between_scores(alocc_onnx, doubled_video, tmp_path)
    events, frames = tmp_path / "events.jsonl", tmp_path / "frames.jsonl"
    result = invoke("run", alocc_onnx, "--source", doubled_video, "--events", events, "--out", frames, "--open-after", 1,
                    "--close-after", 2, "--threshold", f"tau={tau}", "--frame-lines", "events")
    assert result.exit_code == 0, result.output
    written = [line["frame"] for line in read_lines(frames)]
    closed = [line for line in read_lines(events) if line["type"] == "closed"]
    assert closed and 0 < len(written) < 30
    for event in closed:  # each event's frames, from its first to the one that closes it
        assert set(range(event["start_frame"], event["end_frame"] + 1)) <= set(written)
    assert all(any(e["start_frame"] <= f <= e["end_frame"] + 2 for e in closed) for f in written)


def test_live_times_are_iso_wall_clock_and_files_give_clip_positions():
    live, file = EventContext(live=True), EventContext(live=False)
    assert live.clock(1765000000.25) == {"wall_time": "2025-12-06T05:46:40.250Z", "clip_s": None}
    assert file.clock(12.3456) == {"wall_time": None, "clip_s": 12.346}
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"


def test_config_with_a_conflicting_option_is_an_error_naming_both(alocc_onnx, doubled_video, tmp_path):
    config = tmp_path / "site.toml"
    config.write_text(f'[model]\npath = "{alocc_onnx}"\n[source]\nspec = "{doubled_video}"\n[events]\nlog = "{tmp_path / "e.jsonl"}"\n')
    for extra, named in ((["--open-after", "30"], "--open-after conflicts with --config"),
                         (["--events", tmp_path / "x.jsonl"], "--events conflicts with --config"),
                         (["--source", doubled_video], "--source conflicts with --config"),
                         ([alocc_onnx], "MODEL conflicts with --config")):
        result = invoke("run", "--config", config, *extra)
        assert result.exit_code == 2, result.output
        assert named in result.output and str(config) in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "e.jsonl").exists() and not (tmp_path / "x.jsonl").exists()


def test_threshold_on_the_command_line_wins_over_the_config(alocc_onnx, doubled_video, tmp_path):
    config = tmp_path / "site.toml"
    events = tmp_path / "e.jsonl"
    config.write_text(f'[model]\npath = "{alocc_onnx}"\n[thresholds]\ntau = 1e9\n[source]\nspec = "{doubled_video}"\n'
                      f'[events]\nlog = "{events}"\nopen_after = 1\n')
    assert invoke("run", "--config", config).exit_code == 0
    assert not events.exists() or not events.read_text()  # τ = 1e9: nothing fires
    result = invoke("run", "--config", config, "--threshold", "tau=-1e9")
    assert result.exit_code == 0, result.output
    lines = read_lines(events)
    assert [line["type"] for line in lines] == ["opened", "closed"] and lines[1]["frames"] == 30
    assert all(line["thresholds"] == {"tau": -1e9} for line in lines)
    # every patch fires: the whole frame, in source pixels (96x144), not the network's 48x72
    assert lines[1]["mask_area"] == 96 * 144 and lines[1]["boxes"] == [[0, 0, 144, 96]]


@pytest.mark.parametrize("given, problem", [("foo=1", "give NAME=VALUE with NAME one of tau, alpha, zeta"),
                                            ("tau", "give NAME=VALUE with NAME one of tau, alpha, zeta"), ("tau=abc", "'abc' is not a number"),
                                            ("zeta=2", "zeta must be between 0 and 1"), ("alpha=-1", "alpha must be > 0")])
def test_a_bad_threshold_is_one_line_on_run_and_eval(alocc_onnx, doubled_video, given, problem):
    for args in (["run", alocc_onnx, "--source", doubled_video], ["eval", alocc_onnx, "--data", "walkway"]):
        result = invoke(*args, "--threshold", given)
        assert result.exit_code == 2 and result.output.strip() == f"error: --threshold {given}: {problem}", result.output


def test_a_threshold_the_method_lacks_is_one_line(avid_onnx, doubled_video):
    result = invoke("run", avid_onnx, "--source", doubled_video, "--threshold", "tau=1")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and "tau" in result.output
    assert '"exit_code": 0' not in result.output


def test_eval_takes_thresholds_and_puts_what_a_camera_runs_first(alocc_onnx, tiny_walkway, tmp_path):
    folder = write_ucsd_layout(tiny_walkway, tmp_path / "data")
    report = tmp_path / "eval.json"
    result = invoke("eval", alocc_onnx, "--data", folder, "--threshold", "tau=-1e9", "--smoothing", 3, "--json", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["thresholds"] == {"tau": -1e9} and data["threshold_overrides"] == {"tau": -1e9}
    assert data["at_stored_threshold"]["false_positive_rate"] == 1.0 and data["at_stored_threshold"]["true_positive_rate"] == 1.0
    assert set(data["frame_level"]) == {"raw"}
    assert set(data["frame_level_offline"]) == {"smoothed_3", "per_video_minmax", "per_video_minmax_smoothed_3"}
    output = " ".join(result.output.split())  # a long title wraps wherever the temporary path ends
    camera, offline = output.index("what a camera runs"), output.index("offline only")
    assert camera < offline and output.index("raw") < offline < output.index("per_video_minmax")
    assert "tau from --threshold, not saved" in result.output


@pytest.mark.parametrize("form", ["gate.avi", "file://gate.avi"])
def test_config_paths_resolve_against_the_config_file_in_every_form(alocc_onnx, doubled_video, tmp_path, monkeypatch, form):
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(doubled_video, site / "gate.avi")
    shutil.copy(alocc_onnx, site / "model.onnx")
    (site / "site.toml").write_text(f'[model]\npath = "model.onnx"\n[source]\nspec = "{form}"\n[events]\nlog = "events.jsonl"\n'
                                    '[frames]\nlog = "frames.jsonl"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = ServiceConfig.from_toml(site / "site.toml")
    assert config.cameras[0].spec == str(site / "gate.avi") and config.cameras[0].name == "gate"
    result = invoke("run", "--config", site / "site.toml")
    assert result.exit_code == 0, result.output
    assert len(read_lines(site / "frames.jsonl")) == 30 and not list(elsewhere.iterdir())


def test_a_checkpoint_is_refused_in_one_line_before_anything_runs(alocc_checkpoint, doubled_video, tmp_path):
    line = f"error: {alocc_checkpoint}: a checkpoint: run `occ export {alocc_checkpoint}` first"
    for args in (["run", alocc_checkpoint, "--source", doubled_video, "--events", tmp_path / "e.jsonl"],
                 ["eval", alocc_checkpoint, "--data", "walkway"],
                 ["calibrate", alocc_checkpoint, "--data", doubled_video]):
        result = invoke(*args)
        assert result.exit_code == 2 and result.output.strip() == line, result.output
    config = tmp_path / "site.toml"
    config.write_text(f'[model]\npath = "{alocc_checkpoint}"\n[source]\nspec = "{doubled_video}"\n')
    result = invoke("run", "--config", config)
    assert result.exit_code == 2 and result.output.strip() == line and '"exit_code"' not in result.output
    renamed = tmp_path / "model.onnx"  # a checkpoint under another name is known by its content
    shutil.copy(alocc_checkpoint, renamed)
    result = invoke("run", renamed, "--source", doubled_video, "--events", tmp_path / "e.jsonl")
    assert result.exit_code == 2 and result.output.strip() == f"error: {renamed}: a checkpoint: run `occ export {renamed}` first"
    assert not (tmp_path / "e.jsonl").exists()


def test_help_texts_keep_their_square_brackets():
    result = invoke("train", "--help")
    assert result.exit_code == 0 and "pip install 'occ[train]'" in result.output
    assert "[thresholds]" in invoke("run", "--help").output
    assert "'walkway[:opts]'" in invoke("train", "alocc", "--help").output


def test_metrics_show_stage_timings_and_the_model_in_force_after_a_few_frames(alocc_onnx, tiny_walkway, tmp_path):
    video = write_video(tmp_path / "long.avi", np.concatenate([tiny_walkway.test[0].frames] * 40))
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(str(video), name="gate")], thresholds={"tau": 2.5},
                           events_log=str(tmp_path / "events.jsonl"), metrics_port=free_port())
    service = Service(config)
    runner_thread = threading.Thread(target=service.run, daemon=True)
    runner_thread.start()
    labels = (("camera", "gate"), ("model", alocc_onnx.name))
    try:
        wait_for(lambda: service.source is not None and service.source.stats.frames >= 5, 60, "5 frames")
        body = urllib.request.urlopen(f"http://127.0.0.1:{config.metrics_port}/metrics", timeout=5).read().decode()
    finally:
        service.request_stop()
        runner_thread.join(timeout=30)
    samples = parse_metrics(body)
    frames = samples[("occ_frames_total", labels)]
    assert frames >= 5
    for stage in ("preprocess", "inference", "postprocess"):
        count = samples[("occ_stage_seconds_count", (*labels, ("stage", stage)))]
        assert frames - 1 <= count <= frames + 1  # scraped while frames go on: at most one frame apart
        assert samples[("occ_stage_seconds_sum", (*labels, ("stage", stage)))] > 0
    sha256 = hashlib.sha256(alocc_onnx.read_bytes()).hexdigest()
    info = (("camera", "gate"), ("method", "alocc"), ("model", alocc_onnx.name), ("sha256", sha256), ("thresholds", "tau=2.5"))
    assert samples[("occ_model_info", info)] == 1.0
    assert samples[("occ_threshold", (*labels, ("name", "tau")))] == 2.5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (make test installs it where apt-get works)")
def test_a_live_stream_gives_wall_clock_times_that_validate(alocc_onnx, tiny_walkway, tmp_path):
    from test_camera import _serve

    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[0].frames)
    port = free_port()
    server = _serve(video, port)
    events, frames = tmp_path / "events.jsonl", tmp_path / "frames.jsonl"
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(f"http://127.0.0.1:{port}/stream", name="street", backoff=0.2,
                                                                      max_backoff=1.0, give_up_after=20)],
                           thresholds={"tau": -1e9}, open_after=2, events_log=str(events), frames_log=str(frames))
    service = Service(config)
    started = time.time()
    runner_thread = threading.Thread(target=service.run, daemon=True)
    runner_thread.start()
    try:
        wait_for(lambda: frames.exists() and len(frames.read_text().splitlines()) >= 5, 30, "5 frames from the stream")
    finally:
        service.request_stop()
        runner_thread.join(timeout=30)
        server.kill()
    check_frame, check_event = validator(FRAME_SCHEMA), validator(EVENT_SCHEMA)
    lines, event_lines = read_lines(frames), read_lines(events)
    assert [line["type"] for line in event_lines] == ["opened", "closed"] and event_lines[1]["closed_by"] == "shutdown"
    for line in lines:
        check_frame.validate(line)
        assert line["clip_s"] is None
        seconds = datetime.datetime.fromisoformat(line["wall_time"].replace("Z", "+00:00")).timestamp()
        assert started - 1 <= seconds <= time.time() + 1  # capture times on the wall clock
    for line in event_lines:
        check_event.validate(line)
        assert line["start_clip_s"] is None and line["start_wall_time"] == lines[line["start_frame"]]["wall_time"]
