"""Video files and image folders through OpenCV, as gray uint8 frames."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from occ.runtime.sources import SourceError
from occ.runtime.sources.files import IMAGE_SUFFIXES, list_images
from occ.runtime.sources.files import read_image as read_source_image

from .common import DatasetError

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image", "read_image_folder", "open_video_writer", "read_video", "write_video"]


def read_image(path: Path, flags: int = cv2.IMREAD_GRAYSCALE) -> np.ndarray:
    """One image of a data set (the runtime's reader, with the data set's error)."""
    try:
        return read_source_image(path, flags)
    except SourceError as exc:
        raise DatasetError(str(exc)) from None


def read_image_folder(folder: str | Path, gray: bool = True) -> Iterator[np.ndarray]:
    """Frames of an image folder in file-name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: image folder not found")
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    shape = None
    for path in files:
        image = read_image(path, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
        if shape is not None and image.shape != shape:
            raise DatasetError(f"{path}: size {image.shape} differs from the folder's {shape}")
        shape = image.shape
        yield image


def read_video(path: str | Path, gray: bool = True) -> Iterator[np.ndarray]:
    """Frames of a video file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video")
        count = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if gray and frame.ndim == 3 else frame
        if count == 0:
            raise DatasetError(f"{path}: the video has no decodable frames")
    finally:
        capture.release()


def open_video_writer(path: str | Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    """A BGR video writer for ``size`` ``(height, width)`` frames: MJPG AVI, which every OpenCV build reads."""
    path = Path(path)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]), True)
    if not writer.isOpened():
        raise DatasetError(f"{path}: OpenCV cannot write this video")
    return writer


def write_video(path: str | Path, frames: np.ndarray, fps: float = 10.0) -> Path:
    """Write gray or BGR uint8 frames as an MJPG AVI (readable by every OpenCV build)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = open_video_writer(path, fps, frames[0].shape[:2])
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame)
    writer.release()
    return path
