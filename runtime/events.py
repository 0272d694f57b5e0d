"""From per-frame decisions to what an operator sees: episodes, event logs, snapshots, metrics.

An episode opens when the decision holds for ``open_after`` frames in a row and closes after
``close_after`` quiet frames in a row. Each event records its start and end time and frame, the
peak score, the peak frame's mask area and boxes.
"""
from __future__ import annotations

import json
import os
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from .detector import FrameResult


@dataclass
class Event:
    event_id: int
    start_frame: int
    start_time: float | None
    end_frame: int | None = None
    end_time: float | None = None
    peak_score: float = float("-inf")
    peak_frame: int = -1
    peak_time: float | None = None
    mask_area: int = 0
    boxes: list[list[int]] = field(default_factory=list)
    frames: int = 0
    closed_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class EpisodeTracker:
    """Opens and closes anomaly episodes from a stream of frame results.

    Args:
        open_after: consecutive anomalous frames that open an episode (K).
        close_after: consecutive normal frames that close it (J).
    """

    def __init__(self, open_after: int = 3, close_after: int = 5):
        if open_after < 1 or close_after < 1:
            raise ValueError(f"open_after and close_after must be >= 1, got {open_after}, {close_after}")
        self.open_after, self.close_after = open_after, close_after
        self.current: Event | None = None
        self._streak_on = 0
        self._streak_off = 0
        self._pending: list[FrameResult] = []
        self._next_id = 1

    def update(self, result: FrameResult) -> tuple[Event | None, Event | None, bool]:
        """Feed one frame. Returns ``(opened, closed, is_new_peak)``."""
        if result.decision:
            self._streak_on += 1
            self._streak_off = 0
            if self.current is not None:
                return None, None, self._absorb(result)
            self._pending.append(result)
            if self._streak_on < self.open_after:
                return None, None, False
            first = self._pending[0]
            self.current = opened = Event(self._next_id, first.index, first.timestamp)
            self._next_id += 1
            new_peak = False
            for pending in self._pending:
                new_peak = self._absorb(pending) or new_peak
            self._pending = []
            return opened, None, new_peak
        self._streak_on = 0
        self._pending = []
        if self.current is None:
            return None, None, False
        self._streak_off += 1
        if self._streak_off < self.close_after:
            return None, None, False
        return None, self._close("quiet"), False

    def _absorb(self, result: FrameResult) -> bool:
        event = self.current
        event.frames += 1
        event.end_frame, event.end_time = result.index, result.timestamp
        if result.score > event.peak_score:
            event.peak_score, event.peak_frame, event.peak_time = float(result.score), result.index, result.timestamp
            event.mask_area, event.boxes = result.mask_area, result.boxes
            return True
        return False

    def _close(self, reason: str) -> Event:
        """End the episode; its end is its last anomalous frame."""
        event = self.current
        event.closed_by = reason
        self.current = None
        self._streak_off = 0
        return event

    def flush(self, reason: str = "shutdown") -> Event | None:
        """Close the open episode, if any (at shutdown or end of stream)."""
        if self.current is None:
            return None
        return self._close(reason)


class EventLog:
    """Appends events as JSON lines, flushed per line so a crash loses nothing written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", buffering=1)

    def write(self, kind: str, event: Event) -> None:
        self._handle.write(json.dumps({"type": kind, **event.to_json()}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class SnapshotStore:
    """JPEG snapshots of event peaks, with bounded disk use (oldest removed first).

    Args:
        folder: where snapshots go.
        max_files: most snapshots kept.
        max_bytes: most bytes kept.
    """

    def __init__(self, folder: str | Path, max_files: int = 200, max_bytes: int = 200 * 2**20):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_files, self.max_bytes = max_files, max_bytes

    def save(self, name: str, image: np.ndarray) -> Path:
        path = self.folder / f"{name}.jpg"
        tmp = self.folder / f".{name}.jpg.tmp"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"{path}: JPEG encoding failed")
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
        self.rotate()
        return path

    def rotate(self) -> None:
        files = sorted(self.folder.glob("*.jpg"), key=lambda p: (p.stat().st_mtime, p.name))
        total = sum(p.stat().st_size for p in files)
        while files and (len(files) > self.max_files or total > self.max_bytes):
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()


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
