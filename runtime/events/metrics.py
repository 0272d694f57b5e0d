"""The running service's metrics, in Prometheus conventions, on ``/metrics`` (and ``/healthz``).

Every metric carries the labels ``camera`` (the source's name) and ``model`` (the model file's
name), so several cameras, or several services scraped by one Prometheus, are told apart. Times
are in seconds. docs/metrics.md lists every metric with an example query per question an operator
asks.
"""
from __future__ import annotations

import socket
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ..scoring.decide import FrameResult

# per-frame latency and stage times on a camera box: 0.5 ms (a GPU) to 2.5 s (an overloaded CPU)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_QUANTILES = (0.5, 0.9, 0.99)
SCORE_WINDOW = 1000  # frames the score quantiles are taken over

# *_created series (a counter's creation time) only double the body; a camera's counters start with the process
disable_created_metrics()


class CameraMetrics:
    """What one camera's loop reports; the source's own counters are read at every scrape."""

    def __init__(self, metrics: "ServiceMetrics", camera: str, source_stats: Callable[[], object] | None = None):
        self.labels = {"camera": camera, "model": metrics.model}
        self._m = metrics
        self.source_stats = source_stats
        self.pending_events: Callable[[], int] = lambda: 0
        self.backend_reconnects: Callable[[], int] = lambda: 0  # a server backend's (Triton); 0 for a local one
        self.scores: deque[float] = deque(maxlen=SCORE_WINDOW)
        self.scene_reason = ""  # the scene guard's reason while the whole view is changed
        self.drift = None  # the drift watch's last state (occ.runtime.scoring.drift.DriftState)
        self._lock = threading.Lock()

    def observe(self, result: FrameResult, seconds: float, stages: dict[str, float] | None = None) -> None:
        m, labels = self._m, self.labels
        m.frames.labels(**labels).inc()
        if result.decision:
            m.anomalous.labels(**labels).inc()
        m.latency.labels(**labels).observe(seconds)
        for stage, value in (stages or {}).items():
            m.stages.labels(stage=stage, **labels).observe(value)
        with self._lock:
            self.scores.append(float(result.score))

    def event_opened(self) -> None:
        self._m.events.labels(**self.labels).inc()

    def sink_error(self, sink: str) -> None:
        self._m.sink_errors.labels(sink=sink, **self.labels).inc()

    def score_quantiles(self) -> dict[float, float] | None:
        with self._lock:
            if not self.scores:
                return None
            values = np.fromiter(self.scores, np.float64)
        return {q: float(np.quantile(values, q)) for q in SCORE_QUANTILES}


class ServiceMetrics:
    """One registry for a service's cameras."""

    def __init__(self, model: str):
        self.model = model
        self.registry = CollectorRegistry()
        labels = ["camera", "model"]
        self.frames = Counter("occ_frames", "Frames scored.", labels, registry=self.registry)
        self.anomalous = Counter("occ_anomalous_frames", "Frames decided anomalous.", labels, registry=self.registry)
        self.events = Counter("occ_events", "Anomaly events opened.", labels, registry=self.registry)
        self.sink_errors = Counter("occ_sink_errors", "Writes that failed (disk full, unwritable): events held or skipped.",
                                   [*labels, "sink"], registry=self.registry)
        self.latency = Histogram("occ_frame_latency_seconds", "Time to score one frame, from raw frame to result.", labels,
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("occ_stage_seconds", "Time per stage of scoring one frame (preprocess, inference, postprocess).",
                                [*labels, "stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.cameras: list[CameraMetrics] = []
        self.registry.register(_LiveCollector(self))

    def camera(self, name: str, source_stats: Callable[[], object] | None = None) -> CameraMetrics:
        camera = CameraMetrics(self, name, source_stats)
        self.cameras.append(camera)
        return camera

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    """Values read at scrape time: the sources' counters (kept by their reader threads, so drops and
    reconnects show while no frame is scored), connection state, held events and score quantiles."""

    def __init__(self, metrics: ServiceMetrics):
        self.metrics = metrics

    def describe(self) -> Iterable:  # nothing fixed to describe: the families depend on the cameras
        return []

    def collect(self) -> Iterable:
        labels = ["camera", "model"]
        dropped = CounterMetricFamily("occ_dropped_frames", "Frames dropped to keep real time (the model fell behind).", labels=labels)
        reconnects = CounterMetricFamily("occ_reconnects", "Times the source was reconnected.", labels=labels)
        unreadable = CounterMetricFamily("occ_frames_unreadable", "Frames skipped because they could not be decoded.", labels=labels)
        backend_reconnects = CounterMetricFamily("occ_backend_reconnects", "Times the inference server came back after it was lost.",
                                                 labels=labels)
        connected = GaugeMetricFamily("occ_source_connected", "1 while the source delivers frames.", labels=labels)
        pending = GaugeMetricFamily("occ_pending_events", "Event lines held in memory because the events log cannot be written.",
                                    labels=labels)
        # "quantile" is reserved for summaries; a gauge per percentile of a sliding window is not one
        quantiles = GaugeMetricFamily("occ_score_recent", f"Frame score percentiles over the last {SCORE_WINDOW} frames.",
                                      labels=[*labels, "percentile"])
        needs_calibration = GaugeMetricFamily("occ_needs_calibration", "1 while the scene guard finds the whole view changed "
                                              "(anomaly events held) or the scores drifted: run `occ calibrate` for this camera.",
                                              labels=labels)
        scene = GaugeMetricFamily("occ_scene_changed", "1 while the whole view is changed, with the scene guard's reason.",
                                  labels=[*labels, "reason"])
        drifting = GaugeMetricFamily("occ_drift", "1 while the frame scores' distribution has drifted from the normal footage's.",
                                     labels=labels)
        drift_statistic = GaugeMetricFamily("occ_drift_statistic", "The drift watch's last KS statistic against the normal scores.",
                                            labels=labels)
        drift_threshold = GaugeMetricFamily("occ_drift_threshold", "The KS statistic over which the drift watch raises drift.",
                                            labels=labels)
        for camera in self.metrics.cameras:
            values = [camera.labels["camera"], camera.labels["model"]]
            drift = camera.drift
            if drift is not None:
                drifting.add_metric(values, 1.0 if drift.drifting else 0.0)
                if drift.statistic is not None:
                    drift_statistic.add_metric(values, drift.statistic)
                if drift.threshold is not None:
                    drift_threshold.add_metric(values, drift.threshold)
            needs_calibration.add_metric(values, 1.0 if camera.scene_reason or (drift is not None and drift.drifting) else 0.0)
            if camera.scene_reason:
                scene.add_metric([*values, camera.scene_reason], 1.0)
            stats = camera.source_stats() if camera.source_stats else None
            if stats is not None:
                dropped.add_metric(values, stats.dropped)
                reconnects.add_metric(values, stats.reconnects)
                unreadable.add_metric(values, stats.unreadable)
                connected.add_metric(values, 1.0 if stats.connected else 0.0)
            pending.add_metric(values, camera.pending_events())
            backend_reconnects.add_metric(values, camera.backend_reconnects())
            for q, value in (camera.score_quantiles() or {}).items():
                quantiles.add_metric([*values, f"{q * 100:g}"], value)
        return [dropped, reconnects, backend_reconnects, connected, pending, quantiles, unreadable, needs_calibration, scene, drifting,
                drift_statistic, drift_threshold]


class _PooledHTTPServer(HTTPServer):
    """Requests handled by a fixed pool of threads (idle connections cannot pile up threads) and
    sockets that time out (a client that connects and says nothing is dropped)."""

    request_timeout_s = 5.0

    def __init__(self, address, handler, workers: int):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="occ metrics")
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address) -> None:
        request.settimeout(self.request_timeout_s)
        self.pool.submit(self._handle, request, client_address)

    def _handle(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken client must not take the server down
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request, client_address) -> None:  # timeouts and resets are routine here
        pass

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


class MetricsServer:
    """``/healthz`` and ``/metrics`` over HTTP on a background thread.

    Args:
        render: the metrics body (Prometheus text format).
        port: TCP port (0 picks a free one; see :attr:`port`).
        host: address to bind (loopback by default).
        healthy: whether the service is healthy (sources connected, loops alive).
        workers: requests served at once.

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """

    def __init__(self, render: Callable[[], bytes], port: int = 0, host: str = "127.0.0.1",
                 healthy: Callable[[], bool] = lambda: True, workers: int = 4):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/metrics":
                    body, status, kind = owner.render(), 200, "text/plain; version=0.0.4; charset=utf-8"
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

        self.render, self.healthy = render, healthy
        self.server = _PooledHTTPServer((host, port), Handler, workers)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="occ metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def port_problem(host: str, port: int) -> str | None:
    """Why the metrics port cannot be served (in use, not allowed), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"{host}:{port} cannot be served ({exc.strerror or exc})"
    return None
