"""Soak benchmark: stream many frames through `occ run` and watch memory and file descriptors.

    occ-bench soak runs/demo/alocc.onnx --frames 20000 --json runs/soak.json

A real ffmpeg HTTP server streams a walkway clip in an endless loop (as fast as it encodes); `occ
run --config` consumes it as a live source with the CPU backend, writing events and snapshots and
serving /metrics. RSS and open descriptors of the `occ run` process are sampled from /proc every
``sample_every`` processed frames; the process is stopped with SIGTERM after ``frames``.
Aim: RSS growth < 20 MB after warm-up, no descriptor growth.
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


def _frames_done(port: int) -> int:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return int(next(line.split()[1] for line in body.splitlines() if line.startswith("occ_frames_total")))


def run_soak(model: str | Path, frames: int = 20000, sample_every: int = 1000, warmup_frames: int = 1000,
             timeout: float = 3600, progress=None) -> dict:
    """Stream ``frames`` frames of a live ffmpeg HTTP stream through ``occ run --config``; see the module docstring."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("the soak needs ffmpeg (apt-get install ffmpeg)")
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway
    from occ.evaluation.datasets.video import write_video

    work = Path(tempfile.mkdtemp(prefix="occ-soak-"))
    clip = generate_walkway(WalkwayConfig(train_clips=0, test_clips=1, frames_per_clip=200)).test[0]
    video = write_video(work / "clip.avi", clip.frames)
    stream_port, metrics_port = _free_port(), _free_port()
    server = subprocess.Popen([ffmpeg, "-loglevel", "error", "-stream_loop", "-1", "-i", str(video), "-f", "mpjpeg",
                               "-listen", "1", f"http://127.0.0.1:{stream_port}/stream"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = work / "site.toml"
    config.write_text(f'[model]\npath = "{Path(model).resolve()}"\n[source]\nspec = "http://127.0.0.1:{stream_port}/stream"\n'
                      f'[events]\nlog = "{work}/events.jsonl"\n[snapshots]\nfolder = "{work}/snaps"\nmax_files = 50\n'
                      f'[metrics]\nport = {metrics_port}\n')
    service = subprocess.Popen([sys.executable, "-m", "occ", "run", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=open(work / "service.log", "w"))
    samples, started = [], time.monotonic()
    try:
        next_sample = 0
        while time.monotonic() - started < timeout:
            time.sleep(0.5)
            if service.poll() is not None:
                raise RuntimeError(f"occ run exited early with {service.returncode}; see {work / 'service.log'}")
            try:
                done = _frames_done(metrics_port)
            except OSError:
                continue
            if done >= next_sample or done >= frames:
                samples.append({"frames": done, "seconds": round(time.monotonic() - started, 1),
                                "rss_mb": round(_rss_mb(service.pid), 2), "fds": _fds(service.pid)})
                if progress:
                    progress(1, description=f"{done} frames, RSS {samples[-1]['rss_mb']} MB")
                next_sample = done + sample_every
            if done >= frames:
                break
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    finally:
        for process in (service, server):
            if process.poll() is None:
                process.kill()
    baseline = next((s for s in samples if s["frames"] >= warmup_frames), samples[0])
    last = samples[-1]
    result = {
        "model": str(model), "frames": last["frames"], "seconds": last["seconds"], "samples": samples,
        "rss_growth_mb_after_warmup": round(last["rss_mb"] - baseline["rss_mb"], 2),
        "fd_growth_after_warmup": last["fds"] - baseline["fds"],
        "aims": {"rss_growth_mb": "< 20", "fd_growth": "0"},
        "exit_code": service.returncode,
    }
    result["passed"] = result["rss_growth_mb_after_warmup"] < 20 and result["fd_growth_after_warmup"] <= 0
    return result
