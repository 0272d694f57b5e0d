"""Counters and latencies of the running service, served as Prometheus text on ``/metrics``."""
from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np

from ..scoring.decide import FrameResult


class Metrics:
    """Counters and a window of latencies, rendered in Prometheus text format."""

    def __init__(self, window: int = 1000):
        self._lock = threading.Lock()
        self.frames = 0
        self.anomalous_frames = 0
        self.events_opened = 0
        self.events_closed = 0
        self.dropped = 0
        self.reconnects = 0
        self.backend_reconnects = 0
        self.latencies_ms: deque[float] = deque(maxlen=window)
        self._times: deque[float] = deque(maxlen=window)
        self.started = None

    def observe(self, result: FrameResult, latency_ms: float, now: float) -> None:
        with self._lock:
            self.frames += 1
            self.anomalous_frames += int(result.decision)
            self.latencies_ms.append(latency_ms)
            self._times.append(now)

    def fps(self) -> float:
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def render(self) -> str:
        with self._lock:
            latencies = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
            lines = [
                "# HELP occ_frames_total Frames scored.", "# TYPE occ_frames_total counter", f"occ_frames_total {self.frames}",
                "# HELP occ_anomalous_frames_total Frames decided anomalous.", "# TYPE occ_anomalous_frames_total counter",
                f"occ_anomalous_frames_total {self.anomalous_frames}",
                "# HELP occ_events_total Anomaly episodes opened.", "# TYPE occ_events_total counter",
                f"occ_events_total {self.events_opened}",
                "# HELP occ_dropped_frames_total Frames dropped to keep real time.", "# TYPE occ_dropped_frames_total counter",
                f"occ_dropped_frames_total {self.dropped}",
                "# HELP occ_reconnects_total Source reconnections.", "# TYPE occ_reconnects_total counter",
                f"occ_reconnects_total {self.reconnects}",
                "# HELP occ_backend_reconnects_total Times the inference server came back after it was lost.",
                "# TYPE occ_backend_reconnects_total counter", f"occ_backend_reconnects_total {self.backend_reconnects}",
                "# HELP occ_latency_ms Per-frame processing latency over the recent window.", "# TYPE occ_latency_ms summary",
            ]
            for q in (0.5, 0.9, 0.99):
                lines.append(f'occ_latency_ms{{quantile="{q}"}} {float(np.quantile(latencies, q)):.4f}')
            lines.append(f"occ_latency_ms_count {len(self.latencies_ms)}")
        lines += ["# HELP occ_fps Frames per second over the recent window.", "# TYPE occ_fps gauge", f"occ_fps {self.fps():.3f}"]
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``/healthz`` and ``/metrics`` over HTTP on a background thread.

    Args:
        metrics: the metrics to render.
        port: TCP port (0 picks a free one; see :attr:`port`).
        host: address to bind (loopback by default).
        healthy: callable telling whether the service is healthy (source connected, loop alive).
    """

    def __init__(self, metrics: Metrics, port: int = 0, host: str = "127.0.0.1", healthy: Callable[[], bool] = lambda: True):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/metrics":
                    body, status, kind = owner.metrics.render().encode(), 200, "text/plain; version=0.0.4"
                elif self.path == "/healthz":
                    ok = owner.healthy()
                    body, status, kind = (b"ok\n" if ok else b"unhealthy\n"), (200 if ok else 503), "text/plain"
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.metrics, self.healthy = metrics, healthy
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="occ metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
