"""The running service's metrics, in Prometheus conventions, on ``/metrics`` (and ``/healthz``).

Every metric carries the labels ``camera`` (the source's name) and ``model`` (the model file's
name), so several cameras, or several services scraped by one Prometheus, are told apart. Times
are in seconds. docs/metrics.md lists every metric with an example query per question an operator
asks.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

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
        self.remote_sinks: list = []  # the camera's SpooledSinks (MQTT, webhook), read at every scrape
        self.model_details: dict[str, str] = {}
        self.thresholds: dict[str, float] = {}
        self.scene_reason = ""  # the scene guard's reason while the whole view is changed
        self.drift = None  # the drift watch's last state (occ.runtime.scoring.drift.DriftState)
        self._lock = threading.Lock()

    def running(self, method: str, sha256: str | None, thresholds: dict[str, float]) -> None:
        """The model and thresholds this camera runs with (``occ_model_info``, ``occ_threshold``)."""
        self.model_details = {"method": method, "sha256": sha256 or "",
                              "thresholds": ",".join(f"{name}={value:g}" for name, value in sorted(thresholds.items()))}
        self.thresholds = dict(thresholds)

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
        self.registry.register(_RemoteSinkCollector(self))

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
        model = InfoMetricFamily("occ_model", "The model each camera runs: method, SHA-256 of the file, thresholds in force.",
                                 labels=labels)
        thresholds = GaugeMetricFamily("occ_threshold", "Thresholds in force (ALOCC tau; AVID alpha, zeta): the manifest's or "
                                       "the overrides the service runs with.", labels=[*labels, "name"])
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
            if camera.model_details:
                model.add_metric(values, camera.model_details)
            for name, value in camera.thresholds.items():
                thresholds.add_metric([*values, name], value)
        return [dropped, reconnects, backend_reconnects, connected, pending, quantiles, unreadable, model, thresholds, needs_calibration, scene,
                drifting, drift_statistic, drift_threshold]


class _RemoteSinkCollector:
    """Each camera's remote sinks (MQTT, webhook), read at scrape time from their spools."""

    def __init__(self, metrics: ServiceMetrics):
        self.metrics = metrics

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        labels = ["camera", "model", "sink"]
        delivered = CounterMetricFamily("occ_sink_delivered_events", "Events a remote sink (mqtt, webhook) acknowledged.", labels=labels)
        dropped = CounterMetricFamily("occ_sink_dropped_events", "Events a remote sink lost: its spool was full, the disk was, "
                                      "or the receiver refused them for good.", labels=labels)
        spooled = GaugeMetricFamily("occ_sink_spooled_events", "Events on disk waiting for a remote sink.", labels=labels)
        for camera in self.metrics.cameras:
            for sink in camera.remote_sinks:
                values = [camera.labels["camera"], camera.labels["model"], sink.name]
                delivered.add_metric(values, sink.delivered)
                dropped.add_metric(values, sink.spool.dropped)
                spooled.add_metric(values, len(sink.spool))
        return [delivered, dropped, spooled] if spooled.samples else []  # no sink configured: no family to list


class _AsyncHTTPServer:
    """A small HTTP/1.x GET server on one asyncio loop in a background thread.

    An idle connection is a socket and a suspended coroutine, not a thread: hundreds of clients
    that connect and say nothing cost nothing and delay no scrape (prometheus_client's own server
    starts a thread per connection, with no timeout). A request must arrive whole within
    ``request_timeout_s``; bodies are rendered on a small thread pool so a slow render never stalls
    the loop; every answer closes its connection.

    Args:
        address: (host, port) to bind; port 0 picks a free one.
        respond: path → (status, content type, body); called on the pool.
        workers: answers rendered at once.

    Raises:
        OSError: the address cannot be bound.
    """

    request_timeout_s = 10.0
    max_connections = 1024  # beyond this a new connection is closed at once (file descriptors are finite)
    max_request_bytes = 16384

    def __init__(self, address: tuple[str, int], respond: Callable[[str], tuple[int, str, bytes]], workers: int):
        self.respond = respond
        self._socket = socket.create_server(address, backlog=256)
        self.server_address = self._socket.getsockname()
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="occ metrics")
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="occ metrics", daemon=True)
        self._thread.start()
        self._started.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, sock=self._socket, limit=self.max_request_bytes))
        self._started.set()
        self.loop.run_forever()
        self._server.close()
        self.loop.run_until_complete(self._server.wait_closed())
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections > self.max_connections:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout_s)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return  # silent, too slow, too long or gone: dropped without an answer
            words = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(words) != 3 or not words[2].startswith("HTTP/"):
                status, kind, body = 400, "text/plain", b"bad request\n"
            elif words[0] not in ("GET", "HEAD"):
                status, kind, body = 405, "text/plain", b"method not allowed\n"
            else:
                try:
                    status, kind, body = await self.loop.run_in_executor(self.pool, self.respond, words[1].split("?", 1)[0])
                except Exception:  # noqa: BLE001 - a failing render must not take the server down
                    status, kind, body = 500, "text/plain", b"internal error\n"
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
                      503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode("latin-1") + (body if words[0] != "HEAD" else b""))
            await asyncio.wait_for(writer.drain(), self.request_timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            pass  # a client that stops reading or resets is routine here
        finally:
            self.connections -= 1
            writer.close()

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.pool.shutdown(wait=False, cancel_futures=True)


class MetricsServer:
    """``/healthz`` and ``/metrics`` over HTTP on a background thread.

    Args:
        render: the metrics body (Prometheus text format).
        port: TCP port (0 picks a free one; see :attr:`port`).
        host: address to bind (loopback by default).
        healthy: whether the service is healthy (sources connected, loops alive).
        workers: answers rendered at once (idle or slow connections take none).

    Raises:
        OSError: the port cannot be bound (in use, or not allowed).
    """

    def __init__(self, render: Callable[[], bytes], port: int = 0, host: str = "127.0.0.1",
                 healthy: Callable[[], bool] = lambda: True, workers: int = 4):
        self.render, self.healthy = render, healthy
        self.server = _AsyncHTTPServer((host, port), self._respond, workers)
        self.port = self.server.server_address[1]

    def _respond(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.render()
        if path == "/healthz":
            ok = self.healthy()
            return (200, "text/plain", b"ok\n") if ok else (503, "text/plain", b"unhealthy\n")
        return 404, "text/plain", b"not found\n"

    def close(self) -> None:
        self.server.close()


def port_problem(host: str, port: int) -> str | None:
    """Why the metrics port cannot be served (in use, not allowed), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return f"{host}:{port} cannot be served ({exc.strerror or exc})"
    return None
