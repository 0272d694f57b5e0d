"""Where events go: JSON-lines logs, rotated JPEG snapshots of their peak frames and short event
clips, and the per-frame record.

A camera must keep scoring when its disk fills up or a folder turns unwritable. Every sink here
degrades instead of failing: a write that fails is counted, logged at most once a minute, and
retried on the next write; event lines are held in memory (up to a bound) until the log takes
them again, and at shutdown whatever could still not be written goes to the service's own log,
so no event is lost.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from ..files import default_file_mode, sync_folder
from ..scoring.decide import FrameResult
from .episodes import EventContext

log = logging.getLogger("occ.sinks")

WARN_EVERY_S = 60.0


class SinkHealth:
    """Write failures of one sink: a count, and a warning at most once a minute."""

    def __init__(self, name: str, on_error: Callable[[str], None] | None = None):
        self.name, self.on_error = name, on_error
        self.errors = 0
        self.degraded = False
        self._last_warning = float("-inf")

    def failed(self, exc: OSError, detail: str = "") -> None:
        self.errors += 1
        self.degraded = True
        if self.on_error is not None:
            self.on_error(self.name)
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning(f"cannot write {self.name} ({exc.strerror or exc}); {detail}retrying on the next write",
                        extra={"path": self.name, "errors": self.errors})

    def recovered(self) -> None:
        if self.degraded:
            self.degraded = False
            log.info(f"{self.name} writable again", extra={"path": self.name, "errors": self.errors})


class JsonLinesLog:
    """Appends JSON lines to a file, flushed per line so a crash loses nothing written; rotates at
    ``max_bytes`` (``events.jsonl`` → ``events.jsonl.1`` …, ``backups`` kept); holds up to
    ``max_pending`` lines in memory while the file cannot be written.

    Args:
        path: the log file (appended to; created with the umask's mode).
        max_bytes: rotate once the file reaches this size (0: never).
        backups: rotated files kept.
        max_pending: lines held while writes fail; beyond that the oldest pending line is dropped (counted).
        on_error: called with the log's name on every failed write (for metrics).
    """

    def __init__(self, path: str | Path, max_bytes: int = 100 * 2**20, backups: int = 5, max_pending: int = 10000,
                 on_error: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self.pending: deque[str] = deque()
        self.max_pending = max_pending
        self.dropped = 0
        self.health = SinkHealth(str(self.path), on_error)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._size = 0

    def _open(self) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, default_file_mode())
            self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        if not self.max_bytes or self._size < self.max_bytes or not stat.S_ISREG(os.fstat(self._fd).st_mode):
            return  # a pipe or /dev/stdout is never renamed
        self._close_handle()
        for index in range(self.backups, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            newer = self.path.with_name(f"{self.path.name}.{index - 1}") if index > 1 else self.path
            if newer.exists():
                os.replace(newer, older)
        sync_folder(self.path.parent)
        self._open()

    def write(self, record: dict[str, Any]) -> bool:
        """Append one record; False when it could not be written yet (it is held and retried)."""
        line = json.dumps(record, default=_plain) + "\n"
        with self._lock:
            self.pending.append(line)
            while len(self.pending) > self.max_pending:
                self.pending.popleft()
                self.dropped += 1
            return self._drain()

    def _drain(self) -> bool:
        try:
            self._open()
            while self.pending:
                self._rotate()
                self._append(self.pending[0].encode())
                self.pending.popleft()
        except OSError as exc:
            self._close_handle()
            self.health.failed(exc, f"{len(self.pending)} line(s) held in memory; ")
            return False
        self.health.recovered()
        return True

    def _append(self, data: bytes) -> None:
        """One whole line or nothing: a short write (disk full midway) is cut back off the file."""
        written = os.write(self._fd, data)
        if written < len(data):
            os.ftruncate(self._fd, self._size)
            raise OSError(errno.ENOSPC, "No space left on device (short write)")
        self._size += written

    def _close_handle(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> list[str]:
        """Write what is pending if the file takes it; returns the lines that could not be written."""
        with self._lock:
            self._drain()
            self._close_handle()
            left = list(self.pending)
            self.pending.clear()
            return left


def event_record(kind: str, event: Any) -> dict[str, Any]:
    """What every sink receives for an event: its ``type`` (opened, closed) and its fields."""
    return {"type": kind, **event.to_json()}


class EventLog:
    """Opened and closed events as JSON lines (:class:`JsonLinesLog`). At shutdown, events the file
    could not take are written to the service's log instead, one JSON log line each."""

    def __init__(self, path: str | Path, max_bytes: int = 100 * 2**20, backups: int = 5, max_pending: int = 10000,
                 on_error: Callable[[str], None] | None = None):
        self.lines = JsonLinesLog(path, max_bytes, backups, max_pending, on_error)
        self.path = self.lines.path

    def write(self, kind: str, event: Any) -> bool:
        return self.lines.write(event_record(kind, event))

    def close(self) -> None:
        for line in self.lines.close():
            log.error("event not written to the events log", extra={"path": str(self.path), "event": json.loads(line)})
        if self.lines.dropped:
            log.error(f"{self.lines.dropped} event line(s) dropped while the events log could not be written",
                      extra={"path": str(self.path)})


class SnapshotStore:
    """JPEG snapshots of event peaks, with bounded disk use (oldest removed first). A snapshot that
    cannot be written is skipped (counted); the event itself is logged regardless.

    Args:
        folder: where snapshots go.
        max_files: most snapshots kept.
        max_bytes: most bytes kept.
        on_error: called on every failed write (for metrics).
    """

    def __init__(self, folder: str | Path, max_files: int = 200, max_bytes: int = 200 * 2**20,
                 on_error: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_files, self.max_bytes = max_files, max_bytes
        self.health = SinkHealth(str(self.folder), on_error)

    def save(self, name: str, image: np.ndarray) -> Path | None:
        path = self.folder / f"{name}.jpg"
        tmp = self.folder / f".{name}.jpg.tmp"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"{path}: JPEG encoding failed")

        def write() -> None:
            with open(tmp, "wb") as handle:
                handle.write(encoded.tobytes())

        if _put_in_place(tmp, path, self.health, "snapshot", write) is None:
            return None
        self.rotate()
        return path

    def rotate(self) -> None:
        rotate_folder(self.folder, "*.jpg", self.max_files, self.max_bytes)


def _put_in_place(tmp: Path, path: Path, health: SinkHealth, what: str, write: Callable[[], None] = lambda: None) -> Path | None:
    """``write`` the file under its hidden name ``tmp``, then rename it to ``path`` whole; a failure
    (disk full, not writable, nothing written) removes ``tmp``, is counted, and gives None."""
    try:
        write()
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise OSError(errno.ENOSPC, f"the {what} came out empty (disk full?)")
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        health.failed(exc, f"{what} skipped; ")
        return None
    health.recovered()
    return path


def rotate_folder(folder: Path, pattern: str, max_files: int, max_bytes: int) -> None:
    """Remove the oldest files matching ``pattern`` until at most ``max_files`` and ``max_bytes`` remain
    (hidden files, still being written, are left alone)."""
    files = sorted((p for p in folder.glob(pattern) if not p.name.startswith(".")), key=lambda p: (p.stat().st_mtime, p.name))
    total = sum(p.stat().st_size for p in files)
    while files and (len(files) > max_files or total > max_bytes):
        oldest = files.pop(0)
        total -= oldest.stat().st_size
        oldest.unlink()


class EventClips:
    """Short MJPG ``.avi`` clips of events: the last ``before_s`` seconds of frames are held in a
    ring buffer (bounded by ``buffer_bytes`` too); an event's clip starts with them and goes on
    until ``after_s`` seconds after the event closes, at most ``max_s`` seconds in all. Clips are
    rotated like snapshots (oldest removed first) and written under a hidden name until complete.
    A clip that cannot be written is skipped (counted); the event is logged regardless.

    Args:
        folder: where clips go (the snapshots' folder).
        before_s: seconds of frames before the event's first logged frame.
        after_s: seconds of frames after it closes.
        max_s: longest clip, seconds (a long event's clip stops there).
        max_files: most clips kept.
        max_bytes: most bytes of clips kept.
        buffer_bytes: most bytes of raw frames held for the time before an event.
        on_error: called on every failed write (for metrics).
    """

    def __init__(self, folder: str | Path, before_s: float = 2.0, after_s: float = 2.0, max_s: float = 30.0, max_files: int = 50,
                 max_bytes: int = 500 * 2**20, buffer_bytes: int = 64 * 2**20, on_error: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.before_s, self.after_s, self.max_s = before_s, after_s, max_s
        self.max_files, self.max_bytes, self.buffer_bytes = max_files, max_bytes, buffer_bytes
        self.health = SinkHealth(str(self.folder), on_error)
        self._ring: deque[tuple[np.ndarray, float]] = deque()
        self._ring_bytes = 0
        self._writer: cv2.VideoWriter | None = None
        self._path: Path | None = None
        self._started = 0.0
        self._stop_at: float | None = None  # frame time after which the open clip ends (set at the event's close)

    def push(self, image: np.ndarray, seconds: float) -> None:
        """Every frame of the camera, in order, with its capture time."""
        if self._writer is not None:
            self._append(image)
            if seconds - self._started >= self.max_s or (self._stop_at is not None and seconds >= self._stop_at):
                self.finish()
        self._ring.append((image, seconds))
        self._ring_bytes += image.nbytes
        while self._ring and (seconds - self._ring[0][1] > self.before_s or self._ring_bytes > self.buffer_bytes):
            self._ring_bytes -= self._ring.popleft()[0].nbytes

    def start(self, name: str) -> Path | None:
        """An event opened: a clip begins with the frames held (the current one included). Returns
        the path the clip will have once complete, or None when it cannot be written."""
        self.finish()  # the previous event's time after is cut short by this one
        if not self._ring:
            return None
        path, first = self.folder / f"{name}.avi", self._ring[0][0]
        tmp = _partial(path)
        times = [t for _, t in self._ring]
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 10.0
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), fps, (first.shape[1], first.shape[0]),
                                 first.ndim == 3)
        if not writer.isOpened():
            self.health.failed(OSError(errno.EIO, "OpenCV cannot write this video"), "clip skipped; ")
            return None
        self._writer, self._path, self._started, self._stop_at = writer, path, times[0], None
        for image, _ in self._ring:
            self._append(image)
        return path

    def stop_after(self, seconds: float | None) -> None:
        """The event closed at frame time ``seconds``: the clip ends ``after_s`` later."""
        if self._writer is not None:
            self._stop_at = (seconds if seconds is not None else self._started) + self.after_s

    def _append(self, image: np.ndarray) -> None:
        self._writer.write(image)  # OpenCV reports no write errors for video; finish() checks the file

    def finish(self) -> Path | None:
        """Complete the open clip (also at shutdown): renamed into place, then rotation."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer, path = None, self._path
        if _put_in_place(_partial(path), path, self.health, "clip") is None:
            return None
        rotate_folder(self.folder, "*.avi", self.max_files, self.max_bytes)
        return path


def _partial(clip: Path) -> Path:
    """Where a clip is written until complete: hidden, and still ``.avi`` (OpenCV picks the container by it)."""
    return clip.with_name(f".{clip.stem}.partial.avi")


FRAME_SCHEMA = "occ.frame.v1"  # the "schema" field of every per-frame line
SIGNIFICANT_DIGITS = 4  # scores carry no more: float32 network outputs, and thresholds set to a few digits


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (the shortest float that prints so)."""
    return float(f"{value:.{digits}g}")


def frame_record(camera: str, result: FrameResult, context: EventContext) -> dict[str, Any]:
    """One per-frame line (see docs/events.md): scores to :data:`SIGNIFICANT_DIGITS` significant
    digits, ``mask_area`` and ``boxes`` in source-frame pixels."""
    scores = np.asarray(result.location_scores, np.float64)
    return {
        "schema": FRAME_SCHEMA, "camera": camera, "frame": int(result.index), **context.clock(result.timestamp),
        "score": significant(float(result.score)), "decision": bool(result.decision), "mask_area": result.mask_area,
        "frame_size": None if result.frame_size is None else [int(v) for v in result.frame_size],
        "boxes": [[int(v) for v in box] for box in result.boxes],
        "location_scores": [[significant(v) for v in row] for row in np.atleast_2d(scores).tolist()],
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
