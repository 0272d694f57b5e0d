"""Sources read once, every frame delivered: video files and image folders (UCSD clip folders too)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .base import Frame, Source, SourceError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
UNREADABLE_WARN_EVERY_S = 60.0

log = logging.getLogger("occ.source")


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder in file-name order."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image(path: Path, flags: int = cv2.IMREAD_GRAYSCALE) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise SourceError(f"{path}: unreadable image")
    return image


class FileSource(Source):
    """A video file, read frame by frame; timestamps from its frame rate."""

    def check(self) -> "FileSource":
        """Refuse a file OpenCV cannot open or decode now, not at its first frame."""
        capture = cv2.VideoCapture(self.spec)
        try:
            if not capture.isOpened():
                raise SourceError(f"{self.spec}: OpenCV cannot open this video")
            if not capture.read()[0]:
                raise SourceError(f"{self.spec}: the video has no decodable frames")
        finally:
            capture.release()
        return self

    def __iter__(self) -> Iterator[Frame]:
        path = Path(self.spec)
        if not path.is_file():
            raise SourceError(f"{path}: video file not found")
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise SourceError(f"{path}: OpenCV cannot open this video")
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
                raise SourceError(f"{path}: the video has no decodable frames")
        finally:
            capture.release()


class FolderSource(Source):
    """An image folder (or UCSD clip folder) in file-name order, at a nominal frame rate.

    A file that cannot be decoded (truncated, corrupt, removed meanwhile) is skipped and counted
    in ``stats.unreadable``, with a warning at most once a minute: one broken frame must not end a
    camera. Frame numbers and timestamps stay those of the file's place in the folder.
    """

    def __init__(self, spec: str, fps: float = 10.0):
        super().__init__(spec)
        self.fps = fps
        self._last_warning = float("-inf")

    def check(self) -> "FolderSource":
        """Refuse a folder with no images now, not at its first frame."""
        if not list_images(Path(self.spec)):
            raise SourceError(f"{self.spec}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        return self

    def __iter__(self) -> Iterator[Frame]:
        folder = Path(self.spec)
        files = list_images(folder)
        if not files:
            raise SourceError(f"{folder}: no image files")
        self.stats.connected = True
        for index, path in enumerate(files):
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None:
                self._unreadable(path)
                continue
            self.stats.frames += 1
            yield Frame(image, index, index / self.fps)
        if not self.stats.frames:
            raise SourceError(f"{folder}: none of its {len(files)} image files can be decoded")

    def _unreadable(self, path: Path) -> None:
        self.stats.unreadable += 1
        now = time.monotonic()
        if now - self._last_warning >= UNREADABLE_WARN_EVERY_S:
            self._last_warning = now
            log.warning(f"{path}: unreadable image, skipped ({self.stats.unreadable} so far)",
                        extra={"source": self.spec, "unreadable": self.stats.unreadable})
