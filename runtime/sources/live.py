"""Live sources: cameras and network streams, read by a background thread into a bounded buffer."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Iterator

import cv2

from .base import Frame, Source, SourceError

log = logging.getLogger("occ.source")


class LiveSource(Source):
    """A camera or network stream read by a background thread into a bounded buffer.

    Args:
        spec: ``/dev/videoN``, a URL, or a GStreamer pipeline ending in ``appsink``.
        buffer: frames kept; when full the oldest is dropped (and counted).
        backoff: first reconnect delay in seconds; doubled per failure up to ``max_backoff``.
        max_backoff: longest reconnect delay in seconds.
        give_up_after: stop after this many seconds without a frame (None: never).
        api: the OpenCV backend that opens ``spec`` (``cv2.CAP_FFMPEG``, ``CAP_V4L2``, ``CAP_GSTREAMER``);
            the source registry (``occ.runtime.sources``) picks it from the spec's kind.
    """

    live = True

    def __init__(self, spec: str, buffer: int = 2, backoff: float = 0.5, max_backoff: float = 8.0,
                 give_up_after: float | None = None, api: int = cv2.CAP_FFMPEG):
        super().__init__(spec)
        if buffer < 1 or not backoff > 0 or max_backoff < backoff or (give_up_after is not None and not give_up_after > 0):
            raise SourceError(f"{spec}: needs buffer >= 1, backoff > 0, max_backoff >= backoff and give_up_after > 0 (or none); "
                              f"got {buffer}, {backoff}, {max_backoff}, {give_up_after}")
        self.api = api
        self.buffer: deque[Frame] = deque(maxlen=buffer)
        self.backoff, self.max_backoff, self.give_up_after = backoff, max_backoff, give_up_after
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self.gave_up = False  # the stream stayed away for give_up_after seconds
        self.error: BaseException | None = None  # what stopped the reader thread, if it failed
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._last_frame = time.monotonic()

    def _open(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.spec, self.api)

    def _reader(self) -> None:
        try:
            self._read_with_reconnects()
        except BaseException as exc:  # noqa: BLE001 - surfaced to the consumer by __iter__
            self.error = exc
            log.error(f"source reader failed: {type(exc).__name__}: {exc}", extra={"source": self.spec})
        finally:
            self.stats.connected = False
            with self._lock:
                self._finished = True
                self._lock.notify_all()

    def _read_with_reconnects(self) -> None:
        delay = self.backoff
        index = 0
        while not self._stop.is_set():
            capture = self._open()
            if capture.isOpened():
                self.stats.connected = True
                delay = self.backoff
                log.info("source connected", extra={"source": self.spec})
                while not self._stop.is_set():
                    ok, image = capture.read()
                    if not ok:
                        break
                    now = time.monotonic()
                    self._last_frame = now
                    with self._lock:
                        if len(self.buffer) == self.buffer.maxlen:
                            self.stats.dropped += 1
                        self.buffer.append(Frame(image, index, time.time()))
                        self.stats.frames += 1
                        self._lock.notify()
                    index += 1
                self.stats.connected = False
                log.warning("source lost", extra={"source": self.spec})
            capture.release()
            if self._stop.wait(delay):
                break
            if self.give_up_after is not None and time.monotonic() - self._last_frame >= self.give_up_after:
                self.gave_up = True
                log.error(f"source gave up: no frame for {self.give_up_after:g} s", extra={"source": self.spec})
                break
            self.stats.reconnects += 1
            delay = min(delay * 2, self.max_backoff)

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is None:
            self._last_frame = time.monotonic()
            self._thread = threading.Thread(target=self._reader, name=f"source {self.spec}", daemon=True)
            self._thread.start()
        while True:
            with self._lock:
                while not self.buffer and not self._finished and not self._stop.is_set():
                    self._lock.wait(0.1)
                if self.buffer:
                    frame = self.buffer.popleft()
                elif self._finished and self.error is not None:
                    raise SourceError(f"{self.spec}: the reader stopped ({type(self.error).__name__}: {self.error})")
                elif self._finished or self._stop.is_set():
                    return
                else:
                    continue
            yield frame

    def stop(self) -> None:
        """Ask the reader to stop; iteration ends after the frames already buffered. Safe from a signal handler."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
