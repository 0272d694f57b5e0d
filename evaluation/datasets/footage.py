"""Normal footage from one camera: recordings, video files, image folders, split by time.

Footage is what a user has of their own camera: a folder written by ``occ data record``, one video
file, a glob of video files, or a folder of video files and image folders (docs/data.md). Files are
taken in name order as one timeline, and :func:`split_footage` cuts that timeline by time into a
training, a validation and a calibration part, so that ``occ train`` and ``occ calibrate`` given the
same footage and the same split never see the same minutes.
"""
from __future__ import annotations

import glob
import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from occ.runtime.files import now_iso, write_atomic
from occ.runtime.sources import SourceError, is_live, open_source, resolve_source

from .common import Clip, DatasetError
from .video import list_images, open_video_writer, read_image

RECORDING = "recording.json"
RECORDING_FORMAT = "occ-recording"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv")
PARTS = ("training", "validation", "calibration")
# An image folder has no frame rate of its own; the runtime's folder source plays it at this rate.
IMAGE_FOLDER_FPS = 10.0
# Frames a live recording buffers while the writer keeps up (the source drops the oldest beyond it).
RECORD_BUFFER = 256
# Frames (or seconds, whichever comes first) the recorder measures the frame rate over before the first clip opens.
RATE_PROBE_FRAMES, RATE_PROBE_SECONDS = 30, 1.0
# How long past --minutes a live recording waits for a stream that went away before it stops.
LIVE_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Split:
    """Shares of the footage's time for training, validation and calibration (they sum to 1)."""

    training: float = 0.7
    validation: float = 0.1
    calibration: float = 0.2

    @classmethod
    def parse(cls, text: str) -> "Split":
        """``"70/10/20"``: training/validation/calibration in percent, summing to 100."""
        items = text.split("/")
        try:
            shares = [float(item) for item in items]
        except ValueError:
            shares = []
        if len(shares) != 3 or any(not 0 <= s <= 100 for s in shares) or abs(sum(shares) - 100) > 1e-6:
            raise DatasetError(f"--split {text}: give TRAIN/VALIDATION/CALIBRATION percentages summing to 100, e.g. 70/10/20")
        return cls(*(s / 100 for s in shares))

    def share(self, part: str) -> float:
        return getattr(self, part)

    def __str__(self) -> str:
        return "/".join(f"{100 * self.share(part):g}" for part in PARTS)


DEFAULT_SPLIT = Split()


@dataclass
class FootageFile:
    """One file of footage: a video or an image folder.

    Attributes:
        path: where it is read from.
        name: its name relative to the footage's folder (what reports and manifests show).
        frames: how many frames it holds.
        fps: its frame rate (frames per second).
        size: ``(height, width)`` of its frames.
        start: seconds from the start of the footage to its first frame.
    """

    path: Path
    name: str
    frames: int
    fps: float
    size: tuple[int, int]
    start: float = 0.0

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def read(self, first: int = 0, stop: int | None = None, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Gray uint8 frames ``first`` to ``stop`` (exclusive), optionally resized to ``(height, width)``.

        Frames are resized bilinearly, as the runtime's preprocessing does, so that training sees
        what the camera box will.
        """
        stop = self.frames if stop is None else stop
        for frame in (self._image_frames(first, stop) if self.path.is_dir() else self._video_frames(first, stop)):
            yield as_read(frame, size)

    def _image_frames(self, first: int, stop: int) -> Iterator[np.ndarray]:
        for path in list_images(self.path)[first:stop]:
            yield read_image(path)

    def _video_frames(self, first: int, stop: int) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise DatasetError(f"{self.path}: OpenCV cannot open this video")
            for _ in range(first):  # decoding forward, not seeking: seeks land on key frames in some containers
                if not capture.grab():
                    return
            for _ in range(stop - first):
                ok, frame = capture.read()
                if not ok:
                    return
                yield frame
        finally:
            capture.release()


@dataclass
class Piece:
    """Frames ``first`` to ``stop`` (exclusive) of one footage file, in one part of the split."""

    file: FootageFile
    part: str
    first: int
    stop: int

    @property
    def frames(self) -> int:
        return self.stop - self.first

    @property
    def name(self) -> str:
        return f"{self.file.name}[{self.first}:{self.stop}]"

    def row(self) -> dict:
        """What went where, for reports and the model's training summary (relative names only)."""
        return {"part": self.part, "file": self.file.name, "from": clock(self.first / self.file.fps),
                "to": clock(self.stop / self.file.fps), "first_frame": self.first, "stop_frame": self.stop, "frames": self.frames}

    def clip(self, size: tuple[int, int] | None = None) -> Clip:
        frames = list(self.file.read(self.first, self.stop, size))
        if not frames:
            raise DatasetError(f"{self.file.path}: no frames could be decoded in {self.name}")
        return Clip(name=self.name, frames=np.stack(frames), labels=np.zeros(len(frames), bool), fps=self.file.fps)


@dataclass
class Footage:
    """Normal footage as one timeline of files, with what a recording says about its camera."""

    description: str
    files: list[FootageFile]
    camera: str | None = None
    start_time: str | None = None
    pieces: list[Piece] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(f.seconds for f in self.files)


def clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour) of a position in the footage."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def split_footage(footage: Footage, split: Split = DEFAULT_SPLIT) -> list[Piece]:
    """Cut the footage's timeline by time: the first ``split.training`` of it for training, the next
    ``split.validation`` for validation, the last ``split.calibration`` for calibration.

    Every frame lands in exactly one part; a file that straddles a cut is cut at the frame nearest
    to it. Calibration takes the latest minutes, the nearest to what the camera sees next.
    """
    total = footage.seconds
    cuts = [0.0, split.training * total, (split.training + split.validation) * total, total]
    pieces = []
    for file in footage.files:
        for part, begin, end in zip(PARTS, cuts[:-1], cuts[1:]):
            first = int(round((min(max(begin - file.start, 0.0), file.seconds)) * file.fps))
            stop = file.frames if end >= total else int(round(min(max(end - file.start, 0.0), file.seconds) * file.fps))
            if stop > first:
                pieces.append(Piece(file, part, first, min(stop, file.frames)))
    footage.pieces = pieces
    return pieces


def as_read(frame: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded frame as training reads footage: gray, resized bilinearly to ``(height, width)``
    as the runtime's preprocessing does (``occ calibrate`` hashes frames this way, so that they
    match the training fingerprint whatever the network's input size)."""
    if frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if size is not None and frame.shape != size:
        frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return frame


def part_clips(pieces: list[Piece], part: str, size: tuple[int, int] | None = None) -> list[Clip]:
    """The clips of one part, read into memory (``size``: resize while reading, to fit long footage)."""
    return [piece.clip(size) for piece in pieces if piece.part == part]


def split_summary(footage: Footage, split: Split) -> dict:
    """The split in a manifest's training summary: the shares and which minutes of which file went where."""
    return {"split": str(split), "seconds": round(footage.seconds, 3), "camera": footage.camera, "start_time": footage.start_time,
            "pieces": [piece.row() for piece in footage.pieces]}


# ---- finding footage -------------------------------------------------------------------------------

def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def _is_image_folder(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and bool(list_images(path))


def _video_file(path: Path, name: str) -> FootageFile:
    if not os.access(path, os.R_OK):
        raise DatasetError(f"{path}: cannot read this video (permission denied)")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DatasetError(f"{path}: OpenCV cannot open this video")
        ok, first = capture.read()
        if not ok:
            raise DatasetError(f"{path}: the video has no decodable frames")
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if frames <= 0:  # streams without an index: count them
            frames = 1
            while capture.grab():
                frames += 1
    finally:
        capture.release()
    return FootageFile(path, name, frames, fps if fps and fps > 0 and math.isfinite(fps) else IMAGE_FOLDER_FPS, first.shape[:2])


def _image_folder(path: Path, name: str) -> FootageFile:
    images = list_images(path)
    return FootageFile(path, name, len(images), IMAGE_FOLDER_FPS, read_image(images[0]).shape[:2])


def _entry(path: Path, root: Path) -> FootageFile:
    name = path.relative_to(root).as_posix() if path != root else path.name
    return _image_folder(path, name) if path.is_dir() else _video_file(path, name)


def _timeline(files: list[FootageFile]) -> list[FootageFile]:
    start = 0.0
    for file in files:
        file.start = start
        start += file.seconds
    return files


def _folder_entries(folder: Path) -> list[Path]:
    """A folder's videos and image folders in name order; the folder itself when it holds frames."""
    if list_images(folder):
        return [folder]
    return [child for child in sorted(folder.iterdir()) if _is_video(child) or _is_image_folder(child)]


def read_recording(folder: Path) -> Footage:
    """A folder written by ``occ data record``: its clips in order, at the recorded frame rate."""
    marker = folder / RECORDING
    try:
        record = json.loads(marker.read_text())
        fps = float(record["fps"])
        size = (int(record["height"]), int(record["width"]))
        listed = [(str(c["file"]), int(c["frames"])) for c in record["clips"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{marker}: not a readable occ recording ({type(exc).__name__}: {exc})") from None
    files = []
    for name, frames in listed:
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path}: listed in {RECORDING} but missing")
        files.append(FootageFile(path, name, frames, fps, size))
    if not files:
        raise DatasetError(f"{marker}: the recording holds no clips")
    _timeline(files)  # the split is over recorded time; gaps between clips (reconnects) do not count
    return Footage(f"{folder.name} (occ recording)", files, record.get("camera"), record.get("start_time"))


def footage_root(spec: str) -> Path | None:
    """Where the footage of ``spec`` lives when ``spec`` names footage rather than a data set:
    a recording, a video file, an image folder, a folder of videos or image folders, or a data set
    folder whose ``Train/`` holds videos. None for anything else (UCSD layouts, walkway, globs)."""
    path = Path(spec)
    if path.is_file():
        return path
    if not path.is_dir():
        return None
    if (path / RECORDING).is_file():
        return path
    train = path / "Train"
    if train.is_dir() or (path / "Test").is_dir():
        if train.is_dir() and not any(c.is_dir() and c.name.startswith("Train") and c.name[5:].isdigit() for c in train.iterdir()):
            return train
        return None
    children = [c for c in path.iterdir() if c.is_dir() and ((c / "Train").is_dir() or (c / "Test").is_dir())]
    return None if children else path


def is_glob(spec: str) -> bool:
    return any(ch in spec for ch in "*?[")


def is_footage(spec: str) -> bool:
    """Whether ``spec`` names normal footage (split by time) rather than a data set with its own
    split or a live source."""
    if spec.startswith("walkway") or "://" in spec or is_live(spec):
        return False
    return is_glob(spec) and not Path(spec).exists() or footage_root(spec) is not None


def open_footage(spec: str) -> Footage:
    """The footage ``spec`` names (see :func:`footage_root`, or a glob of video files)."""
    if is_glob(spec) and not Path(spec).exists():
        matches = [Path(m) for m in sorted(glob.glob(spec))]
        paths = [m for m in matches if _is_video(m) or _is_image_folder(m)]
        if not paths:
            raise DatasetError(f"{spec}: no video files or image folders match")
        root = Path(os.path.commonpath([p.parent for p in paths]))
        return Footage(Path(spec).name, _timeline([_entry(p, root) for p in paths]))
    root = footage_root(spec)
    if root is None:
        raise DatasetError(f"{spec}: not footage (a recording, video files or image folders)")
    if root.is_file():
        if root.suffix.lower() not in VIDEO_SUFFIXES:
            raise DatasetError(f"{root}: not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return Footage(root.name, _timeline([_video_file(root, root.name)]))
    if (root / RECORDING).is_file():
        return read_recording(root)
    entries = _folder_entries(root)
    if not entries:
        raise DatasetError(f"{root}: no video files ({', '.join(VIDEO_SUFFIXES)}), image folders, {RECORDING} "
                           "or UCSD Train/ Test/ folders")
    label = f"{root.parent.name}/{root.name}/" if root.name == "Train" else f"{root.name}/"
    return Footage(label, _timeline([_entry(p, root) for p in entries]))


# ---- recording ---------------------------------------------------------------------------------------

def camera_name(source: str) -> str:
    """A source spec as a camera name: a URL without its user name and password, a file by its name."""
    if is_live(source):
        if "://" in source and "!" not in source:
            parts = urlsplit(source)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        return source
    return Path(source[len("file://"):] if source.startswith("file://") else source).name


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise DatasetError(f"{out}: not empty; record into a new or empty folder (nothing is overwritten or appended)")


@dataclass
class _ClipWriter:
    """The clip being written: a hidden file renamed into place once closed."""

    folder: Path
    index: int
    start: float
    fps: float
    size: tuple[int, int]
    frames: int = 0

    def __post_init__(self) -> None:
        self.name = f"clip-{self.index:04d}.avi"
        self.partial = self.folder / f".writing-{self.name}"
        self.writer = open_video_writer(self.partial, self.fps, self.size)

    def write(self, image: np.ndarray) -> None:
        if image.shape[:2] != self.size:  # a stream that came back at another size
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        self.writer.write(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image)
        self.frames += 1

    def close(self) -> dict | None:
        self.writer.release()
        if not self.frames:
            self.partial.unlink(missing_ok=True)
            return None
        os.replace(self.partial, self.folder / self.name)
        return {"file": self.name, "start_seconds": round(self.start, 3), "frames": self.frames}


def record(source: str, out: str | Path, minutes: float, clip_seconds: float = 60.0, camera: str | None = None,
           progress: Callable[[float], None] | None = None) -> dict:
    """``occ data record``: ``minutes`` of ``source`` (any source occ reads) into ``out`` as clips of
    ``clip_seconds`` each (MJPG AVI) and a ``recording.json`` manifest, rewritten after every clip so
    that an interrupted recording keeps its finished clips.

    Time is the source's own: a file's frame times, a live source's wall clock. ``progress`` gets the
    seconds recorded so far. Returns the manifest.
    """
    out = Path(out)
    if not minutes > 0 or not clip_seconds > 0:
        raise DatasetError(f"{out}: --minutes and --clip-seconds must be > 0, got {minutes} and {clip_seconds}")
    _check_out(out)
    try:
        kind = resolve_source(source).kind
    except SourceError as exc:
        raise DatasetError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    limit = minutes * 60
    manifest = {"format": RECORDING_FORMAT, "version": 1, "camera": camera or camera_name(source), "source_kind": kind,
                "start_time": None, "fps": None, "width": None, "height": None, "clip_seconds": clip_seconds,
                "frames": 0, "seconds": 0.0, "dropped_frames": 0, "clips": []}

    def save() -> None:
        if first_time is not None and last_time is not None and manifest["fps"]:
            manifest["seconds"] = round(last_time - first_time + 1 / manifest["fps"], 3)
        write_atomic(out / RECORDING, (json.dumps(manifest, indent=2) + "\n").encode())

    probe: list = []
    writer: _ClipWriter | None = None
    first_time = last_time = None
    with open_source(source, **({"buffer": RECORD_BUFFER} if kind == "live" else {})) as stream:
        # a live source that stops sending (and keeps reconnecting) must not hold the recording past its time
        deadline = threading.Timer(limit + LIVE_GRACE_SECONDS, stream.stop) if kind == "live" else None
        if deadline is not None:
            deadline.daemon = True
            deadline.start()
        try:
            for frame in stream:
                if first_time is None:
                    first_time = frame.timestamp
                    manifest["start_time"] = now_iso() if kind != "live" else _iso(frame.timestamp)
                    manifest["height"], manifest["width"] = (int(v) for v in frame.image.shape[:2])
                elapsed = frame.timestamp - first_time
                if elapsed >= limit:
                    break
                last_time = frame.timestamp
                if manifest["fps"] is None:
                    probe.append(frame)
                    if len(probe) < RATE_PROBE_FRAMES and elapsed < RATE_PROBE_SECONDS:
                        continue
                    manifest["fps"] = _rate(probe)
                    pending, probe = probe, []
                else:
                    pending = [frame]
                for item in pending:
                    position = item.timestamp - first_time
                    index = int(position // clip_seconds)
                    if writer is None or writer.index != index + 1:
                        writer = _finish(writer, manifest, save)
                        writer = _ClipWriter(out, index + 1, index * clip_seconds, manifest["fps"], (manifest["height"], manifest["width"]))
                    writer.write(item.image)
                    manifest["frames"] += 1
                if progress is not None:
                    progress(min(elapsed, limit))
        except SourceError as exc:
            raise DatasetError(str(exc)) from None
        finally:
            if deadline is not None:
                deadline.cancel()
            if probe:  # shorter than the rate probe: write what came
                manifest["fps"] = _rate(probe)
                writer = _ClipWriter(out, 1, 0.0, manifest["fps"], (manifest["height"], manifest["width"]))
                for item in probe:
                    writer.write(item.image)
                    manifest["frames"] += 1
            manifest["dropped_frames"] = stream.stats.dropped
            _finish(writer, manifest, save)
    if not manifest["frames"]:
        raise DatasetError(f"{source}: no frames came from the source")
    return manifest


def _finish(writer: _ClipWriter | None, manifest: dict, save: Callable[[], None]) -> None:
    if writer is not None:
        done = writer.close()
        if done is not None:
            manifest["clips"].append(done)
        save()
    return None


def _rate(frames: list) -> float:
    span = frames[-1].timestamp - frames[0].timestamp
    return round((len(frames) - 1) / span, 3) if len(frames) > 1 and span > 0 else IMAGE_FOLDER_FPS


def _iso(timestamp: float) -> str:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(timestamp, _dt.timezone.utc).replace(microsecond=0).isoformat()
