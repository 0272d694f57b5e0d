"""From per-frame decisions to episodes: an episode opens when the decision holds for
``open_after`` frames in a row and closes after ``close_after`` quiet frames in a row. Each event
records its start and end time and frame, the peak score, the peak frame's mask area and boxes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..scoring.decide import FrameResult


@dataclass
class Event:
    event_id: int
    start_frame: int
    start_time: float | None
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
    """

    def __init__(self, open_after: int = 3, close_after: int = 5):
        if open_after < 1 or close_after < 1:
            raise ValueError(f"open_after and close_after must be >= 1, got {open_after}, {close_after}")
        self.open_after, self.close_after = open_after, close_after
        self.current: Event | None = None
        self._streak_on = 0
        self._streak_off = 0
        self._pending: list[FrameResult] = []
        self._next_id = 1

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
            self.current = opened = Event(self._next_id, first.index, first.timestamp)
            self._next_id += 1
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
