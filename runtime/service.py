"""``occ run --config site.toml``: the long-running camera service.

Example configuration (every key but ``model.path`` and ``source.spec`` has a default)::

    [model]
    path = "ped2.onnx"
    backend = "ort-cpu"          # ort-cpu | ort-cuda | tensorrt | triton (see occ.runtime.backends)
    preprocess = "cpu"           # cpu | gpu (CUDA kernels; with ort-cuda or tensorrt the frame stays on the GPU)
    # triton_url = "triton-host:8000"   # backend "triton": path is then the model's name on the server

    [thresholds]                 # optional overrides of the manifest's values
    # tau = 3.0                  # ALOCC
    # alpha = 0.2                # AVID
    # zeta = 0.4

    [source]
    spec = "rtsp://camera.local/stream"   # file, folder, /dev/videoN, URL or GStreamer pipeline
    buffer = 2                   # live sources: newest frames kept; older ones are dropped
    backoff = 0.5                # first reconnect delay, s (doubles up to max_backoff); a live source and a
    max_backoff = 8.0            # Triton server lost mid-stream reconnect by these rules
    # give_up_after = 60         # stop after this many seconds without frames (or without the server)

    [events]
    log = "events.jsonl"         # JSON lines: opened / closed events
    open_after = 3               # K anomalous frames in a row open an episode
    close_after = 5              # J quiet frames in a row close it

    [snapshots]
    folder = "snapshots"         # JPEG of each event's peak frame with the overlay
    max_files = 200
    max_mb = 200

    [overlay]
    video = ""                   # optional overlay video (.avi)

    [frames]
    log = ""                     # optional per-frame JSON lines

    [metrics]
    port = 9100                  # /healthz and /metrics (Prometheus); 0: off
    host = "127.0.0.1"

SIGTERM or SIGINT stops the loop; an open episode is closed (``closed_by: "shutdown"``) and
written before the process exits.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import BackendError
from .detector import open_detector
from .events import EpisodeTracker, EventLog, Metrics, MetricsServer, OverlayWriter, SnapshotStore, render_overlay
from .sources import LiveSource, open_source

log = logging.getLogger("occ.service")


class ConfigError(ValueError):
    """A configuration file that cannot be used; one line naming the file and the key."""


@dataclass
class ServiceConfig:
    model: str
    source: str
    backend: str = "ort-cpu"
    preprocess: str = "cpu"
    triton_url: str = ""  # backend "triton": the server; ``model`` is then the model's name there
    thresholds: dict[str, float] = field(default_factory=dict)
    buffer: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    give_up_after: float | None = None
    events_log: str = "events.jsonl"
    open_after: int = 3
    close_after: int = 5
    snapshots: str = ""
    snapshot_max_files: int = 200
    snapshot_max_mb: float = 200.0
    overlay_video: str = ""
    frames_log: str = ""
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @classmethod
    def from_toml(cls, path: str | Path) -> "ServiceConfig":
        path = Path(path)
        try:
            import tomllib
        except ImportError:  # Python 3.10 (JetPack 6)
            import tomli as tomllib
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        known = {"model", "thresholds", "source", "events", "snapshots", "overlay", "frames", "metrics"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(known)}")
        try:
            model, source = data["model"]["path"], data["source"]["spec"]
        except KeyError as exc:
            raise ConfigError(f"{path}: missing required key {exc.args[0]!r} (need [model] path and [source] spec)") from None
        get = lambda section, key, default: data.get(section, {}).get(key, default)  # noqa: E731
        backend = get("model", "backend", "ort-cpu")
        if backend == "triton" and not get("model", "triton_url", ""):
            raise ConfigError(f"{path}: [model] backend = \"triton\" needs triton_url (and path = the model's name on the server)")
        return cls(
            model=model if backend == "triton" else str((path.parent / model) if not Path(model).is_absolute() else model),
            source=source,
            backend=backend,
            preprocess=get("model", "preprocess", "cpu"),
            triton_url=get("model", "triton_url", ""),
            thresholds={k: float(v) for k, v in data.get("thresholds", {}).items()},
            buffer=int(get("source", "buffer", 2)),
            backoff=float(get("source", "backoff", 0.5)),
            max_backoff=float(get("source", "max_backoff", 8.0)),
            give_up_after=get("source", "give_up_after", None),
            events_log=get("events", "log", "events.jsonl"),
            open_after=int(get("events", "open_after", 3)),
            close_after=int(get("events", "close_after", 5)),
            snapshots=get("snapshots", "folder", ""),
            snapshot_max_files=int(get("snapshots", "max_files", 200)),
            snapshot_max_mb=float(get("snapshots", "max_mb", 200)),
            overlay_video=get("overlay", "video", ""),
            frames_log=get("frames", "log", ""),
            metrics_port=int(get("metrics", "port", 0)),
            metrics_host=get("metrics", "host", "127.0.0.1"),
        )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line (structured logs for journald or a log shipper)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        for key in ("source", "event_id", "frames", "dropped", "reconnects", "path"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry)


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("occ")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Service:
    """Source → detector → episodes, snapshots, overlays and metrics, until stopped or the source ends."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.stop_event = threading.Event()
        self.source = None

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets flags; the loop finishes the frame and cleans up."""
        self.stop_event.set()
        if isinstance(self.source, LiveSource):
            self.source._stop.set()

    def run(self) -> dict[str, Any]:
        cfg = self.config
        reconnect_rules = {"backoff": cfg.backoff, "max_backoff": cfg.max_backoff, "give_up_after": cfg.give_up_after}
        backend_options = {"url": cfg.triton_url, **reconnect_rules, "stop": self.stop_event} if cfg.backend == "triton" else {}
        detector = open_detector(cfg.model, cfg.backend, cfg.preprocess, **backend_options)
        detector.set_thresholds(**cfg.thresholds)
        live_options = {"buffer": cfg.buffer, **reconnect_rules}
        self.source = source = open_source(cfg.source, **live_options)
        tracker = EpisodeTracker(cfg.open_after, cfg.close_after)
        events = EventLog(cfg.events_log)
        snapshots = SnapshotStore(cfg.snapshots, cfg.snapshot_max_files, int(cfg.snapshot_max_mb * 2**20)) if cfg.snapshots else None
        overlay = OverlayWriter(cfg.overlay_video, detector.manifest) if cfg.overlay_video else None
        frames_log = open(cfg.frames_log, "a", buffering=1) if cfg.frames_log else None
        metrics = Metrics()
        server = None
        if cfg.metrics_port:
            server = MetricsServer(metrics, cfg.metrics_port, cfg.metrics_host,
                                   healthy=lambda: not self.stop_event.is_set() and source.stats.connected)
        log.info("service started", extra={"source": cfg.source, "path": cfg.model})
        peak_image = None
        try:
            for frame in source:
                if self.stop_event.is_set():
                    break
                started = time.perf_counter()
                try:
                    result = detector.process(frame.image, frame.timestamp)
                except BackendError:
                    if self.stop_event.is_set():  # stopped while the backend waited for its server
                        break
                    raise
                latency_ms = (time.perf_counter() - started) * 1000
                metrics.observe(result, latency_ms, time.monotonic())
                metrics.dropped, metrics.reconnects = source.stats.dropped, source.stats.reconnects
                metrics.backend_reconnects = _backend_reconnects(detector)
                if frames_log:
                    frames_log.write(json.dumps(result.to_json()) + "\n")
                if overlay:
                    overlay.write(frame.image, result)
                opened, closed, new_peak = tracker.update(result)
                if opened:
                    metrics.events_opened += 1
                    events.write("opened", opened)
                    log.info("event opened", extra={"event_id": opened.event_id})
                if new_peak and snapshots:
                    peak_image = render_overlay(frame.image, result, detector.manifest)
                if closed:
                    self._close_event(closed, events, snapshots, peak_image, metrics)
                    peak_image = None
        finally:
            pending = tracker.flush("shutdown" if self.stop_event.is_set() else "end of stream")
            if pending:
                self._close_event(pending, events, snapshots, peak_image, metrics)
            source.close()
            events.close()
            if overlay:
                overlay.close()
            if frames_log:
                frames_log.close()
            if server:
                server.close()
            detector.close()
            log.info("service stopped", extra={"frames": metrics.frames, "dropped": source.stats.dropped,
                                                "reconnects": source.stats.reconnects})
        return {"frames": metrics.frames, "anomalous_frames": metrics.anomalous_frames, "events": metrics.events_opened,
                "dropped": source.stats.dropped, "reconnects": source.stats.reconnects,
                "backend_reconnects": _backend_reconnects(detector)}

    @staticmethod
    def _close_event(event, events: EventLog, snapshots: SnapshotStore | None, peak_image, metrics: Metrics) -> None:
        if snapshots is not None and peak_image is not None:
            snapshots.save(f"event_{event.event_id:06d}_frame_{event.peak_frame:08d}", peak_image)
        events.write("closed", event)
        metrics.events_closed += 1
        log.info("event closed", extra={"event_id": event.event_id})


def _backend_reconnects(detector) -> int:
    """Times a server backend got its server back (0 for a local backend)."""
    return getattr(getattr(detector, "backend", None), "reconnects", 0)
