"""From per-frame decisions to episodes: an episode opens when the decision holds for
``open_after`` frames in a row and closes after ``close_after`` quiet frames in a row.

An event record (one JSON line when it opens, one when it closes):

- ``event_id``: unique across processes and restarts, and sortable by time:
  ``<camera>-<UTC opening time>-<4 hex digits>``, e.g. ``gate-20261128T051203.123Z-7f3a``;
- ``camera``: the source's name; ``frame_size``: ``[height, width]`` of the source's frames;
- ``start_frame``/``end_frame`` and ``start_time``/``end_time`` (capture times, seconds);
- the peak frame, its score, mask area (network pixels) and ``boxes``: ``[x1, y1, x2, y2]`` in
  source-frame pixels, ``x2``/``y2`` exclusive;
- ``closed_by``: ``quiet`` (J normal frames), ``end of stream`` or ``shutdown``.
"""
from __future__ import annotations

import datetime as _dt
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..scoring.decide import FrameResult


def new_event_id(camera: str) -> str:
    """``<camera>-<UTC time to the millisecond>-<4 random hex digits>``: unique and time-ordered."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{camera_slug(camera)}-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{os.urandom(2).hex()}"


def camera_slug(name: str) -> str:
    """A camera name as it can appear in ids and file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "camera"


@dataclass
class Event:
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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
