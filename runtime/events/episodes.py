"""From per-frame decisions to episodes: an episode opens when the decision holds for
``open_after`` frames in a row and closes after ``close_after`` quiet frames in a row.

An event record is one JSON line when the episode opens and one when it closes; its fields, their
units and its version are in docs/events.md and in the JSON Schema
``occ/runtime/events/schema/event.v1.json`` (:data:`EVENT_SCHEMA`). ``event_id`` is unique across
processes and restarts, and sortable by time: ``<camera>-<UTC opening time>-<4 hex digits>``,
e.g. ``gate-20261128T051203.123Z-7f3a``.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..scoring.decide import FrameResult


def new_event_id(camera: str) -> str:
    """``<camera>-<UTC time to the millisecond>-<4 random hex digits>``: unique and time-ordered."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{camera_slug(camera)}-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{os.urandom(2).hex()}"


def camera_slug(name: str) -> str:
    """A camera name as it can appear in ids and file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "camera"


EVENT_SCHEMA = "occ.event.v1"  # the "schema" field of every event line; a new version for any change a reader must know


def iso_time(seconds: float | None) -> str | None:
    """Unix time → ISO 8601 in UTC to the millisecond (``2026-12-06T02:40:00.123Z``)."""
    if seconds is None:
        return None
    moment = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class EventContext:
    """What every event of one camera carries besides its own frames.

    Attributes:
        model: the model file's name (the model's name on the server with Triton).
        model_sha256: SHA-256 of the model file, computed once at start (None for a server's model).
        method: ``alocc`` or ``avid``.
        thresholds: the thresholds in force (the manifest's, or the overrides it runs with).
        live: the source is a camera or stream, so frame times are wall-clock (Unix) times; for a
            file or folder they are seconds into it.
        profile: the day or night profile in force when the event opened; None without profiles.
    """

    model: str = ""
    model_sha256: str | None = None
    method: str = ""
    thresholds: Mapping[str, float] = field(default_factory=dict)
    live: bool = False
    profile: str | None = None

    def clock(self, seconds: float | None) -> dict[str, Any]:
        """A frame time as the two separate fields a record carries: ``wall_time`` (ISO 8601, live
        sources) and ``clip_s`` (seconds into the file, files and folders); the other is None."""
        if self.live:
            return {"wall_time": iso_time(seconds), "clip_s": None}
        return {"wall_time": None, "clip_s": None if seconds is None else round(float(seconds), 3)}


@dataclass
class Event:
    """One episode. ``start_time``, ``end_time`` and ``peak_time`` are its frames' capture times
    as the source gives them (Unix time for a live source, seconds into a file); :meth:`to_json`
    writes them as separate wall-clock and clip-position fields."""

    event_id: str
    start_frame: int
    start_time: float | None
    camera: str = ""
    frame_size: list[int] = field(default_factory=list)
    end_frame: int | None = None
    end_time: float | None = None
    peak_score: float = float("-inf")
    peak_frame: int = -1
    peak_time: float | None = None
    mask_area: int = 0
    boxes: list[list[int]] = field(default_factory=list)
    frames: int = 0
    closed_by: str | None = None
    context: EventContext = field(default_factory=EventContext)
    snapshot: str | None = None  # the peak frame's JPEG, once written (at close)
    clip: str | None = None  # the event's short video, where clips are on

    def to_json(self) -> dict[str, Any]:
        """The event's record (without ``type``, which the log adds): see docs/events.md."""
        ctx = self.context

        def at(prefix: str, seconds: float | None) -> dict[str, Any]:
            return {f"{prefix}_{key}": value for key, value in ctx.clock(seconds).items()}

        return {
            "schema": EVENT_SCHEMA, "event_id": self.event_id, "camera": self.camera,
            "model": ctx.model, "model_sha256": ctx.model_sha256, "method": ctx.method, "thresholds": dict(ctx.thresholds),
            "frame_size": list(self.frame_size),
            "start_frame": self.start_frame, **at("start", self.start_time),
            "end_frame": self.end_frame, **at("end", self.end_time),
            "peak_frame": self.peak_frame, **at("peak", self.peak_time),
            "peak_score": None if self.peak_frame < 0 else float(self.peak_score),
            "mask_area": self.mask_area, "boxes": [list(map(int, box)) for box in self.boxes], "frames": self.frames,
            "snapshot": self.snapshot, "clip": self.clip, "closed_by": self.closed_by,
            **({} if ctx.profile is None else {"profile": ctx.profile}),
        }


class EpisodeTracker:
    """Opens and closes anomaly episodes from a stream of frame results.

    Args:
        open_after: consecutive anomalous frames that open an episode (K).
        close_after: consecutive normal frames that close it (J).
        camera: the source's name, carried by every event.
    """

    def __init__(self, open_after: int = 3, close_after: int = 5, camera: str = "camera"):
        if open_after < 1 or close_after < 1:
            raise ValueError(f"open_after and close_after must be >= 1, got {open_after}, {close_after}")
        self.open_after, self.close_after, self.camera = open_after, close_after, camera
        self.current: Event | None = None
        self._streak_on = 0
        self._streak_off = 0
        self._pending: list[FrameResult] = []

    def update(self, result: FrameResult) -> tuple[Event | None, Event | None, bool]:
        """Feed one frame. Returns ``(opened, closed, is_new_peak)``."""
        if result.decision:
            self._streak_on += 1
            self._streak_off = 0
            if self.current is not None:
                return None, None, self._absorb(result)
            self._pending.append(result)
            if self._streak_on < self.open_after:
                return None, None, False
            first = self._pending[0]
            self.current = opened = Event(new_event_id(self.camera), first.index, first.timestamp, camera=self.camera,
                                          frame_size=list(first.frame_size or []))
            new_peak = False
            for pending in self._pending:
                new_peak = self._absorb(pending) or new_peak
            self._pending = []
            return opened, None, new_peak
        self._streak_on = 0
        self._pending = []
        if self.current is None:
            return None, None, False
        self._streak_off += 1
        if self._streak_off < self.close_after:
            return None, None, False
        return None, self._close("quiet"), False

    def _absorb(self, result: FrameResult) -> bool:
        event = self.current
        event.frames += 1
        event.end_frame, event.end_time = result.index, result.timestamp
        if result.score > event.peak_score:
            event.peak_score, event.peak_frame, event.peak_time = float(result.score), result.index, result.timestamp
            event.mask_area, event.boxes = result.mask_area, result.boxes
            return True
        return False

    def _close(self, reason: str) -> Event:
        """End the episode; its end is its last anomalous frame."""
        event = self.current
        event.closed_by = reason
        self.current = None
        self._streak_off = 0
        return event

    def flush(self, reason: str = "shutdown") -> Event | None:
        """Close the open episode, if any (at shutdown or end of stream)."""
        if self.current is None:
            return None
        return self._close(reason)
