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

The registry below is the one list of source kinds, parsed once by :func:`resolve_source`; the
accepted forms in every error, ``--help`` and configuration check come from it (:data:`SOURCE_FORMS`).
Adding a kind: write its :class:`Source` (a module here, or ``LiveSource`` with another OpenCV
backend), add one :class:`SourceKind` line to ``KINDS``, and test it: three files
(tests/test_sources.py shows a kind added from outside).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

import cv2

from .base import Frame, Source, SourceError, SourceStats
from .files import FileSource, FolderSource, list_images, read_image
from .live import LiveSource

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
CSI_DEFAULTS = {"width": 1280, "height": 720, "framerate": 30}
_V4L2_DEVICE = re.compile(r"/dev/video\d+")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: the form it accepts and how it opens.

    Args:
        name: the kind's name (``SourceSpec.kind``).
        form: the accepted form, as every error and ``--help`` lists it (kinds may share one).
        claims: whether a spec is of this kind. A live kind looks at the text only, so a
            configuration can tell a camera from a file without touching either.
        resolve: the spec → what the source opens (a path, a device, a URL or a GStreamer
            pipeline); raises :class:`SourceError` for a malformed spec of this kind.
        open: ``(target, live_options) -> Source``; live options are ``buffer``, ``backoff``,
            ``max_backoff`` and ``give_up_after`` (see :class:`LiveSource`).
        live: a camera or stream (frames dropped to stay real time, reconnects) rather than a
            recording read once.
    """

    name: str
    form: str
    claims: Callable[[str], bool]
    resolve: Callable[[str], str]
    open: Callable[[str, dict[str, Any]], Source]
    live: bool


@dataclass(frozen=True)
class SourceSpec:
    """What a spec resolves to: its ``kind`` (a name in :data:`REGISTRY`) and what the source
    opens (a path, a device, a URL or a GStreamer pipeline)."""

    kind: str
    target: str

    @property
    def live(self) -> bool:
        return REGISTRY[self.kind].live


def _refuse(spec: str, problem: str) -> SourceError:
    return SourceError(f"{spec}: {problem}; sources are: {'; '.join(accepted_forms())}")


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, framerate: int = 30) -> str:
    """The GStreamer pipeline of a Jetson CSI camera (Argus): NVMM frames converted to BGR for
    OpenCV's appsink, which drops old buffers so the reader stays on the newest frame."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
            f"framerate={framerate}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=true max-buffers=2")


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


def _v4l2(spec: str) -> str:
    device = spec[len("v4l2://"):] if spec.startswith("v4l2://") else spec
    if not _V4L2_DEVICE.fullmatch(device):
        raise _refuse(spec, "a V4L2 source is v4l2:///dev/videoN")
    return device


def _local_path(spec: str) -> Path | None:
    """The path a ``PATH`` or ``file://PATH`` spec names; None for any other scheme."""
    if spec.startswith("file://"):
        return Path(unquote(spec[len("file://"):]))
    return None if _SCHEME.match(spec) else Path(spec)


def _is_local(spec: str, test: Callable[[Path], bool]) -> bool:
    path = _local_path(spec)
    return path is not None and test(path)


def _live(api: int) -> Callable[[str, dict[str, Any]], Source]:
    return lambda target, options: LiveSource(target, api=api, **options)


_PATH_FORM = "a video file or image folder (PATH or file://PATH)"

KINDS = (
    SourceKind("csi", "csi://N (Jetson CSI camera)", lambda spec: spec.startswith("csi://"), _csi, _live(cv2.CAP_GSTREAMER), True),
    SourceKind("v4l2", "v4l2:///dev/videoN or /dev/videoN", lambda spec: spec.startswith("v4l2://") or bool(_V4L2_DEVICE.fullmatch(spec)),
               _v4l2, _live(cv2.CAP_V4L2), True),
    SourceKind("network", "rtsp://, rtsps://, http://, https:// URLs", lambda spec: spec.startswith(NETWORK_SCHEMES), str,
               _live(cv2.CAP_FFMPEG), True),
    SourceKind("gstreamer", "a GStreamer pipeline (... ! appsink)", lambda spec: "!" in spec, str, _live(cv2.CAP_GSTREAMER), True),
    SourceKind("folder", _PATH_FORM, lambda spec: _is_local(spec, Path.is_dir), lambda spec: str(_local_path(spec)),
               lambda target, options: FolderSource(target).check(), False),
    SourceKind("file", _PATH_FORM, lambda spec: _is_local(spec, Path.is_file), lambda spec: str(_local_path(spec)),
               lambda target, options: FileSource(target).check(), False),
)
REGISTRY: dict[str, SourceKind] = {kind.name: kind for kind in KINDS}


def accepted_forms() -> tuple[str, ...]:
    """Every kind's form, once each: recordings first, then cameras and streams."""
    kinds = sorted(REGISTRY.values(), key=lambda kind: kind.live)
    return tuple(dict.fromkeys(kind.form for kind in kinds))


ACCEPTED_FORMS = accepted_forms()  # the built-in kinds' forms, for help texts
SOURCE_FORMS = "; ".join(ACCEPTED_FORMS)


def register_source(kind: SourceKind) -> None:
    """Add a source kind outside the runtime; it is tried after the built-in ones."""
    REGISTRY[kind.name] = kind


def unregister_source(name: str) -> None:
    """Remove a kind added by :func:`register_source`."""
    REGISTRY.pop(name, None)


def resolve_source(spec: str) -> SourceSpec:
    """Resolve a source spec (see the module docstring); a bad one raises :class:`SourceError`
    listing the accepted forms."""
    spec = spec.strip()
    if not spec:
        raise _refuse("''", "empty source")
    for kind in REGISTRY.values():
        if kind.claims(spec):
            return SourceSpec(kind.name, kind.resolve(spec))
    if _local_path(spec) is None:
        raise _refuse(spec, f"unknown scheme '{spec.split('://')[0]}://'")
    raise _refuse(spec, "no such file or folder")


def is_live(spec: str) -> bool:
    """Whether ``spec`` names a camera or stream (no file system check)."""
    spec = spec.strip()
    return any(kind.live and kind.claims(spec) for kind in REGISTRY.values())


def open_source(spec: str, **live_options: Any) -> Source:
    """The source for a spec (see the module docstring); ``live_options`` go to a live source."""
    resolved = resolve_source(spec)
    return REGISTRY[resolved.kind].open(resolved.target, live_options)


__all__ = ["ACCEPTED_FORMS", "FileSource", "FolderSource", "Frame", "KINDS", "LiveSource", "REGISTRY", "SOURCE_FORMS", "Source",
           "SourceError", "SourceKind", "SourceSpec", "SourceStats", "accepted_forms", "csi_pipeline", "is_live", "list_images", "open_source", "read_image",
           "register_source", "resolve_source", "unregister_source"]
