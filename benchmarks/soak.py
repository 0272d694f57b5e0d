"""Soak: the camera service for many frames under real faults, watching memory, descriptors and events.

    occ-bench soak runs/demo/alocc.onnx --frames 20000 --json runs/soak.json

A real ffmpeg HTTP server streams a walkway test clip (anomalies included) in an endless loop;
``occ run --config`` consumes it as a live source with the CPU backend, writing events and
snapshots and serving /metrics. Faults, at fixed points of the run:

- the stream server is killed (and restarted a second later) at 25 % and at 75 % of the frames;
- at 50 % the disk that holds the events log and the snapshots fills up (a small tmpfs, which
  needs root; without it the run says so and skips this fault) and stays full to the end.

RSS and open descriptors of the service are sampled from /proc every ``sample_every`` frames. At
the end the service gets SIGTERM; every event it opened must be found closed, in the events log or,
for those the full disk held back, in the service's JSON log. Aims: RSS growth under 20 MB after
warm-up, no descriptor growth, no lost event, exit code 0.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DISK_KB = 2048


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _metric(port: int, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(sample.value for family in text_string_to_metric_families(body) for sample in family.samples
               if sample.name == name)


def _serve(ffmpeg: str, video: Path, port: int, paced: bool) -> subprocess.Popen:
    # -re reads the clip at its own frame rate, as a camera delivers; without it ffmpeg sends as fast
    # as it can, the service keeps only the newest frames, and frame differences jump
    pace = ["-re"] if paced else []
    return subprocess.Popen([ffmpeg, "-loglevel", "error", *pace, "-stream_loop", "-1", "-i", str(video), "-f", "mpjpeg",
                             "-listen", "1", f"http://127.0.0.1:{port}/stream"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _small_disk(folder: Path) -> bool:
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_KB}k", "tmpfs", str(folder)], capture_output=True).returncode == 0


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


def run_soak(model: str | Path, frames: int = 20000, sample_every: int = 1000, warmup_frames: int = 1000,
             timeout: float = 3600, progress=None, paced: bool = True) -> dict:
    """Stream ``frames`` frames through ``occ run --config`` under the faults of the module docstring;
    ``paced``: at the clip's 10 frames/s like a camera, else as fast as ffmpeg sends (the model
    falls behind and the service drops the oldest frames)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the soak needs ffmpeg (apt-get install ffmpeg)")
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway
    from occ.evaluation.datasets.video import write_video

    work = Path(tempfile.mkdtemp(prefix="occ-soak-"))
    disk = work / "disk"
    real_disk = _small_disk(disk)
    clip = generate_walkway(WalkwayConfig(train_clips=0, test_clips=1, frames_per_clip=200)).test[0]
    video = write_video(work / "clip.avi", clip.frames)
    stream_port, metrics_port = _free_port(), _free_port()
    server = _serve(ffmpeg, video, stream_port, paced)
    config = work / "site.toml"
    config.write_text(f'[model]\npath = "{Path(model).resolve()}"\n[source]\nspec = "http://127.0.0.1:{stream_port}/stream"\n'
                      f'name = "soak"\nbackoff = 0.2\nmax_backoff = 1.0\n[events]\nlog = "{disk}/events.jsonl"\n'
                      f'[snapshots]\nfolder = "{disk}/snaps"\nmax_files = 50\n[metrics]\nport = {metrics_port}\n')
    service_log = work / "service.log"
    service = subprocess.Popen([sys.executable, "-m", "occ", "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                               stderr=open(service_log, "w"))
    faults = {"stream_killed_at": [], "disk_full_at": None}
    kills = [frames // 4, 3 * frames // 4]
    samples, started = [], time.monotonic()
    try:
        next_sample = 0
        while time.monotonic() - started < timeout:
            time.sleep(0.5)
            if service.poll() is not None:
                raise RuntimeError(f"occ run exited early with {service.returncode}; see {service_log}")
            try:
                done = int(_metric(metrics_port, "occ_frames_total"))
            except OSError:
                continue
            if kills and done >= kills[0]:
                kills.pop(0)
                server.kill()
                server.wait()
                faults["stream_killed_at"].append(done)
                time.sleep(1.0)
                server = _serve(ffmpeg, video, stream_port, paced)
            if faults["disk_full_at"] is None and done >= frames // 2 and real_disk:
                _fill(disk)
                faults["disk_full_at"] = done
            if done >= next_sample or done >= frames:
                samples.append({"frames": done, "seconds": round(time.monotonic() - started, 1),
                                "rss_mb": round(_rss_mb(service.pid), 2), "fds": _fds(service.pid)})
                if progress:
                    progress(1, description=f"{done} frames, RSS {samples[-1]['rss_mb']} MB")
                next_sample = done + sample_every
            if done >= frames:
                break
        opened_metric = _metric(metrics_port, "occ_events_total")
        reconnects = _metric(metrics_port, "occ_reconnects_total")
        sink_errors = _metric(metrics_port, "occ_sink_errors_total")
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    finally:
        for process in (service, server):
            if process.poll() is None:
                process.kill()
    events = _events(disk / "events.jsonl", service_log)
    if real_disk:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    baseline = next((s for s in samples if s["frames"] >= warmup_frames), samples[0])
    last = samples[-1]
    lost = sorted(set(events["opened"]) - set(events["closed"]))
    result = {
        "model": str(model), "stream": "paced at the clip's 10 frames/s" if paced else "as fast as ffmpeg sends",
        "frames": last["frames"], "seconds": last["seconds"], "samples": samples, "faults": faults,
        "disk_fault": "tmpfs of %d KB filled" % DISK_KB if real_disk else "not run: mounting a tmpfs needs root",
        "rss_growth_mb_after_warmup": round(last["rss_mb"] - baseline["rss_mb"], 2),
        "fd_growth_after_warmup": last["fds"] - baseline["fds"],
        "events_opened": len(events["opened"]), "events_opened_by_metrics": int(opened_metric),
        "events_in_log_file": events["in_file"], "events_in_service_log": events["in_service_log"], "events_lost": len(lost),
        "reconnects": int(reconnects), "failed_writes": int(sink_errors),
        "aims": {"rss_growth_mb": "< 20", "fd_growth": "<= 0", "events_lost": "0", "exit_code": "0"},
        "exit_code": service.returncode,
    }
    result["passed"] = (result["rss_growth_mb_after_warmup"] < 20 and result["fd_growth_after_warmup"] <= 0 and not lost
                        and result["exit_code"] == 0 and len(events["opened"]) == int(opened_metric))
    return result


def _events(events_log: Path, service_log: Path) -> dict:
    """Opened and closed event ids, from the events log and from the service log's held-back events."""
    opened, closed, in_file, in_service_log = [], [], 0, 0
    lines = events_log.read_text().splitlines() if events_log.is_file() else []
    records = [json.loads(line) for line in lines if line.strip()]
    in_file = len(records)
    for line in service_log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("message") == "event not written to the events log":
                records.append(entry["event"])
                in_service_log += 1
    for record in records:
        (opened if record["type"] == "opened" else closed).append(record["event_id"])
    return {"opened": opened, "closed": closed, "in_file": in_file, "in_service_log": in_service_log}
