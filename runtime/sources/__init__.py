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

from pathlib import Path

from .base import Frame, Source, SourceError, SourceStats
from .files import FileSource, FolderSource, list_images, read_image
from .live import LiveSource


def is_live(spec: str) -> bool:
    return spec.startswith(("/dev/video", "rtsp://", "rtsps://", "http://", "https://")) or "!" in spec


def open_source(spec: str, **live_options) -> Source:
    """The source for a spec (see the module docstring)."""
    if is_live(spec):
        return LiveSource(spec, **live_options)
    path = Path(spec)
    if path.is_dir():
        return FolderSource(spec).check()
    if path.is_file():
        return FileSource(spec).check()
    raise SourceError(f"{spec}: no such file or folder, and not a camera, URL or GStreamer pipeline")


__all__ = ["FileSource", "FolderSource", "Frame", "LiveSource", "Source", "SourceError", "SourceStats", "is_live", "list_images",
           "open_source", "read_image"]
