"""Camera deployment with real components: ffmpeg HTTP stream server, subprocess service, HTTP scrape."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest

from occ.evaluation.datasets.common import ranges_from_labels
from occ.evaluation.datasets.video import write_video
from occ.runtime.detector import FrameResult
from occ.runtime.events import EpisodeTracker, MetricsServer, ServiceMetrics, SnapshotStore
from occ.runtime.service import CameraConfig, Service, ServiceConfig
from occ.runtime.sources import ACCEPTED_FORMS, FileSource, FolderSource, LiveSource, SourceError, open_source

from service_utils import free_port, parse_metrics, wait_for

FFMPEG = shutil.which("ffmpeg")


def _results(decisions, scores=None):
    scores = scores if scores is not None else [float(d) for d in decisions]
    return [FrameResult(index=i, score=s, decision=bool(d), location_scores=np.zeros((1, 1)), timestamp=i / 10)
            for i, (d, s) in enumerate(zip(decisions, scores))]


def test_episodes_follow_known_anomalies(tiny_walkway):
    clip = tiny_walkway.test[0]
    labels = clip.labels.copy()
    labels[np.nonzero(labels)[0][5]] = False  # a one-frame gap inside the episode must not split it
    tracker = EpisodeTracker(open_after=3, close_after=4)
    opened, closed = [], []
    for result in _results(labels):
        o, c, _ = tracker.update(result)
        opened += [o] if o else []
        closed += [c] if c else []
    if tracker.current is not None:
        closed.append(tracker.flush("end of stream"))
    (first, last), = ranges_from_labels(clip.labels)  # 1-based inclusive
    assert len(opened) == 1 and len(closed) == 1
    event = closed[0]
    assert event.start_frame == first - 1 and event.end_frame == last - 1
    assert event.start_time == pytest.approx((first - 1) / 10)


def test_short_blips_do_not_open_and_peaks_are_tracked():
    decisions = [0, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0]
    scores = [0, 5, 5, 0, 2, 9, 3, 4, 0, 0, 0]
    tracker = EpisodeTracker(open_after=3, close_after=3)
    events = [c for r in _results(decisions, scores) for _, c, _ in [tracker.update(r)] if c]
    assert len(events) == 1
    event = events[0]
    assert (event.start_frame, event.end_frame, event.peak_frame, event.peak_score, event.frames) == (4, 7, 5, 9.0, 4)
    assert event.closed_by == "quiet"


def test_snapshot_rotation_is_bounded(tmp_path):
    store = SnapshotStore(tmp_path, max_files=3, max_bytes=10**9)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for i in range(10):
        store.save(f"snap_{i:02d}", image)
        os.utime(tmp_path / f"snap_{i:02d}.jpg", (1000 + i, 1000 + i))
    store.rotate()
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == ["snap_07.jpg", "snap_08.jpg", "snap_09.jpg"]
    one = (tmp_path / "snap_09.jpg").stat().st_size
    by_bytes = SnapshotStore(tmp_path, max_files=100, max_bytes=2 * one)
    by_bytes.rotate()
    assert sum(p.stat().st_size for p in tmp_path.glob("*.jpg")) <= 2 * one
    assert not list(tmp_path.glob(".*.tmp"))


def test_metrics_follow_prometheus_conventions():
    metrics = ServiceMetrics("m.onnx")
    gate, yard = metrics.camera("gate"), metrics.camera("yard")
    for i, result in enumerate(_results([0, 1, 1])):
        gate.observe(result, seconds=0.002 + i / 1000, stages={"inference": 0.001})
    yard.observe(_results([1])[0], seconds=0.5)
    gate.event_opened()
    server = MetricsServer(metrics.render, port=0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
        health = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read().decode()
    finally:
        server.close()
    samples = parse_metrics(body)
    g = (("camera", "gate"), ("model", "m.onnx"))
    y = (("camera", "yard"), ("model", "m.onnx"))
    assert samples[("occ_frames_total", g)] == 3 and samples[("occ_frames_total", y)] == 1
    assert samples[("occ_anomalous_frames_total", g)] == 2 and samples[("occ_events_total", g)] == 1
    # seconds, as histograms with _bucket/_sum/_count
    assert samples[("occ_frame_latency_seconds_count", g)] == 3
    assert abs(samples[("occ_frame_latency_seconds_sum", g)] - 0.009) < 1e-9
    assert samples[("occ_frame_latency_seconds_bucket", (("camera", "gate"), ("le", "0.0025"), ("model", "m.onnx")))] == 1
    assert samples[("occ_stage_seconds_count", (("camera", "gate"), ("model", "m.onnx"), ("stage", "inference")))] == 3
    assert samples[("occ_score_recent", (("camera", "gate"), ("model", "m.onnx"), ("percentile", "50")))] == 1.0
    assert not any(name.endswith("_created") for name, _ in samples)
    assert health == "ok\n"
    promtool = shutil.which("promtool")  # Prometheus's own linter (make test installs it where apt-get works)
    if promtool:
        checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True)
        assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked.stdout + checked.stderr


def _long_video(tmp_path, clip, repeats: int):
    return write_video(tmp_path / "long.avi", np.concatenate([clip.frames] * repeats))


def test_sigterm_flushes_an_open_event_and_metrics_are_scraped(alocc_onnx, tiny_walkway, tmp_path):
    video = _long_video(tmp_path, tiny_walkway.test[0], 100)  # 3000 frames: seconds of work
    port = free_port()
    config = tmp_path / "site.toml"
    config.write_text(f"""
[model]
path = "{alocc_onnx}"
[thresholds]
tau = -1e9          # every frame anomalous: an episode opens and stays open
[source]
spec = "{video}"
[events]
log = "{tmp_path / 'events.jsonl'}"
open_after = 2
close_after = 3
[snapshots]
folder = "{tmp_path / 'snaps'}"
[metrics]
port = {port}
""")
    process = subprocess.Popen([sys.executable, "-m", "occ", "run", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = tmp_path / "events.jsonl"
        wait_for(lambda: events.exists() and '"opened"' in events.read_text(), 60, "an opened event")
        samples = parse_metrics(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
        labels = (("camera", "long"), ("model", alocc_onnx.name))
        assert samples[("occ_frames_total", labels)] >= 2 and samples[("occ_events_total", labels)] == 1
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["opened", "closed"]
    assert lines[1]["closed_by"] == "shutdown" and lines[1]["end_frame"] >= lines[1]["start_frame"]
    assert lines[0]["event_id"] == lines[1]["event_id"] and lines[0]["event_id"].startswith("long-")
    assert lines[1]["camera"] == "long" and lines[1]["frame_size"] == list(tiny_walkway.test[0].frames.shape[1:])
    snapshots = list((tmp_path / "snaps").glob("*.jpg"))
    assert len(snapshots) == 1 and snapshots[0].name.startswith(lines[1]["event_id"])
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(r["message"] == "service stopped" and r["exit_code"] == 0 for r in records)


def _serve(video, port):
    return subprocess.Popen([FFMPEG, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video),
                             "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/stream"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make test installs it where apt-get works)")
def test_http_stream_server_killed_and_restarted(alocc_onnx, tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[1].frames)
    port = free_port()
    server = _serve(video, port)
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(f"http://127.0.0.1:{port}/stream", name="street", backoff=0.2,
                                                                      max_backoff=1.0, give_up_after=20)],
                           events_log=str(tmp_path / "events.jsonl"), metrics_port=free_port())
    service = Service(config)
    summary = {}
    runner = threading.Thread(target=lambda: summary.update(result=service.run()), daemon=True)
    runner.start()
    try:
        wait_for(lambda: service.source is not None and service.source.stats.frames >= 10, 30, "10 frames from the stream")
        server.kill()
        server.wait()
        before = service.source.stats.frames
        time.sleep(1.0)
        server = _serve(video, port)
        wait_for(lambda: service.source.stats.frames >= before + 10, 30, "frames after the server restarted")
        assert service.source.stats.reconnects >= 1
        samples = parse_metrics(urllib.request.urlopen(f"http://127.0.0.1:{config.metrics_port}/metrics", timeout=5).read().decode())
        assert samples[("occ_reconnects_total", (("camera", "street"), ("model", alocc_onnx.name)))] >= 1
    finally:
        service.request_stop()
        runner.join(timeout=30)
        server.kill()
    result = summary["result"] if "result" in summary else None
    assert result is not None and result.totals()["frames"] >= 20 and result.totals()["reconnects"] >= 1
    assert result.exit_code == 0  # a requested stop


def test_live_source_drops_oldest_frames_when_the_consumer_is_slow(tiny_walkway, tmp_path):
    # A GStreamer-free, network-free live source: OpenCV reading a file through the FFmpeg
    # backend as fast as it decodes, while the consumer sleeps.
    video = write_video(tmp_path / "clip.avi", np.concatenate([tiny_walkway.test[0].frames] * 4))
    source = LiveSource(f"file:{video}", buffer=2, backoff=0.5, give_up_after=0.3)
    received = []
    for frame in source:
        received.append(frame.index)
        time.sleep(0.02)
    source.close()
    assert source.stats.dropped > 0
    assert received == sorted(received) and len(received) + source.stats.dropped == source.stats.frames


def test_open_source_dispatch(tmp_path):
    assert isinstance(open_source("rtsp://127.0.0.1:1/x"), LiveSource)
    assert isinstance(open_source("videotestsrc ! appsink"), LiveSource)
    with pytest.raises(Exception, match="no such file"):
        open_source(str(tmp_path / "missing.avi"))


def test_two_cameras_share_one_metrics_endpoint_told_apart_by_label(alocc_onnx, tiny_walkway, tmp_path):
    long = _long_video(tmp_path, tiny_walkway.test[0], 60)
    short = write_video(tmp_path / "short.avi", tiny_walkway.test[1].frames)
    port = free_port()
    config = tmp_path / "site.toml"
    config.write_text(f"""
[model]
path = "{alocc_onnx}"
[[cameras]]
spec = "{long}"
name = "gate"
[[cameras]]
spec = "{short}"
name = "yard"
[events]
log = "{tmp_path / 'events.jsonl'}"
[frames]
log = "{tmp_path / 'frames-{camera}.jsonl'}"
[metrics]
port = {port}
""")
    process = subprocess.Popen([sys.executable, "-m", "occ", "run", "--config", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        def scrape():
            try:
                return parse_metrics(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
            except OSError:
                return {}

        model = ("model", alocc_onnx.name)
        wait_for(lambda: scrape().get(("occ_frames_total", (("camera", "yard"), model)), 0) == len(tiny_walkway.test[1]), 60,
                 "the short camera to finish")
        samples = scrape()
        gate = samples[("occ_frames_total", (("camera", "gate"), model))]
        assert 0 < gate and samples[("occ_source_connected", (("camera", "gate"), model))] == 1.0
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-2000:]
    assert len((tmp_path / "frames-yard.jsonl").read_text().splitlines()) == len(tiny_walkway.test[1])
    assert (tmp_path / "frames-gate.jsonl").is_file()


def test_source_uris_resolve_to_what_opencv_opens(tmp_path):
    from occ.runtime.sources import csi_pipeline, resolve_source

    assert resolve_source("csi://0").target == csi_pipeline(0, 1280, 720, 30)
    wide = resolve_source("csi://1?width=1920&height=1080&framerate=60").target
    assert wide.startswith("nvarguscamerasrc sensor-id=1 ! ") and "width=1920,height=1080,framerate=60/1" in wide
    assert wide.endswith("appsink drop=true max-buffers=2")
    assert resolve_source("v4l2:///dev/video2") == resolve_source("/dev/video2")
    assert resolve_source("/dev/video2").target == "/dev/video2" and resolve_source("/dev/video2").live
    for url in ("rtsp://127.0.0.1:1/x", "http://127.0.0.1:1/stream", "videotestsrc ! appsink"):
        assert resolve_source(url).target == url and isinstance(open_source(url), LiveSource)
    for bad, problem in (("v4l2://video0", "v4l2:///dev/videoN"), ("csi://front", "csi://N"), ("csi://0?fps=30", "CSI options"),
                         ("ftp://camera/x", "unknown scheme 'ftp://'"), (str(tmp_path / "missing.avi"), "no such file"),
                         (f"file://{tmp_path / 'missing.avi'}", "no such file")):
        with pytest.raises(SourceError, match=re.escape(problem)) as info:
            open_source(bad)
        message = str(info.value)
        assert "\n" not in message and all(form in message for form in ACCEPTED_FORMS), message


def test_file_uris_read_real_files_and_folders(tiny_walkway, tmp_path):
    from occ.evaluation.datasets import write_ucsd_layout

    frames = tiny_walkway.test[0].frames
    video = write_video(tmp_path / "my clip.avi", frames)
    for spec in (f"file://{video}", f"file://{str(video).replace(' ', '%20')}", str(video)):
        source = open_source(spec)
        assert isinstance(source, FileSource)
        assert sum(1 for _ in source) == len(frames)
    folder = write_ucsd_layout(tiny_walkway, tmp_path / "walkway") / "Test" / "Test001"
    source = open_source(f"file://{folder}")
    assert isinstance(source, FolderSource) and sum(1 for _ in source) == len(frames)


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make test installs it where apt-get works)")
def test_http_uri_reads_a_real_ffmpeg_stream(tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[1].frames)
    port = free_port()
    server = _serve(video, port)
    source = open_source(f"http://127.0.0.1:{port}/stream", backoff=0.2, max_backoff=0.5, give_up_after=20)
    received = []
    try:
        for frame in source:
            received.append(frame.image)
            if len(received) == 5:
                break
    finally:
        source.close()
        server.kill()
        server.wait()
    assert len(received) == 5 and received[0].shape[:2] == tiny_walkway.test[1].frames.shape[1:3]
