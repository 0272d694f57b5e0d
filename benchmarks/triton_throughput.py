"""Frames per second through a real Triton server with N cameras at once, next to the local runtime
in the same run (the work behind ``occ-bench triton``).

A camera is a thread with its own detector, its own temporal preprocessing and, through Triton,
its own HTTP client, scoring its own stream one frame at a time as ``occ run`` does: N cameras
are N ``occ run`` loops. Through Triton the frames of different cameras meet in the server's
dynamic batcher; locally every camera runs its own ONNX Runtime InferenceSession (ONNX Runtime's default
threads, as ``occ run``, unless ``threads`` says otherwise, then for the server's too). The server is PyTriton's tritonserver on this machine
(:mod:`occ.benchmarks.triton_server`): its Python backend runs the exported ONNX with ONNX
Runtime CPU from the repository ``occ-export --triton`` writes (backend line changed). Server and
cameras share the machine's cores, as the local cameras do; the cameras are threads of one
process, so their Python work (not numpy's, ONNX Runtime's or the sockets') takes turns.

Each configuration runs ``warmup_s`` unrecorded, then ``duration_s`` recorded: a frame counts when
it finishes inside the recorded window. JSON schema ``occ-bench-triton/1`` (new keys may be added,
none removed or renamed):

    {
      "schema": "occ-bench-triton/1", "model": str, "method": "alocc" | "avid", "frame_size": [h, w],
      "created": ISO time, "date": "YYYY-MM-DD", "machine": str, "commit": str | null, "command": str,
      "settings": {"cameras": [int], "duration_s": float, "warmup_s": float, "ort_threads": int | null},
      "device": {... benchmarks.device_state.device_state() ...},
      "load_average": {"before": [1, 5, 15 min], "after": [...]}   (other work on the machine shows here),
      "server": {"program": "tritonserver", "version": str, "pytriton": str, "backend": str,
                 "max_batch_size": int, "max_queue_delay_us": int, "instances": int, "instance_kind": str,
                 "tensors": "binary" | "json"},
      "runs": [
        {"backend": "ort-cpu" | "triton", "cameras": int, "frames": int, "seconds": float,
         "frames_per_s": float, "per_camera_frames_per_s": {"min", "mean", "max"},
         "latency_ms": {"min","mean","p50","p90","p99","max","count"},
         "server": {"requests": int, "inferences": int, "executions": int, "mean_batch_frames": float} | null},
        ...
      ],
      "triton_over_local": {"<cameras>": float}   (frames/s through Triton / locally, per camera count)
    }

``server`` in a run counts Triton's own ``/metrics`` over the recorded window: requests (one per
frame), inferences (rows: a frame for AVID, its patches for ALOCC), model executions, and the
mean frames per execution (how much the dynamic batcher merged).
"""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from occ.runtime.backends.base import samples_per_frame
from occ.runtime.detector import open_detector
from occ.runtime.files import now_iso
from occ.runtime.manifest import read_manifest

from .latency import run_record, summarize, synthetic_frames
from .triton_server import LocalTritonServer, model_counter, python_backend_repository

SCHEMA = "occ-bench-triton/1"
THREADS_ENV = "OCC_ORT_THREADS"  # read by the server's model.py (triton_onnx_model.py)
MODEL_NAME = "occ_model"
SERVER_COUNTERS = {"requests": "nv_inference_request_success", "inferences": "nv_inference_count",
                   "executions": "nv_inference_exec_count"}


def run_cameras(open_camera: Callable[[], Any], cameras: int, frames: list[np.ndarray], warmup_s: float, duration_s: float,
                at_window: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``cameras`` threads, each scoring its own stream with its own detector from ``open_camera()``.

    ``at_window("start" | "end")`` is called by this thread at the recorded window's edges.
    """
    window: dict[str, float] = {}

    def open_window() -> None:  # run once, when every camera is ready, before any is released
        now = time.monotonic()
        window["start"], window["end"] = now + warmup_s, now + warmup_s + duration_s

    ready = threading.Barrier(cameras + 1, action=open_window)
    counts = [0] * cameras
    latencies: list[list[float]] = [[] for _ in range(cameras)]
    errors: list[BaseException] = []

    def camera(index: int) -> None:
        detector = None
        try:
            detector = open_camera()  # in its own thread: an HTTP client belongs to the thread that made it
            ready.wait()
            step = index * 7  # cameras start at different frames
            while True:
                started = time.monotonic()
                if started >= window["end"]:
                    break
                detector.process(frames[step % len(frames)])
                step += 1
                finished = time.monotonic()
                if window["start"] <= finished < window["end"]:
                    counts[index] += 1
                    latencies[index].append((finished - started) * 1000.0)
        except threading.BrokenBarrierError:
            pass
        except Exception as exc:  # noqa: BLE001 - raised by the caller's thread
            errors.append(exc)
            ready.abort()
        finally:
            if detector is not None:
                detector.close()

    threads = [threading.Thread(target=camera, args=(i,), name=f"camera {i}", daemon=True) for i in range(cameras)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    else:
        time.sleep(max(0.0, window["start"] - time.monotonic()))
        if at_window:
            at_window("start")
        time.sleep(max(0.0, window["end"] - time.monotonic()))
        if at_window:
            at_window("end")
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    total = sum(counts)
    if total == 0:
        raise RuntimeError(f"{cameras} camera(s) finished no frame in {duration_s:g} s; raise --duration")
    per_camera = np.array(counts, np.float64) / duration_s
    return {"cameras": cameras, "frames": total, "seconds": duration_s, "frames_per_s": total / duration_s,
            "per_camera_frames_per_s": {"min": float(per_camera.min()), "mean": float(per_camera.mean()),
                                        "max": float(per_camera.max())},
            "latency_ms": summarize([v for camera_latencies in latencies for v in camera_latencies])}


def run_triton_throughput(model_path: str, cameras: list[int], duration_s: float = 10.0, warmup_s: float = 2.0,
                          frame_size: tuple[int, int] = (240, 360), threads: int | None = None, workdir: str | Path | None = None,
                          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The local runtime, then Triton, at every camera count; see the module docstring.

    ``threads``: ONNX Runtime's intra-op threads for every local InferenceSession and for the server's
    (None: ONNX Runtime's default, as ``occ run`` uses).
    """
    from .device_state import device_state

    manifest = read_manifest(model_path)
    rows_per_frame = samples_per_frame(manifest)
    frames = synthetic_frames(*frame_size)
    with tempfile.TemporaryDirectory(prefix="occ-bench-triton-", dir=workdir) as scratch:
        repository = python_backend_repository(model_path, Path(scratch) / "models", name=MODEL_NAME)
        result: dict[str, Any] = {
            "schema": SCHEMA, "model": str(model_path), "method": manifest.method, "frame_size": list(frame_size),
            "created": now_iso(), **run_record(), "settings": {"cameras": cameras, "duration_s": duration_s, "warmup_s": warmup_s,
                                               "ort_threads": threads},
            "device": device_state(), "load_average": {"before": list(os.getloadavg())}, "server": None, "runs": [],
        }
        for count in cameras:
            if progress:
                progress(f"local runtime, {count} camera(s)")
            run = run_cameras(lambda: open_detector(str(model_path), threads=threads), count, frames, warmup_s, duration_s)
            result["runs"].append({"backend": "ort-cpu", **run, "server": None})
        environment = {THREADS_ENV: str(threads)} if threads else {}
        with LocalTritonServer(repository.model_dir.parent, environment=environment) as server:
            result["server"] = _server_description(server)
            for count in cameras:
                if progress:
                    progress(f"Triton, {count} camera(s)")
                scraped: dict[str, dict] = {}
                run = run_cameras(lambda: open_detector(MODEL_NAME, "triton", url=server.url), count, frames, warmup_s,
                                  duration_s, at_window=lambda edge: scraped.__setitem__(edge, server.metrics()))
                counters = {key: int(model_counter(scraped["end"], metric, MODEL_NAME) - model_counter(scraped["start"], metric, MODEL_NAME))
                            for key, metric in SERVER_COUNTERS.items()}
                counters["mean_batch_frames"] = (counters["inferences"] / rows_per_frame / counters["executions"]
                                                 if counters["executions"] else None)
                result["runs"].append({"backend": "triton", **run, "server": counters})
    result["load_average"]["after"] = list(os.getloadavg())
    by_key = {(run["backend"], run["cameras"]): run["frames_per_s"] for run in result["runs"]}
    result["triton_over_local"] = {str(count): by_key[("triton", count)] / by_key[("ort-cpu", count)] for count in cameras}
    return result


def _server_description(server: LocalTritonServer) -> dict[str, Any]:
    """The server and the model as the server itself reports them (instance kind as it resolved it)."""
    import json
    import urllib.request

    def get(path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{server.url}{path}", timeout=10) as reply:
            return json.loads(reply.read())

    metadata, config = get("/v2"), get(f"/v2/models/{MODEL_NAME}/config")
    group = config["instance_group"][0]
    return {"program": "tritonserver", "version": metadata["version"], "pytriton": importlib.metadata.version("nvidia-pytriton"),
            "backend": "python (model.py: ONNX Runtime CPU)", "max_batch_size": config["max_batch_size"],
            "max_queue_delay_us": int(config["dynamic_batching"]["max_queue_delay_microseconds"]),
            "instances": int(group["count"]), "instance_kind": group["kind"],
            "tensors": "binary" if "binary_tensor_data" in metadata.get("extensions", []) else "json"}


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table: frames/s per camera count, local and through Triton side by side."""
    by_key = {(run["backend"], run["cameras"]): run for run in result["runs"]}
    lines = ["| cameras | local runtime (ort-cpu) frames/s | through Triton frames/s | Triton / local | "
             "Triton p50 / p99 latency, ms | frames per Triton execution |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for cameras in result["settings"]["cameras"]:
        local, served = by_key.get(("ort-cpu", cameras)), by_key.get(("triton", cameras))
        if not local or not served:
            continue
        batch = served["server"]["mean_batch_frames"]
        lines.append(f"| {cameras} | {local['frames_per_s']:.1f} | {served['frames_per_s']:.1f} | "
                     f"{served['frames_per_s'] / local['frames_per_s']:.2f} | {served['latency_ms']['p50']:.1f} / "
                     f"{served['latency_ms']['p99']:.1f} | {'n/a' if batch is None else f'{batch:.2f}'} |")
    return "\n".join(lines)
