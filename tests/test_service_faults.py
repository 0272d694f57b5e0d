"""The camera service under real faults: a full disk, a camera that never comes, a reader that
fails, a restart, native libraries writing to standard error, idle clients on /metrics."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from occ.evaluation.datasets.video import write_video
from occ.runtime.events import EventLog, JsonLinesLog, MetricsServer, ServiceMetrics
from occ.runtime.service import CameraConfig, ConfigError, Service, ServiceConfig
from occ.runtime.sources import LiveSource, SourceError

from service_utils import free_port, parse_metrics, wait_for


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KB file system (tmpfs; the tests run as root in CI), filled up, with a way to free it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): no real full disk to test with")
    filler = mount / "filler"
    try:
        with open(filler, "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 1024)
            except OSError:  # the disk is full
                pass
        yield mount, filler
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _anomalous_every_other_run(frames: np.ndarray) -> np.ndarray:
    """Normal frames whose second half of every 20 is a white flash: events open and close (with the
    scene guard off: a flash of the whole frame is what it holds)."""
    out = frames.copy()
    for start in range(10, len(out), 20):
        out[start : start + 10] = 255
    return out


def test_a_full_disk_degrades_the_events_log_and_loses_no_event(alocc_onnx, tiny_walkway, tmp_path, small_disk):
    mount, filler = small_disk
    clip = _anomalous_every_other_run(np.concatenate([tiny_walkway.train[0].frames] * 40))  # 1,200 frames
    video = write_video(tmp_path / "clip.avi", clip)
    port = free_port()
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(str(video), name="yard")], events_log=str(mount / "events.jsonl"),
                           snapshots=str(tmp_path / "snaps"), open_after=2, close_after=2, metrics_port=port, scene_guard=False)
    service = Service(config)
    result = {}
    runner = threading.Thread(target=lambda: result.update(summary=service.run()), daemon=True)
    runner.start()
    labels = (("camera", "yard"), ("model", alocc_onnx.name))

    def sink_errors() -> float:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return sum(v for (name, l), v in parse_metrics(body).items() if name == "occ_sink_errors_total")

    try:
        wait_for(lambda: service.source is not None and sink_errors() >= 1, 60, "a failed write on the full disk")
        frames_then = service.loops[0].summary.frames
        wait_for(lambda: service.loops[0].summary.frames > frames_then + 50, 60, "scoring to go on")  # the disk is still full
        pending = parse_metrics(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())[
            ("occ_pending_events", labels)]
        assert pending >= 1
        filler.unlink()  # space again: the held events go out with the next write
    finally:
        runner.join(timeout=120)
    summary = result["summary"]
    assert summary.exit_code == 0 and summary.cameras[0].outcome == "finished"
    lines = [json.loads(line) for line in (mount / "events.jsonl").read_text().splitlines()]
    opened = [line["event_id"] for line in lines if line["type"] == "opened"]
    closed = [line["event_id"] for line in lines if line["type"] == "closed"]
    assert summary.cameras[0].events == len(opened) == len(closed) >= 2 and sorted(opened) == sorted(closed)
    assert summary.cameras[0].sink_errors >= 1
    assert not list(mount.rglob("*.tmp"))


def test_a_disk_that_stays_full_sends_the_events_to_the_service_log(alocc_onnx, tiny_walkway, tmp_path, small_disk):
    mount, _ = small_disk
    video = write_video(tmp_path / "clip.avi", _anomalous_every_other_run(np.concatenate([tiny_walkway.train[0].frames] * 4)))
    config = tmp_path / "site.toml"
    config.write_text(f'[model]\npath = "{alocc_onnx}"\n[source]\nspec = "{video}"\nname = "yard"\n'
                      f'[events]\nlog = "{mount / "e.jsonl"}"\nopen_after = 2\nclose_after = 2\n[guard]\nenabled = false\n')
    run = subprocess.run([sys.executable, "-m", "occ", "run", "--config", str(config)], capture_output=True, text=True, timeout=300)
    records = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    held = [r["event"] for r in records if r["message"] == "event not written to the events log"]
    assert run.returncode == 0, run.stderr[-2000:]
    warnings = [r for r in records if r["message"].startswith("cannot write")]
    # at most once a minute for each file: the events log, and the camera's state beside it
    assert sorted(r["path"] for r in warnings) == [str(mount / "cameras" / "yard.json"), str(mount / "e.jsonl")]
    assert held and {e["type"] for e in held} == {"opened", "closed"} and all(e["camera"] == "yard" for e in held)
    assert not (mount / "e.jsonl").exists() or (mount / "e.jsonl").stat().st_size == 0


def test_a_camera_that_never_comes_gives_up_with_exit_code_3_and_json_logs(alocc_onnx, tmp_path):
    dead = free_port()  # nothing listens there: FFmpeg fails to connect and says so on standard error
    run = subprocess.run([sys.executable, "-m", "occ", "run", str(alocc_onnx), "--source", f"http://127.0.0.1:{dead}/stream",
                          "--give-up-after", "1", "--events", str(tmp_path / "e.jsonl")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr[-2000:]
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines[:-1]]  # everything but the CLI's closing summary is a JSON record
    assert any(r["message"].startswith("source gave up") for r in records)
    assert any(r["message"] == "service stopped" and r["exit_code"] == 3 for r in records)
    assert "gave up" in lines[-1]


def test_a_failing_reader_thread_surfaces_instead_of_hanging(tmp_path):
    class BrokenCamera(LiveSource):
        def _open(self):
            raise RuntimeError("the driver crashed")

    source = BrokenCamera("rtsp://127.0.0.1:9/x", give_up_after=5)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"rtsp://127.0.0.1:9/x: the reader stopped \(RuntimeError: the driver crashed\)"):
        list(source)
    assert time.monotonic() - started < 5
    source.close()


def test_event_ids_are_unique_across_restarts_and_snapshots_are_never_overwritten(alocc_onnx, tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", _anomalous_every_other_run(tiny_walkway.train[0].frames))
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(str(video), name="door")], events_log=str(tmp_path / "e.jsonl"),
                           snapshots=str(tmp_path / "snaps"), open_after=2, close_after=2, scene_guard=False)
    for _ in range(2):  # the same footage twice: a restart
        assert Service(config).run().exit_code == 0
    ids = [json.loads(line)["event_id"] for line in (tmp_path / "e.jsonl").read_text().splitlines() if '"opened"' in line]
    assert len(ids) >= 2 and len(set(ids)) == len(ids) and all(i.startswith("door-") for i in ids)
    assert len(list((tmp_path / "snaps").glob("*.jpg"))) == len(ids)


def test_logs_rotate_by_size_and_never_hold_half_a_line(tmp_path):
    log = JsonLinesLog(tmp_path / "frames.jsonl", max_bytes=2000, backups=2)
    for i in range(200):
        assert log.write({"frame": i, "padding": "x" * 40})
    assert log.close() == []
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["frames.jsonl", "frames.jsonl.1", "frames.jsonl.2"]
    frames = [json.loads(line)["frame"] for f in files for line in f.read_text().splitlines()]
    assert sorted(frames)[-1] == 199 and all(f.stat().st_size <= 2000 + 100 for f in files)


def test_the_metrics_server_serves_with_idle_clients_connected():
    metrics = ServiceMetrics("m.onnx")
    server = MetricsServer(metrics.render, port=0, workers=2)
    server.server.request_timeout_s = 0.5
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        threads_before = threading.active_count()
        started = time.monotonic()
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=30).read()
        assert body == b"ok\n" and time.monotonic() - started < 30
        assert threading.active_count() <= threads_before + 2  # a fixed pool, not a thread per connection
    finally:
        for connection in idle:
            connection.close()
        server.close()


def test_a_metrics_port_in_use_is_refused_before_anything_starts(alocc_onnx, tiny_walkway, tmp_path):
    from typer.testing import CliRunner

    from occ.cli import app

    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[0].frames)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["run", str(alocc_onnx), "--source", str(video), "--metrics-port", str(port),
                                          "--events", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 2 and f"metrics port 127.0.0.1:{port} cannot be served (Address already in use)" in result.output
    assert not (tmp_path / "e.jsonl").exists()


def test_files_occ_writes_take_the_umask_and_replacements_keep_their_mode(tmp_path):
    from occ.runtime.files import write_atomic

    previous = os.umask(0o027)
    try:
        write_atomic(tmp_path / "model.onnx", b"x")
        assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o640  # readable by the service's group
        os.chmod(tmp_path / "model.onnx", 0o644)
        write_atomic(tmp_path / "model.onnx", b"y")  # a recalibration
        assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644
        log = EventLog(tmp_path / "events.jsonl")
        log.lines.write({"a": 1})
        log.close()
        assert (tmp_path / "events.jsonl").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(previous)


def test_a_file_uri_is_a_recorded_source_of_the_service(alocc_onnx, tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[0].frames)
    uri = video.resolve().as_uri()
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(uri, name="yard")], events_log=str(tmp_path / "e.jsonl"))
    assert config.check() is config
    missing = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(uri + ".gone", name="yard")])
    with pytest.raises(ConfigError, match="no such file or folder"):
        missing.check()
    over_input = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(uri, name="yard")], events_log=str(video))
    with pytest.raises(ConfigError, match="is an input of the service"):
        over_input.check()
