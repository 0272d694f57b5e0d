"""docs/own-camera.md, end to end at a tiny size: record, train, export, calibrate, check, deploy.

The commands are the walkthrough's, in its order, through typer's CliRunner (the service through
`python -m occ run --config` where it must be stopped with SIGTERM, as systemd stops it). The camera
is the synthetic walkway written as real video files with OpenCV: (a) a video file, (b) an HTTP
stream served by a local ffmpeg. Only the sizes differ from the walkthrough: seconds instead of
minutes, a 32x48 network trained for one epoch.
"""
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets import WalkwayConfig, generate_walkway
from occ.evaluation.datasets.video import read_video, write_video
from occ.runtime.events import EVENT_SCHEMA, FRAME_SCHEMA, SCHEMA_FILES
from occ.runtime.manifest import read_manifest

from service_utils import free_port, parse_metrics, wait_for
from test_camera import FFMPEG, _serve

jsonschema = pytest.importorskip("jsonschema")

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
TINY = ["--epochs", "1", "--height", "32", "--width", "48", "--patch-size", "16", "--stride", "16", "--base-width", "8"]
ANOMALY = (131, 198)  # the staged clip's anomalous frames (0-based, inclusive) for seed 11: checked below


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args) -> str:
    result = invoke(*args)
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output, result.output
    return result.output


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def validate(lines, schema):
    """Every line against the schema its ``schema`` field names; returns the lines of ``schema``
    (the events log also holds the scene guard's lines about the camera, ``occ.camera.v1``)."""
    for line in lines:
        document = json.loads(SCHEMA_FILES[line["schema"]].read_text())
        jsonschema.Draft202012Validator(document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(line)
    return [line for line in lines if line["schema"] == schema]


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
    """The walkway camera at 48x72, 10 fps: 30 s of normal footage (gate.avi), another 30 s of
    normal footage (other-day.avi) and 30 s with someone doing something unusual (staged.avi)."""
    walkway = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=2, test_clips=1, frames_per_clip=300, seed=11))
    labels = walkway.test[0].labels
    assert (labels.argmax(), len(labels) - 1 - labels[::-1].argmax(), labels.sum()) == (*ANOMALY, ANOMALY[1] - ANOMALY[0] + 1)
    folder = tmp_path_factory.mktemp("camera")
    for name, clip in [("gate.avi", walkway.train[0]), ("other-day.avi", walkway.train[1]), ("staged.avi", walkway.test[0])]:
        write_video(folder / name, clip.frames, fps=10)
    return folder


def site_toml(spec: str, metrics_port: int) -> str:
    """The walkthrough's site.toml, with the camera's source and a free port."""
    return f"""[model]
path = "gate.onnx"
[source]
spec = "{spec}"
name = "gate"
[events]
log = "events.jsonl"
[snapshots]
folder = "snapshots"
[frames]
log = "frames.jsonl"
lines = "events"
[metrics]
port = {metrics_port}
"""


def train_export_calibrate(site, footage):
    """Steps 2-4 of the walkthrough on a recording; checks what each one writes."""
    output = " ".join(ok("data", "info", footage).split())  # a title wraps wherever the path ends
    assert "split 70/10/20 % by time" in output and "calibration" in output
    ok("train", "alocc", "--data", footage, "--out", site / "gate.pt", *TINY)
    ok("export", site / "gate.pt")
    output = ok("inspect", site / "gate.onnx")
    assert "gate (occ recording)" in output and "training footage" in output
    manifest = read_manifest(site / "gate.onnx")
    dataset = manifest.training["dataset"]
    assert dataset["kind"] == "footage" and dataset["split"] == "70/10/20" and dataset["spec"] == "gate (occ recording)"
    assert {p["part"] for p in dataset["pieces"]} == {"training", "validation", "calibration"}
    assert str(site) not in json.dumps(manifest.training)  # names, not the training machine's paths
    trained_tau = manifest.thresholds["tau"].value

    # the training minutes are refused, the calibration minutes taken
    assert "frames the model was trained on" in refused("calibrate", site / "gate.onnx", "--data", footage, "--split", "0/0/100",
                                                        "--alarms-per-day", "24")
    output = ok("calibrate", site / "gate.onnx", "--data", footage, "--split", "0/0/100", "--alarms-per-day", "24", "--force",
                "--dry-run")
    assert "calibrated anyway: --force" in output and read_manifest(site / "gate.onnx").thresholds["tau"].value == trained_tau
    output = ok("calibrate", site / "gate.onnx", "--data", footage, "--alarms-per-day", "24")
    assert "old" in output and "new" in output
    tau = read_manifest(site / "gate.onnx").thresholds["tau"]
    calibration = [p for p in dataset["pieces"] if p["part"] == "calibration"]
    assert tau.n_samples == sum(p["frames"] for p in calibration) and tau.alarms_per_day_budget == 24
    assert read_manifest(site / "gate.onnx").threshold_history[-1]["value"] == trained_tau
    return tau.value


def test_walkthrough_on_a_video_file(camera, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    for name in ("gate.avi", "other-day.avi", "staged.avi"):
        shutil.copy(camera / name, site / name)
    footage = site / "footage" / "gate"

    # 1. record
    ok("data", "record", site / "gate.avi", "--minutes", "0.5", "--clip-seconds", "10", "--out", footage)
    recording = json.loads((footage / "recording.json").read_text())
    assert (recording["frames"], recording["fps"], recording["width"], recording["height"]) == (300, 10.0, 72, 48)
    assert [c["file"] for c in recording["clips"]] == ["clip-0001.avi", "clip-0002.avi", "clip-0003.avi"]

    # 2-4. train, export, calibrate
    tau = train_export_calibrate(site, footage)

    # 5. check: footage has no labels; other minutes count false alarms; a labelled clip gets scored
    assert "no labelled Test/ clips to evaluate on" in refused("eval", site / "gate.onnx", "--data", footage)
    assert "300 frames" in ok("run", site / "gate.onnx", "--source", site / "other-day.avi", "--events", site / "check.jsonl")
    check = read_lines(site / "check.jsonl") if (site / "check.jsonl").exists() else []
    check = validate(check, EVENT_SCHEMA)
    assert all(line["thresholds"] == {"tau": tau} for line in check)
    if FFMPEG is not None:  # the walkthrough cuts the labelled clip into frames with ffmpeg
        (site / "labelled" / "Test" / "Test001").mkdir(parents=True)
        subprocess.run([FFMPEG, "-loglevel", "error", "-i", site / "staged.avi", site / "labelled/Test/Test001/%04d.png"], check=True)
        (site / "labelled" / "Test" / "labels.m").write_text(f"TestVideoFile{{end+1}}.gt_frame = [{ANOMALY[0] + 1}:{ANOMALY[1] + 1}];\n")
        ok("eval", site / "gate.onnx", "--data", site / "labelled", "--json", site / "eval.json")
        report = json.loads((site / "eval.json").read_text())
        assert (report["frames"], report["anomalous_frames"]) == (300, ANOMALY[1] - ANOMALY[0] + 1)
        assert 0 <= report["frame_level"]["raw"]["micro_auc"] <= 1

    # 6. deploy: the service on the staged clip writes events, snapshots, clips and frame lines
    (site / "site.toml").write_text(site_toml("staged.avi", free_port()))
    ok("run", "--config", site / "site.toml")
    events, frames = read_lines(site / "events.jsonl"), read_lines(site / "frames.jsonl")
    events = validate(events, EVENT_SCHEMA)
    validate(frames, FRAME_SCHEMA)
    closed = [e for e in events if e["type"] == "closed"]
    assert closed and len(closed) == sum(e["type"] == "opened" for e in events)
    assert any(e["start_frame"] <= ANOMALY[1] and e["end_frame"] >= ANOMALY[0] for e in closed), closed  # the staged event is caught
    for event in closed:
        assert event["camera"] == "gate" and event["model"] == "gate.onnx" and event["thresholds"] == {"tau": tau}
        assert event["frame_size"] == [48, 72] and event["start_wall_time"] is None and event["start_clip_s"] == event["start_frame"] / 10
        assert (site / event["snapshot"]).is_file() and (site / event["clip"]).is_file()
    written = {line["frame"] for line in frames}  # lines = "events": each event's frames
    assert all(set(range(e["start_frame"], e["end_frame"] + 1)) <= written for e in closed)
    # ... and the quiet ones that close it (after a CUSUM's evidence has drained, a few frames more)
    quiet = read_manifest(site / "gate.onnx").episodes.close_after
    assert written <= {f for e in closed for f in range(e["start_frame"], e["end_frame"] + quiet + 10)}


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make test installs it where apt-get works)")
def test_walkthrough_on_a_stream_served_by_ffmpeg(camera, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    footage = site / "footage" / "gate"

    # 1. record from the stream (ffmpeg -re serves 10 fps in real time)
    port = free_port()
    server = _serve(camera / "gate.avi", port)
    try:
        time.sleep(0.5)  # ffmpeg -listen serves one client: nothing may probe it first
        ok("data", "record", f"http://127.0.0.1:{port}/stream", "--minutes", "0.2", "--clip-seconds", "5", "--out", footage)
    finally:
        server.kill()
        server.wait()
    recording = json.loads((footage / "recording.json").read_text())
    assert recording["source_kind"] == "network" and 8 <= recording["fps"] <= 12 and 11 <= recording["seconds"] <= 13

    # 2-4. train, export, calibrate
    tau = train_export_calibrate(site, footage)

    # 6. deploy on the stream: events with wall-clock times, /metrics, SIGTERM closes the open event
    staged = write_video(site / "staged.avi", _frames(camera / "staged.avi")[ANOMALY[0] - 20:ANOMALY[1] + 1], fps=10)
    port, metrics_port = free_port(), free_port()
    server = _serve(staged, port)
    (site / "site.toml").write_text(site_toml(f"http://127.0.0.1:{port}/stream", metrics_port))
    service = subprocess.Popen([sys.executable, "-m", "occ", "run", "--config", str(site / "site.toml")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        events = site / "events.jsonl"
        wait_for(lambda: events.exists() and '"opened"' in events.read_text(), 60, "an event from the stream")
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        service.send_signal(signal.SIGTERM)
        _, stderr = service.communicate(timeout=30)
    finally:
        if service.poll() is None:
            service.kill()
        server.kill()
        server.wait()
    assert service.returncode == 0, stderr
    samples = parse_metrics(body)
    labels = (("camera", "gate"), ("model", "gate.onnx"))
    assert samples[("occ_frames_total", labels)] >= 1 and samples[("occ_events_total", labels)] >= 1
    assert samples[("occ_threshold", (*labels, ("name", "tau")))] == pytest.approx(tau)
    events, frames = read_lines(events), read_lines(site / "frames.jsonl")
    events = validate(events, EVENT_SCHEMA)
    validate(frames, FRAME_SCHEMA)
    assert events[-1]["type"] == "closed" and events[-1]["closed_by"] in ("quiet", "shutdown")
    assert all(e["start_wall_time"] and e["start_clip_s"] is None and e["thresholds"] == {"tau": tau} for e in events)


def _frames(video):
    return np.stack(list(read_video(video)))


def test_training_frames_are_refused_whatever_the_network_size(tmp_path):
    # a UCSD-layout folder at 48x72, trained at 32x48 (area resize): calibrating on its Train/ clips is refused
    from occ.evaluation.datasets import write_ucsd_layout

    walkway = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=2, test_clips=1, frames_per_clip=60, seed=11))
    write_ucsd_layout(walkway, tmp_path / "site")
    ok("train", "alocc", "--data", tmp_path / "site", "--out", tmp_path / "m.pt", *TINY)
    ok("export", tmp_path / "m.pt")
    output = refused("calibrate", tmp_path / "m.onnx", "--data", tmp_path / "site")
    assert "120 of 120 checked frames are frames the model was trained on" in output
