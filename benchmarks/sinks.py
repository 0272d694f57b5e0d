"""What the remote event sinks cost the frame loop, and what idle connections cost a /metrics scrape.

    occ-bench sinks --json benchmarks/results/sinks-DATE-cpu.json

- ``spool_append_ms``: one event spooled for a sink (the only work the camera's loop does for it:
  one small file written and renamed), over ``appends`` events into a real folder;
  ``spool_append_fsync_ms`` the same with an fsync of the file and its folder per event (``Spool(sync=True)``).
- ``scrape_ms``: a full /metrics request (connect, request, answer) with no other client, and with
  ``idle_connections`` clients connected that never send a byte. Aim: under 100 ms either way.
"""
from __future__ import annotations

import json
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from occ.runtime.events import MetricsServer, ServiceMetrics, Spool

from .training_runs import machine

SCRAPE_AIM_MS = 100.0


def _stats(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000
    return {"p50": round(float(np.median(ms)), 3), "p99": round(float(np.quantile(ms, 0.99)), 3), "max": round(float(ms.max()), 3)}


def spool_append_cost(appends: int = 1000, sync: bool = False, folder: str | Path | None = None) -> dict[str, float]:
    """Milliseconds per :meth:`Spool.append` of a typical event record."""
    record = {"type": "opened", "event_id": "gate-20261206T020000Z-0001", "camera": "gate", "start_frame": 1234, "peak_frame": 1240,
              "peak_score": 3.21, "start_time": "2026-12-06T02:00:00Z", "end_time": None, "frames": 7}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        spool = Spool(Path(tmp) / "spool", max_events=appends + 1, sync=sync)
        costs = []
        for i in range(appends):
            started = time.perf_counter()
            spool.append({**record, "start_frame": i})
            costs.append(time.perf_counter() - started)
    return _stats(costs)


def scrape_cost(idle_connections: int, scrapes: int = 50) -> dict[str, float]:
    """Milliseconds per /metrics request while ``idle_connections`` clients hold silent connections."""
    metrics = ServiceMetrics("m.onnx")
    for name in ("gate", "yard"):
        metrics.camera(name)
    server = MetricsServer(metrics.render, port=0)
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(idle_connections)]
    try:
        costs = []
        for _ in range(scrapes):
            started = time.perf_counter()
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=30).read()
            costs.append(time.perf_counter() - started)
    finally:
        for connection in idle:
            connection.close()
        server.close()
    return _stats(costs)


def run(appends: int = 1000, idle_connections: int = 100) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    idle = scrape_cost(idle_connections)
    return {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit.stdout.strip() or "unknown",
            "command": f"occ-bench sinks --appends {appends} --idle {idle_connections}",
            "spool_append_ms": spool_append_cost(appends), "spool_append_fsync_ms": spool_append_cost(appends, sync=True), "appends": appends,
            "scrape_ms": {"idle_0": scrape_cost(0), f"idle_{idle_connections}": idle}, "idle_connections": idle_connections,
            "aims": {"scrape_ms_max": SCRAPE_AIM_MS}, "passed": idle["max"] < SCRAPE_AIM_MS}
