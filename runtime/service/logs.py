"""The service's log: one JSON object per line on standard error, for journald or a log shipper.

OpenCV and FFmpeg print warnings straight to file descriptor 2 from C code, which would break a
JSON-lines log. While the service runs, descriptor 2 is a pipe: a thread wraps every line the
native libraries print into a JSON record (logger ``native``), and the service's own records go to
the original standard error.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import IO

FIELDS = ("source", "camera", "event_id", "frames", "dropped", "reconnects", "path", "errors", "event", "exit_code")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        for key in FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        return json.dumps(entry, default=str)


class NativeOutputCapture:
    """Descriptor 2 redirected into a pipe whose lines become JSON log records; :meth:`close` restores it."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger
        sys.stderr.flush()
        self.saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._reader = os.fdopen(read_end, "r", errors="replace")
        self._thread = threading.Thread(target=self._pump, name="occ native log", daemon=True)
        self._thread.start()

    def original_stderr(self) -> IO[str]:
        return os.fdopen(os.dup(self.saved), "w", buffering=1)

    def _pump(self) -> None:
        for line in self._reader:
            text = line.rstrip()
            if text:
                self.logger.warning(text)

    def close(self) -> None:
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's last writer goes away: the pump reads to its end
        os.close(self.saved)
        self._thread.join(timeout=5)
        self._reader.close()


def setup_logging(level: int = logging.INFO, capture_native: bool = False) -> NativeOutputCapture | None:
    """JSON lines on standard error for the ``occ`` loggers; with ``capture_native``, native
    libraries' output too (returns the capture, to be closed when the service stops)."""
    capture = NativeOutputCapture(logging.getLogger("occ.native")) if capture_native else None
    stream = capture.original_stderr() if capture else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger("occ")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return capture
