"""Where frames come from: files, folders, cameras and streams behind one interface.

``open_source(spec)`` picks the source from the spec:

- a video file (``clip.avi``) or an image folder / UCSD clip folder (``Test001/``): read once,
  every frame delivered (no drops), timestamps from the frame rate;
- ``/dev/videoN`` (V4L2), ``rtsp://``, ``http(s)://`` URLs, and GStreamer pipeline strings
  (anything with ``!``, e.g. ``nvarguscamerasrc ! ... ! appsink`` for a Jetson CSI camera): live.
  A reader thread keeps only the newest ``buffer`` frames, so a slow model drops the oldest ones
  (counted) and stays in real time; when the stream fails it reconnects with exponential backoff.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .datasets.common import DatasetError
from .datasets.video import list_images, read_image

log = logging.getLogger("occ.source")


@dataclass
class Frame:
    """One captured frame: the image (uint8 gray or BGR), its number and capture time (seconds)."""

    image: np.ndarray
    index: int
    timestamp: float


@dataclass
class SourceStats:
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    connected: bool = False


class Source:
    """Base class: iterate to get :class:`Frame` objects; ``close()`` (or ``with``) releases it."""

    live = False

    def __init__(self, spec: str):
        self.spec = spec
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileSource(Source):
    """A video file, read frame by frame; timestamps from its frame rate."""

    def __iter__(self) -> Iterator[Frame]:
        path = Path(self.spec)
        if not path.is_file():
            raise DatasetError(f"{path}: video file not found")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video")
        fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
        self.stats.connected = True
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                self.stats.frames += 1
                yield Frame(image, index, index / fps)
                index += 1
            if index == 0:
                raise DatasetError(f"{path}: the video has no decodable frames")
        finally:
            capture.release()


class FolderSource(Source):
    """An image folder (or UCSD clip folder) in file-name order, at a nominal frame rate."""

    def __init__(self, spec: str, fps: float = 10.0):
        super().__init__(spec)
        self.fps = fps

    def __iter__(self) -> Iterator[Frame]:
        folder = Path(self.spec)
        files = list_images(folder)
        if not files:
            raise DatasetError(f"{folder}: no image files")
        self.stats.connected = True
        for index, path in enumerate(files):
            self.stats.frames += 1
            yield Frame(read_image(path, cv2.IMREAD_UNCHANGED), index, index / self.fps)


class LiveSource(Source):
    """A camera or network stream read by a background thread into a bounded buffer.

    Args:
        spec: ``/dev/videoN``, a URL, or a GStreamer pipeline ending in ``appsink``.
        buffer: frames kept; when full the oldest is dropped (and counted).
        backoff: first reconnect delay in seconds; doubled per failure up to ``max_backoff``.
        max_backoff: longest reconnect delay in seconds.
        give_up_after: stop after this many seconds without a frame (None: never).
    """

    live = True

    def __init__(self, spec: str, buffer: int = 2, backoff: float = 0.5, max_backoff: float = 8.0,
                 give_up_after: float | None = None):
        super().__init__(spec)
        self.buffer: deque[Frame] = deque(maxlen=buffer)
        self.backoff, self.max_backoff, self.give_up_after = backoff, max_backoff, give_up_after
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._last_frame = time.monotonic()

    def _open(self) -> cv2.VideoCapture:
        if self.spec.startswith("/dev/video"):
            return cv2.VideoCapture(self.spec, cv2.CAP_V4L2)
        if "!" in self.spec:
            return cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
        return cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG)

    def _reader(self) -> None:
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
                log.error("source gave up", extra={"source": self.spec})
                break
            self.stats.reconnects += 1
            delay = min(delay * 2, self.max_backoff)
        with self._lock:
            self._finished = True
            self._lock.notify_all()

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
                elif self._finished or self._stop.is_set():
                    return
                else:
                    continue
            yield frame

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


def is_live(spec: str) -> bool:
    return spec.startswith(("/dev/video", "rtsp://", "rtsps://", "http://", "https://")) or "!" in spec


def open_source(spec: str, **live_options) -> Source:
    """The source for a spec (see the module docstring)."""
    if is_live(spec):
        return LiveSource(spec, **live_options)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(spec)
    if path.is_file():
        return FileSource(spec)
    raise DatasetError(f"{spec}: no such file or folder, and not a camera, URL or GStreamer pipeline")
