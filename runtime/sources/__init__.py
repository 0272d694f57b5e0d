"""Where frames come from: files, folders, cameras and streams behind one interface.

``open_source(spec)`` picks the source from the spec (the URIs are jetson-inference's):

- a video file (``clip.avi``, ``file://clip.avi``, ``file:///abs/clip.avi``) or an image folder /
  UCSD clip folder (``Test001/``): read once, every frame delivered (no drops), timestamps from
  the frame rate;
- live: ``csi://N`` (Jetson CSI camera N through an ``nvarguscamerasrc`` GStreamer pipeline;
  ``csi://0?width=1920&height=1080&framerate=30``), ``v4l2:///dev/videoN`` or ``/dev/videoN``
  (V4L2), ``rtsp://``, ``rtsps://``, ``http://`` and ``https://`` URLs (FFmpeg), and GStreamer
  pipeline strings (anything with ``!``, ending in ``appsink``). A reader thread keeps only the
  newest ``buffer`` frames, so a slow model drops the oldest ones (counted) and stays in real
  time; when the stream fails it reconnects with exponential backoff.

Anything else is refused with one line that lists these forms.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote

from .base import Frame, Source, SourceError, SourceStats
from .files import FileSource, FolderSource, list_images, read_image
from .live import LiveSource

ACCEPTED_FORMS = ("a video file or image folder (PATH or file://PATH)", "csi://N (Jetson CSI camera)",
                  "v4l2:///dev/videoN or /dev/videoN", "rtsp://, rtsps://, http://, https:// URLs",
                  "a GStreamer pipeline (... ! appsink)")
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
CSI_DEFAULTS = {"width": 1280, "height": 720, "framerate": 30}


@dataclass(frozen=True)
class SourceSpec:
    """What a spec resolves to: ``kind`` (``file``, ``folder`` or ``live``) and what OpenCV opens
    (a path, a device, a URL or a GStreamer pipeline)."""

    kind: str
    target: str


def _refuse(spec: str, problem: str) -> SourceError:
    return SourceError(f"{spec}: {problem}; sources are: {'; '.join(ACCEPTED_FORMS)}")


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, framerate: int = 30) -> str:
    """The GStreamer pipeline of a Jetson CSI camera (Argus): NVMM frames converted to BGR for
    OpenCV's appsink, which drops old buffers so the reader stays on the newest frame."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={framerate}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=2")


def resolve_source(spec: str) -> SourceSpec:
    """Resolve a source spec (see the module docstring); a bad one raises :class:`SourceError`
    listing the accepted forms."""
    spec = spec.strip()
    if not spec:
        raise _refuse("''", "empty source")
    if "!" in spec:
        return SourceSpec("live", spec)
    if spec.startswith(NETWORK_SCHEMES):
        return SourceSpec("live", spec)
    if spec.startswith("csi://"):
        return SourceSpec("live", _csi(spec))
    if spec.startswith("v4l2://"):
        device = spec[len("v4l2://"):]
        if not re.fullmatch(r"/dev/video\d+", device):
            raise _refuse(spec, "a V4L2 source is v4l2:///dev/videoN")
        return SourceSpec("live", device)
    if re.fullmatch(r"/dev/video\d+", spec):
        return SourceSpec("live", spec)
    if spec.startswith("file://"):
        path = Path(unquote(spec[len("file://"):]))
    elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        raise _refuse(spec, f"unknown scheme '{spec.split('://')[0]}://'")
    else:
        path = Path(spec)
    if path.is_dir():
        return SourceSpec("folder", str(path))
    if path.is_file():
        return SourceSpec("file", str(path))
    raise _refuse(spec, "no such file or folder")


def _csi(spec: str) -> str:
    sensor, _, query = spec[len("csi://"):].partition("?")
    if not sensor.isdigit():
        raise _refuse(spec, "a CSI camera is csi://N with N its sensor id (csi://0)")
    settings = dict(CSI_DEFAULTS)
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in settings or not values[-1].isdigit() or int(values[-1]) <= 0:
            raise _refuse(spec, f"CSI options are {', '.join(f'{k}=N' for k in CSI_DEFAULTS)} (positive integers), got {key!r}")
        settings[key] = int(values[-1])
    return csi_pipeline(int(sensor), **settings)


def is_live(spec: str) -> bool:
    """Whether ``spec`` names a camera or stream (no file system check)."""
    spec = spec.strip()
    return (spec.startswith((*NETWORK_SCHEMES, "csi://", "v4l2://")) or "!" in spec
            or re.fullmatch(r"/dev/video\d+", spec) is not None)


def open_source(spec: str, **live_options) -> Source:
    """The source for a spec (see the module docstring)."""
    resolved = resolve_source(spec)
    if resolved.kind == "live":
        return LiveSource(resolved.target, **live_options)
    if resolved.kind == "folder":
        return FolderSource(resolved.target).check()
    return FileSource(resolved.target).check()


__all__ = ["ACCEPTED_FORMS", "FileSource", "FolderSource", "Frame", "LiveSource", "Source", "SourceError", "SourceSpec", "SourceStats",
           "csi_pipeline", "is_live", "list_images", "open_source", "read_image", "resolve_source"]
