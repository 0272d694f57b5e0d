"""Soak benchmark: stream many frames through `occ run` and watch memory and file descriptors.

    python -m occ.benchmarks.soak --model runs/demo/alocc.onnx --frames 20000 --out runs/soak.json

A real ffmpeg HTTP server streams a walkway clip in an endless loop (as fast as it encodes); `occ
run --config` consumes it as a live source with the CPU backend, writing events and snapshots and
serving /metrics. RSS and open descriptors of the `occ run` process are sampled from /proc every
``--sample-every`` processed frames; the process is stopped with SIGTERM at ``--frames``.
Aim: RSS growth < 20 MB after warm-up, no descriptor growth.
"""
from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="exported model (.onnx)")
    parser.add_argument("--frames", type=int, default=20000, help="frames to process before stopping")
    parser.add_argument("--sample-every", type=int, default=1000, help="processed frames between samples")
    parser.add_argument("--warmup-frames", type=int, default=1000, help="frames before the RSS baseline is taken")
    parser.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    parser.add_argument("--out", default="runs/soak.json")
    args = parser.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("soak: needs ffmpeg (apt-get install ffmpeg)")
    from occ.runtime.datasets import WalkwayConfig, generate_walkway
    from occ.runtime.datasets.video import write_video

    work = Path(tempfile.mkdtemp(prefix="occ-soak-"))
    clip = generate_walkway(WalkwayConfig(train_clips=0, test_clips=1, frames_per_clip=200)).test[0]
    video = write_video(work / "clip.avi", clip.frames)
    stream_port, metrics_port = _free_port(), _free_port()
    server = subprocess.Popen([ffmpeg, "-loglevel", "error", "-stream_loop", "-1", "-i", str(video), "-f", "mpjpeg",
                               "-listen", "1", f"http://127.0.0.1:{stream_port}/stream"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = work / "site.toml"
    config.write_text(f'[model]\npath = "{Path(args.model).resolve()}"\n[source]\nspec = "http://127.0.0.1:{stream_port}/stream"\n'
                      f'[events]\nlog = "{work}/events.jsonl"\n[snapshots]\nfolder = "{work}/snaps"\nmax_files = 50\n'
                      f'[metrics]\nport = {metrics_port}\n')
    service = subprocess.Popen([sys.executable, "-m", "occ", "run", "--config", str(config)],
                               stdout=subprocess.DEVNULL, stderr=open(work / "service.log", "w"))
    samples, started = [], time.monotonic()
    try:
        next_sample = 0
        while time.monotonic() - started < args.timeout:
            time.sleep(0.5)
            if service.poll() is not None:
                raise RuntimeError(f"occ run exited early with {service.returncode}; see {work / 'service.log'}")
            try:
                done = _frames_done(metrics_port)
            except OSError:
                continue
            if done >= next_sample or done >= args.frames:
                samples.append({"frames": done, "seconds": round(time.monotonic() - started, 1),
                                "rss_mb": round(_rss_mb(service.pid), 2), "fds": _fds(service.pid)})
                print(json.dumps(samples[-1]), flush=True)
                next_sample = done + args.sample_every
            if done >= args.frames:
                break
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
    finally:
        for process in (service, server):
            if process.poll() is None:
                process.kill()
    baseline = next((s for s in samples if s["frames"] >= args.warmup_frames), samples[0])
    last = samples[-1]
    result = {
        "model": args.model, "frames": last["frames"], "seconds": last["seconds"], "samples": samples,
        "rss_growth_mb_after_warmup": round(last["rss_mb"] - baseline["rss_mb"], 2),
        "fd_growth_after_warmup": last["fds"] - baseline["fds"],
        "aims": {"rss_growth_mb": "< 20", "fd_growth": "0"},
        "exit_code": service.returncode,
    }
    result["passed"] = result["rss_growth_mb_after_warmup"] < 20 and result["fd_growth_after_warmup"] <= 0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
