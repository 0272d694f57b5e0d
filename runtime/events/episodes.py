"""From per-frame decisions to episodes, by the manifest's episode rule
(:class:`~occ.runtime.manifest.EpisodeRule`: ``k`` firing frames of ``n``, or a CUSUM of the
score; closed after ``close_after`` quiet frames in a row). :class:`EpisodeGate` is the rule, frame
by frame; the tracker and the calibration that counts alarms on normal footage both run it.

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
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from ..manifest import EpisodeRule, ManifestError
from ..scoring.decide import FrameResult


def new_event_id(camera: str) -> str:
    """``<camera>-<UTC time to the millisecond>-<4 random hex digits>``: unique and time-ordered."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{camera_slug(camera)}-{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}Z-{os.urandom(2).hex()}"


def camera_slug(name: str) -> str:
    """A camera name as it can appear in ids and file names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "camera"


EVENT_SCHEMA = "occ.event.v1"  # the "schema" field of every event line; a new version for any change a reader must know
CAMERA_SCHEMA = "occ.camera.v1"  # the "schema" field of the events log's lines about the camera itself (scene guard, drift)


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


def episode_rule(rule: EpisodeRule | None = None, open_after: int | None = None, close_after: int | None = None) -> EpisodeRule:
    """The rule in force: the manifest's ``rule`` (default: :class:`EpisodeRule`'s), with a
    service configuration's explicit ``open_after`` (``open_after`` firing frames in a row) and
    ``close_after`` overriding it."""
    rule = EpisodeRule(**asdict(rule or EpisodeRule()))
    if open_after is not None:
        rule.kind, rule.k, rule.n, rule.reference, rule.decision = "k_of_n", open_after, open_after, None, None
    if close_after is not None:
        rule.close_after = close_after
    try:
        return rule.validate()
    except ManifestError as exc:
        raise ValueError(str(exc)) from None


class EpisodeGate:
    """The episode rule frame by frame: :meth:`step` says whether this frame opens or closes an
    episode. The camera's tracker and the calibration's alarm count both run it.

    Args:
        rule: the episode rule.
        threshold: the value frame scores are compared with (τ for ALOCC, 1 for AVID), > 0 for
            the ``cusum`` rule, which accumulates ``score / threshold``.
    """

    def __init__(self, rule: EpisodeRule, threshold: float = 1.0):
        rule.validate()
        if rule.kind == "cusum" and not threshold > 0:
            raise ValueError(f"the cusum episode rule needs a positive threshold to measure scores in, got {threshold}")
        self.rule, self.threshold = rule, float(threshold)
        self.reset()

    def reset(self) -> None:
        """A new stream: no evidence, no open episode."""
        self.is_open = False
        self.evidence = 0.0  # cusum: S_t
        self.quiet_streak = 0
        self._window: deque[bool] = deque(maxlen=self.rule.n or 1)
        self._firing = 0

    def step(self, score: float, decision: bool) -> str | None:
        """Feed one frame: ``"opened"`` or ``"closed"`` when the episode state changes, else None."""
        rule = self.rule
        if rule.kind == "k_of_n":
            if len(self._window) == self._window.maxlen:
                self._firing -= self._window[0]
            self._window.append(bool(decision))
            self._firing += bool(decision)
            holds, quiet = self._firing >= rule.k, not decision
        else:
            self.evidence = min(max(0.0, self.evidence + float(score) / self.threshold - rule.reference), rule.decision + 1.0)
            holds = self.evidence > rule.decision
            quiet = not holds
        self.quiet_streak = self.quiet_streak + 1 if quiet else 0
        if self.is_open and self.quiet_streak >= rule.close_after:
            self.is_open = False
            return "closed"
        if not self.is_open and holds:
            self.is_open = True
            return "opened"
        return None

    @property
    def evidence_started(self) -> bool:
        """True while evidence for an episode is building up (a firing frame in the window, S_t > 0)."""
        return self._firing > 0 if self.rule.kind == "k_of_n" else self.evidence > 0


@dataclass
class EpisodeCount:
    """Episodes over a sequence of frames: how many opened, and how many frames they held open."""

    opened: int
    open_frames: int


def count_episodes(scores: Iterable[float], decisions: Iterable[bool], rule: EpisodeRule, threshold: float = 1.0,
                   clip_starts: Iterable[int] = (0,)) -> EpisodeCount:
    """Episodes the rule opens over a sequence of frames (what an operator is woken for), each
    clip in ``clip_starts`` (frame indices) starting afresh, as a camera's tracker would.

    Args:
        scores: frame scores, in the model's units.
        decisions: the frames' decisions at the threshold.
        rule: the episode rule.
        threshold: τ for ALOCC, 1 for AVID (see :class:`EpisodeGate`).
        clip_starts: frame indices where a new clip (a new stream) begins.
    """
    gate = EpisodeGate(rule, threshold)
    starts = set(int(i) for i in clip_starts)
    opened = open_frames = 0
    for index, (score, decision) in enumerate(zip(np.asarray(scores, np.float64).tolist(), np.asarray(decisions, bool).tolist())):
        if index in starts:
            gate.reset()
        opened += gate.step(score, decision) == "opened"
        open_frames += gate.is_open
    return EpisodeCount(opened, open_frames)


# An episode starts at most this many frames before it opens (a CUSUM can hover above 0 for long).
MAX_PENDING_FRAMES = 256


class EpisodeTracker:
    """Opens and closes anomaly episodes from a stream of frame results, by an episode rule.

    Args:
        open_after: consecutive anomalous frames that open an episode (an override of ``rule``;
            None: the rule's).
        close_after: consecutive quiet frames that close it (an override; None: the rule's).
        camera: the source's name, carried by every event.
        rule: the model's episode rule (its manifest's ``episodes``); default: :class:`EpisodeRule`'s.
        threshold: the value frame scores are compared with (τ for ALOCC, 1 for AVID), for the
            ``cusum`` rule.
    """

    def __init__(self, open_after: int | None = None, close_after: int | None = None, camera: str = "camera",
                 rule: EpisodeRule | None = None, threshold: float = 1.0):
        self.rule = episode_rule(rule, open_after, close_after)
        self.gate = EpisodeGate(self.rule, threshold)
        self.camera = camera
        self.current: Event | None = None
        self._pending: list[FrameResult] = []

    def update(self, result: FrameResult) -> tuple[Event | None, Event | None, bool]:
        """Feed one frame. Returns ``(opened, closed, is_new_peak)``."""
        change = self.gate.step(result.score, result.decision)
        if self.current is not None:
            if change == "closed":
                return None, self._close("quiet"), False
            return None, None, self._absorb(result) if result.decision else False
        self._keep_pending(result)
        if change != "opened":
            return None, None, False
        first = self._pending[0]
        self.current = opened = Event(new_event_id(self.camera), first.index, first.timestamp, camera=self.camera,
                                      frame_size=list(first.frame_size or []))
        new_peak = False
        for pending in [p for p in self._pending if p.decision] or [result]:
            new_peak = self._absorb(pending) or new_peak
        self._pending = []
        return opened, None, new_peak

    def _keep_pending(self, result: FrameResult) -> None:
        """The frames since the evidence for an episode began: its start, once it opens."""
        if not self.gate.evidence_started:
            self._pending = []
            return
        self._pending = self._pending[-(MAX_PENDING_FRAMES - 1):] + [result]
        if self.rule.kind == "k_of_n":  # the window's first firing frame starts the episode
            recent = [p for p in self._pending if result.index - p.index < self.rule.n]
            self._pending = recent[next((i for i, p in enumerate(recent) if p.decision), len(recent)):]

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
        return event

    def flush(self, reason: str = "shutdown") -> Event | None:
        """Close the open episode, if any (at shutdown or end of stream)."""
        self.gate.reset()
        self._pending = []
        if self.current is None:
            return None
        return self._close(reason)
