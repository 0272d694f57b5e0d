"""A day on the walkway: hours of normal footage with known events at known times.

The walkway of :mod:`.walkway` (same scene, same movers, same anomalies) filmed through a day:

- the clock runs from ``start`` over ``clock_hours`` (24 by default) while the footage lasts
  ``hours``, so a one-hour day holds the night, the dawn, both rush hours and the dusk;
- walkers in view: 2 at night, about 6 by day, 20 at the morning (08:00) and evening (17:30) rush;
- light: a night level of :data:`NIGHT_LIGHT` of daylight, ramps at dawn (05:00–07:00) and dusk
  (19:00–21:00); the sensor noise triples in the dark;
- events (``car``, ``fast``, ``against_flow``): ``events_per_hour`` per hour of footage, one in each
  equal slot of the footage, each starting at a seeded time in its slot;
- view changes (off by default, for the scene guard): a camera shake, a covered lens, a lighting
  jump, a slow creep of :data:`CREEP_PER_MINUTE` of the width per minute, and a bump to a new view;
  on request (``view_change_kinds``, for the drift watch) a slow lighting ramp, a gain growing to
  :data:`LIGHT_RAMP_GAIN` for as long as the creep lasts (9 minutes on a 1-hour day, at most 10) that
  stays (a lamp left on, an exposure setting creeping).

On disk (:func:`write_day`): ``segment_NNN.avi`` (10 minutes each by default, lossless grey
FFV1), ``frames.csv`` (one row per frame: clock, walkers in view, light, noise, event, its box,
view change, camera offset), ``masks.npz`` (every event's exact pixel mask, cropped to its box and
bit-packed) and ``occ-dataset.json`` (the settings, the events and view changes with
their frames, the segments). :func:`open_day` reads it back. The same seed gives the same day.
"""
from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .common import DatasetError
from .walkway import ANOMALY_KINDS, MARKER, WalkwayConfig, _Mover, _Scene, replace_folder

GENERATOR = "occ walkway day"
NIGHT_LIGHT = 0.35  # light at night, as a share of daylight
RUSH_HOURS = (8.0, 17.5)  # clock hours of the morning and evening rush
RUSH_WIDTH = 0.75  # hours: standard deviation of a rush around its peak
DAY_SHARE = 0.22  # daytime walkers between rushes: this share of the way from the fewest to the most
CREEP_PER_MINUTE = 0.02  # camera creep, share of the frame width per minute of footage
VIEW_CHANGES = ("shake", "cover", "light_jump", "creep", "bump")  # injected by default with view_changes
LIGHT_RAMP_GAIN = 1.5  # the light ramp's gain once it has grown (it stays)
ALL_VIEW_CHANGES = VIEW_CHANGES + ("light_ramp",)
MIN_EVENT_SLOT_S = 45.0  # the longest event (a slow wrong-way walker) crosses in about 32 s
CODEC = "FFV1"
LIGHT_DECIMALS = 4  # the light as frames.csv records it, and as automatic gain divides by it


@dataclass
class DayConfig:
    """A generated day.

    Args:
        hours: length of the footage, hours.
        clock_hours: hours of the clock the footage spans (24: a whole day; with ``hours`` < 24 the
            clock runs faster than the footage).
        start: clock time of the first frame, ``HH:MM``.
        height: frame height, pixels.
        width: frame width, pixels.
        fps: frames per second.
        seed: random seed; the same seed gives the same day.
        events_per_hour: anomalous events per hour of footage (0: normal footage only).
        view_changes: inject the view changes (shake, cover, lighting jump, creep, bump).
        view_change_kinds: which of them (and ``light_ramp``, not in the default) ``view_changes`` injects.
        min_walkers: walkers in view at night.
        max_walkers: walkers in view at the peak of a rush hour.
        noise_sigma: sensor noise in daylight, grey levels (three times this in the dark).
        segment_minutes: length of each video file, minutes of footage.
        auto_gain: a camera with automatic gain: each frame brightened by 1 / the light (as
            ``frames.csv`` records it), so the night is as bright as the day and its
            sensor noise grows with it (3 / 0.35 = 8.6 times the day's); the view changes' own gains
            are kept in the light, so a lighting jump or ramp is compensated too.
    """

    hours: float = 1.0
    clock_hours: float = 24.0
    start: str = "00:00"
    height: int = 120
    width: int = 180
    fps: float = 10.0
    seed: int = 0
    events_per_hour: float = 6.0
    view_changes: bool = False
    view_change_kinds: tuple[str, ...] = VIEW_CHANGES
    min_walkers: float = 2.0
    max_walkers: float = 20.0
    noise_sigma: float = 2.0
    segment_minutes: float = 10.0
    auto_gain: bool = False

    @property
    def frames(self) -> int:
        return int(round(self.hours * 3600 * self.fps))

    @property
    def start_hour(self) -> float:
        return parse_clock(self.start)

    def clock_hour(self, frame: int | np.ndarray) -> float | np.ndarray:
        """Clock time of a frame, hours since midnight (0–24)."""
        return (self.start_hour + np.asarray(frame) / self.fps / 3600 * (self.clock_hours / self.hours)) % 24

    def validate(self) -> None:
        WalkwayConfig(height=self.height, width=self.width, fps=self.fps).validate()
        if not self.hours > 0 or self.frames < 10:
            raise DatasetError(f"a day needs at least 10 frames, got {self.hours} h at {self.fps} frames/s")
        if not 0 < self.clock_hours <= 24:
            raise DatasetError(f"clock_hours must be in (0, 24], got {self.clock_hours}")
        if not 0 < self.min_walkers <= self.max_walkers:
            raise DatasetError(f"walkers must satisfy 0 < min <= max, got {self.min_walkers}, {self.max_walkers}")
        if self.events_per_hour < 0 or (self.events_per_hour > 0 and 3600 / self.events_per_hour < MIN_EVENT_SLOT_S):
            raise DatasetError(f"events_per_hour must be between 0 and {3600 / MIN_EVENT_SLOT_S:g} (an event needs "
                               f"{MIN_EVENT_SLOT_S:g} s to itself), got {self.events_per_hour}")
        unknown = sorted(set(self.view_change_kinds) - set(ALL_VIEW_CHANGES))
        if unknown:
            raise DatasetError(f"unknown view change(s) {', '.join(unknown)}; known: {', '.join(ALL_VIEW_CHANGES)}")
        if not self.segment_minutes > 0:
            raise DatasetError(f"segment_minutes must be positive, got {self.segment_minutes}")
        self.start_hour  # noqa: B018 - parses, raising on a bad clock time


def parse_clock(text: str) -> float:
    """``HH:MM`` → hours since midnight."""
    try:
        hours, minutes = (int(v) for v in text.split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        raise DatasetError(f"a clock time must look like 06:30 (00:00–23:59), got {text!r}") from None
    return hours + minutes / 60


def clock_text(hour: float) -> str:
    """Hours since midnight → ``HH:MM:SS``."""
    seconds = int(round(hour * 3600)) % 86400
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _smoothstep(x: np.ndarray, low: float, high: float) -> np.ndarray:
    t = np.clip((x - low) / (high - low), 0, 1)
    return t * t * (3 - 2 * t)


def daylight(hour: float | np.ndarray) -> np.ndarray:
    """0 at night, 1 by day, smooth ramps at dawn (05:00–07:00) and dusk (19:00–21:00)."""
    hour = np.asarray(hour, float)
    return _smoothstep(hour, 5.0, 7.0) * (1 - _smoothstep(hour, 19.0, 21.0))


def light_level(hour: float | np.ndarray) -> np.ndarray:
    """Scene brightness as a share of daylight."""
    return NIGHT_LIGHT + (1 - NIGHT_LIGHT) * daylight(hour)


def walkers_in_view(hour: float | np.ndarray, fewest: float = 2.0, most: float = 20.0) -> np.ndarray:
    """Mean walkers in view at a clock hour: ``fewest`` at night, rush hours up to ``most``."""
    hour = np.asarray(hour, float)
    rush = np.max([np.exp(-0.5 * ((hour - peak) / RUSH_WIDTH) ** 2) for peak in RUSH_HOURS], axis=0)
    return fewest + (most - fewest) * np.maximum(DAY_SHARE * daylight(hour), rush)


def sensor_noise(hour: float | np.ndarray, daylight_sigma: float) -> np.ndarray:
    """Sensor noise, grey levels: ``daylight_sigma`` by day, three times it in the dark."""
    return daylight_sigma * (1 + 2 * (1 - daylight(hour)))


@dataclass
class Span:
    """A stretch of the day: its kind, first and last frame (inclusive) and clock time at its start."""

    kind: str
    start_frame: int
    end_frame: int
    start_clock: str = ""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class DayEvent(Span):
    """An anomalous event, from the first to the last frame where a pixel of it is visible."""

    event: int = -1


@dataclass
class ViewChange(Span):
    """A view change (``shake``, ``cover``, ``light_jump``, ``creep``, ``bump`` or ``light_ramp``) while it is under way."""


def schedule_events(config: DayConfig) -> list[tuple[int, str]]:
    """``(frame the mover enters, kind)`` of each event: one per equal slot of the footage (at
    least one when any is asked for)."""
    if config.events_per_hour == 0:
        return []
    count = max(1, int(round(config.events_per_hour * config.hours)))
    rng = np.random.default_rng((config.seed, 1))
    slot = config.frames / count
    return [(int(i * slot + rng.uniform(0.02, 0.2) * slot), str(rng.choice(ANOMALY_KINDS))) for i in range(count)]


def schedule_view_changes(config: DayConfig) -> list[ViewChange]:
    """The view changes at fixed shares of the footage (none unless ``config.view_changes``; those of
    ``config.view_change_kinds``). The light ramp starts at 40 % (09:36 on a whole-day clock: daylight),
    grows as long as the creep lasts and stays: with the creep or the bump it would change their light too."""
    if not config.view_changes:
        return []
    n, fps = config.frames, config.fps

    def span(kind: str, at: float, seconds: float) -> ViewChange:
        start = int(at * n)
        return ViewChange(kind, start, min(n - 1, start + max(1, int(seconds * fps)) - 1), clock_text(float(config.clock_hour(start))))

    minutes = config.hours * 60
    changes = [span("shake", 0.12, 5), span("cover", 0.27, 10), span("light_ramp", 0.40, min(600, 9 * minutes)),
               span("light_jump", 0.42, min(120, 6 * minutes)), span("creep", 0.60, min(600, 9 * minutes)),
               span("bump", 0.85, config.hours * 3600)]
    return [c for c in changes if c.kind in config.view_change_kinds]


class _View:
    """The camera's pose and exposure changes of a day, frame by frame."""

    def __init__(self, config: DayConfig, changes: list[ViewChange]):
        self.config, self.changes = config, changes
        self.rng = np.random.default_rng((config.seed, 2))
        self.bump = (0.08 * config.width, 0.04 * config.height)

    def at(self, frame: int) -> tuple[str, float, float, float, bool]:
        """``(label, dx, dy, gain, covered)`` of a frame: the change under way (or ''), the
        camera's offset in pixels, a gain factor and whether the lens is covered."""
        label, dx, dy, gain, covered = "", 0.0, 0.0, 1.0, False
        for change in self.changes:
            if frame < change.start_frame:
                continue
            active = frame <= change.end_frame
            if change.kind == "creep":
                minutes = (min(frame, change.end_frame) - change.start_frame) / self.config.fps / 60
                dx += CREEP_PER_MINUTE * self.config.width * minutes  # the view stays where the creep left it
            elif change.kind == "light_ramp":
                grown = (min(frame, change.end_frame) - change.start_frame + 1) / (change.end_frame - change.start_frame + 1)
                gain *= 1 + (LIGHT_RAMP_GAIN - 1) * grown  # the light stays where the ramp left it
            elif change.kind == "bump":
                dx, dy = dx + self.bump[0], dy + self.bump[1]
            elif not active:
                continue
            elif change.kind == "shake":
                amplitude = 0.03 * self.config.width
                dx, dy = dx + self.rng.uniform(-amplitude, amplitude), dy + self.rng.uniform(-amplitude, amplitude)
            elif change.kind == "cover":
                covered = True
            elif change.kind == "light_jump":
                gain *= 1.5
            if active:
                label = change.kind
        return label, dx, dy, gain, covered


@dataclass
class DayFrame:
    """One generated frame and its ground truth."""

    index: int
    image: np.ndarray
    clock_hour: float
    walkers: int
    light: float
    noise: float
    events: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (event number, exact pixel mask) per visible event
    view_change: str = ""
    offset: tuple[float, float] = (0.0, 0.0)


def _shift(image: np.ndarray, dx: float, dy: float, nearest: bool = False) -> np.ndarray:
    if dx == 0 and dy == 0:
        return image
    matrix = np.float32([[1, 0, -dx], [0, 1, -dy]])  # the camera moves right: the scene moves left
    if nearest:  # a mask: nothing comes in from beyond the edge
        return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def generate_day(config: DayConfig) -> Iterator[DayFrame]:
    """The day's frames in order, each with its ground truth (a generator: an hour never sits in memory)."""
    config.validate()
    walkway = WalkwayConfig(height=config.height, width=config.width, fps=config.fps, noise_sigma=config.noise_sigma, seed=config.seed)
    scene = _Scene(walkway, np.random.default_rng(config.seed))
    rng = scene.rng
    events = dict(schedule_events(config))
    view = _View(config, schedule_view_changes(config))
    period, phase = rng.uniform(200, 400), rng.uniform(0, 2 * np.pi)
    walkers = scene.initial_walkers(float(walkers_in_view(config.clock_hour(0), config.min_walkers, config.max_walkers)))
    active: list[tuple[int, _Mover]] = []
    numbers = {start: i for i, start in enumerate(sorted(events))}
    width = config.width
    for t in range(config.frames):
        hour = float(config.clock_hour(t))
        scene.spawn(walkers, scene.spawn_rate(float(walkers_in_view(hour, config.min_walkers, config.max_walkers))))
        if t in events:
            active.append((numbers[t], scene.anomaly(events[t])))
        light = float(light_level(hour))
        label, dx, dy, gain, covered = view.at(t)
        visible = sum(1 for m in walkers if -m.half_w < m.x < width + m.half_w)
        drift = 1.0 + walkway.drift * np.sin(2 * np.pi * t / period + phase)
        canvas, masks = scene.compose(walkers, [m for _, m in active], t, drift)
        canvas = canvas * (light * gain)  # the whole scene, movers included, is lit by the same light
        canvas = _shift(canvas, dx, dy)
        noise = float(sensor_noise(hour, config.noise_sigma))
        if covered:
            canvas = np.full_like(canvas, 12.0)
        image = scene.expose(canvas, noise)
        if config.auto_gain:
            image = auto_gained(image, light * gain)
        frame_events = []
        for (number, mover), mask in zip(active, masks):
            mask = _shift(mask.astype(np.uint8), dx, dy, nearest=True).astype(bool) if not covered else np.zeros_like(mask)
            if mask.any():
                frame_events.append((number, mask))
        active = [(n, m) for n, m in active if -3 * m.half_w <= m.x <= width + 3 * m.half_w]
        yield DayFrame(t, image, hour, visible, light * gain, noise, frame_events, label, (dx, dy))


def auto_gained(image: np.ndarray, light: float) -> np.ndarray:
    """An 8-bit frame as a camera with automatic gain gives it: brightened by 1 / ``light`` (as
    ``frames.csv`` records it, :data:`LIGHT_DECIMALS`), rounded and clipped."""
    gain = np.float32(1.0) / np.float32(round(light, LIGHT_DECIMALS))
    return np.clip(np.round(image.astype(np.float32) * gain), 0, 255).astype(np.uint8)


# ---- on disk ----------------------------------------------------------------------------------
FRAMES_CSV = "frames.csv"
MASKS_NPZ = "masks.npz"
CSV_COLUMNS = ("frame", "clock", "clock_hour", "walkers", "light", "noise", "event", "kind", "box", "view_change", "dx", "dy")


def _segment_writer(path: Path, config: DayConfig) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CODEC), config.fps, (config.width, config.height), isColor=False)
    if not writer.isOpened():
        raise DatasetError(f"{path}: OpenCV cannot write {CODEC} video here (an OpenCV built without FFmpeg?)")
    return writer


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` around a mask's pixels (``x2``, ``y2`` exclusive)."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def write_day(root: str | Path, config: DayConfig, progress: Callable[[], None] | None = None) -> dict:
    """``occ data generate --day``: generate the day and write it under ``root``, whole or not at
    all (an existing ``root`` is replaced only when empty or an earlier occ data set)."""
    config.validate()
    per_segment = max(1, int(round(config.segment_minutes * 60 * config.fps)))
    kinds = dict(schedule_events(config))
    summary: dict = {}

    def fill(staging: Path) -> None:
        events: dict[int, DayEvent] = {}
        mask_rows: list[tuple[int, int, int, int, int, int]] = []  # frame, event, x1, y1, x2, y2
        bits: list[np.ndarray] = []
        segments: list[dict] = []
        writer = None
        with open(staging / FRAMES_CSV, "w", newline="") as table:
            rows = csv.writer(table)
            rows.writerow(CSV_COLUMNS)
            try:
                for frame in generate_day(config):
                    if frame.index % per_segment == 0:
                        if writer is not None:
                            writer.release()
                        name = f"segment_{len(segments):03d}.avi"
                        writer = _segment_writer(staging / name, config)
                        segments.append({"file": name, "first_frame": frame.index, "frames": 0})
                    writer.write(frame.image)
                    segments[-1]["frames"] += 1
                    first_box = ""
                    for number, mask in frame.events:
                        x1, y1, x2, y2 = _box(mask)
                        first_box = first_box or f"{x1} {y1} {x2} {y2}"
                        mask_rows.append((frame.index, number, x1, y1, x2, y2))
                        bits.append(np.packbits(mask[y1:y2, x1:x2].ravel()))
                        if number not in events:
                            events[number] = DayEvent(_kind_of(kinds, number), frame.index, frame.index, clock_text(frame.clock_hour), event=number)
                        events[number].end_frame = frame.index
                    numbers = ";".join(str(n) for n, _ in frame.events)
                    kind = ";".join(events[n].kind for n, _ in frame.events)
                    rows.writerow((frame.index, clock_text(frame.clock_hour), f"{frame.clock_hour:.5f}", frame.walkers, f"{frame.light:.{LIGHT_DECIMALS}f}",
                                   f"{frame.noise:.3f}", numbers, kind, first_box, frame.view_change,
                                   f"{frame.offset[0]:.2f}", f"{frame.offset[1]:.2f}"))
                    if progress is not None:
                        progress()
            finally:
                if writer is not None:
                    writer.release()
        table_rows = np.array(mask_rows, np.int32).reshape(-1, 6)
        offsets = np.cumsum([0] + [len(b) for b in bits]).astype(np.int64)
        np.savez_compressed(staging / MASKS_NPZ, rows=table_rows, offsets=offsets,
                            bits=np.concatenate(bits) if bits else np.zeros(0, np.uint8))
        summary.update({"generator": GENERATOR, "config": dataclasses.asdict(config), "frames": config.frames,
                        "events": [events[n].to_json() for n in sorted(events)],
                        "view_changes": [c.to_json() for c in schedule_view_changes(config)], "segments": segments})
        (staging / MARKER).write_text(json.dumps(summary, indent=2))

    path = replace_folder(root, fill)
    return {"title": f"walkway day written to {path}", "path": str(path), "frames": config.frames, "hours": config.hours,
            "clips": [{"event": e["event"], "kind": e["kind"], "start frame": e["start_frame"], "end frame": e["end_frame"],
                       "clock": e["start_clock"]} for e in summary["events"]],
            "view_changes": summary["view_changes"], "segments": len(summary["segments"])}


def _kind_of(kinds: dict[int, str], number: int) -> str:
    return kinds[sorted(kinds)[number]]


def is_day(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by :func:`write_day`."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


class _FrameRange:
    """Frames ``start`` to ``stop`` (exclusive) of a day, read from its segments when iterated."""

    def __init__(self, day: "Day", start: int, stop: int):
        self.day, self.start, self.stop = day, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, image in self.day.frames(self.start, self.stop):
            yield image


@dataclass
class Day:
    """A day read back from disk (:func:`open_day`): its settings, events, view changes and the
    per-frame table (``clock_hour``, ``walkers``, ``light``, ``noise``, ``event``: the event
    visible in the frame or -1, ``view_change``)."""

    root: Path
    config: DayConfig
    events: list[DayEvent]
    view_changes: list[ViewChange]
    segments: list[dict]
    table: dict[str, np.ndarray]

    @property
    def labels(self) -> np.ndarray:
        """True on every frame where an event's pixel is visible."""
        return self.table["event"] >= 0

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, grey frame)`` from ``start`` to ``stop`` (exclusive), across the segments."""
        stop = self.config.frames if stop is None else stop
        for segment in self.segments:
            first, count = segment["first_frame"], segment["frames"]
            if first + count <= start or first >= stop:
                continue
            path = self.root / segment["file"]
            capture = cv2.VideoCapture(str(path))
            try:
                if not capture.isOpened():
                    raise DatasetError(f"{path}: cannot open the video segment")
                for index in range(first, min(first + count, stop)):
                    ok = capture.grab() if index < start else None
                    if ok is None:
                        ok, image = capture.read()
                        if ok:
                            yield index, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
                    if not ok:
                        raise DatasetError(f"{path}: ends at frame {index - first} of {count}")
            finally:
                capture.release()

    def normal_runs(self, margin: int = 0) -> list[_FrameRange]:
        """The stretches with no event in view (``margin`` frames kept off each event), in order:
        normal footage, each stretch a clip of its own."""
        normal = ~self.labels
        if margin:
            normal &= ~(np.convolve(self.labels, np.ones(2 * margin + 1), "same") > 0)
        edges = np.flatnonzero(np.diff(np.r_[0, normal.astype(np.int8), 0]))
        return [_FrameRange(self, int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]

    def masks(self) -> "DayMasks":
        return DayMasks(self.root / MASKS_NPZ, (self.config.height, self.config.width))


class DayMasks:
    """Every event's exact pixel mask, frame by frame, from ``masks.npz``."""

    def __init__(self, path: Path, size: tuple[int, int]):
        try:
            with np.load(path) as data:
                self.rows, self.offsets, self.bits = data["rows"], data["offsets"], data["bits"]
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(f"{path}: not a day's mask file ({exc})") from None
        self.size = size

    def at(self, frame: int) -> list[tuple[int, np.ndarray]]:
        """``(event, full-frame boolean mask)`` of each event visible in ``frame``."""
        lo, hi = np.searchsorted(self.rows[:, 0], [frame, frame + 1])
        out = []
        for i in range(lo, hi):
            _, event, x1, y1, x2, y2 = (int(v) for v in self.rows[i])
            crop = np.unpackbits(self.bits[self.offsets[i]:self.offsets[i + 1]], count=(y2 - y1) * (x2 - x1)).reshape(y2 - y1, x2 - x1)
            mask = np.zeros(self.size, bool)
            mask[y1:y2, x1:x2] = crop.astype(bool)
            out.append((event, mask))
        return out


def open_day(path: str | Path) -> Day:
    """Read a day written by :func:`write_day` (its table and ground truth; frames stay on disk)."""
    root = Path(path)
    if not is_day(root):
        raise DatasetError(f"{root}: not a walkway day (no {MARKER} from `occ data generate --day`)")
    meta = json.loads((root / MARKER).read_text())
    config = DayConfig(**meta["config"])
    try:
        with open(root / FRAMES_CSV, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DatasetError(f"{root / FRAMES_CSV}: cannot read ({exc.strerror})") from None
    if len(rows) != config.frames:
        raise DatasetError(f"{root / FRAMES_CSV}: {len(rows)} rows for {config.frames} frames")
    table = {"clock_hour": np.array([float(r["clock_hour"]) for r in rows]),
             "walkers": np.array([int(r["walkers"]) for r in rows]),
             "light": np.array([float(r["light"]) for r in rows]),
             "noise": np.array([float(r["noise"]) for r in rows]),
             "event": np.array([int(r["event"].split(";")[0]) if r["event"] else -1 for r in rows]),
             "view_change": np.array([r["view_change"] for r in rows])}
    return Day(root, config, [DayEvent(**e) for e in meta["events"]], [ViewChange(**c) for c in meta["view_changes"]],
               meta["segments"], table)
