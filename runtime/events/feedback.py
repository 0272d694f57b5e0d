"""An operator's word on an event: ``occ feedback EVENT_ID --not-anomaly`` puts the event's clip in
the camera's hard-normal set, which the next ``occ calibrate --hard-normal`` counts as normal footage.

The set is a folder per camera (``<hard-normal folder>/<camera>/``) holding, for each event, its
clip (``<event_id>.avi``, a copy of the service's) and a record beside it (``<event_id>.json``,
schema :data:`HARD_NORMAL_SCHEMA`, fields in docs/events.md). Nothing here trains anything: the
set only adds footage to a later calibration. A file already in the set is never overwritten;
marking the same event twice changes nothing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..files import copy_atomic, file_sha256, now_iso, write_atomic
from .episodes import EVENT_SCHEMA, camera_slug

HARD_NORMAL_SCHEMA = "occ.hard_normal.v1"  # the "schema" field of every record of the hard-normal set
VERDICTS = ("not_anomaly",)
# What a record keeps of the event's line: who saw it, with which model and thresholds, when, how strongly.
EVENT_FIELDS = ("event_id", "camera", "model", "model_sha256", "method", "thresholds", "peak_score", "frames",
                "start_frame", "start_wall_time", "start_clip_s", "end_frame", "end_wall_time", "end_clip_s")


class FeedbackError(ValueError):
    """An event that cannot go into the hard-normal set; the message is one line."""


@dataclass
class Marked:
    """What :func:`mark_not_anomaly` did.

    Attributes:
        clip: the clip in the hard-normal set.
        record: the record beside it.
        event: the event's line in the events log.
        already: the event was in the set before; nothing was written.
    """

    clip: Path
    record: Path
    event: dict[str, Any]
    already: bool = False


def event_logs(events: str | Path) -> list[Path]:
    """The events logs to search: a log and its rotated files (``events.jsonl.1`` …), or every
    log in a folder; newest first."""
    path = Path(events)
    if path.is_dir():
        logs = [p for p in path.iterdir() if p.is_file() and (p.suffix == ".jsonl" or ".jsonl." in p.name)]
    elif path.is_file():
        logs = [path, *(p for p in path.parent.glob(f"{path.name}.*") if p.suffix[1:].isdigit())]
    else:
        raise FeedbackError(f"{path}: no events log or folder there")
    return sorted(logs, key=lambda p: (p.name.split(".jsonl")[0], _rotation(p)))


def _rotation(path: Path) -> int:
    suffix = path.name.rsplit(".jsonl", 1)[-1].lstrip(".")
    return int(suffix) if suffix.isdigit() else 0


def _lines(log: Path, needle: str) -> Iterator[dict[str, Any]]:
    """The JSON lines of ``log`` that mention ``needle`` (the cheap test first: logs run to 100 MB)."""
    try:
        with open(log, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if needle in line:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(record, dict):
                        yield record
    except OSError as exc:
        raise FeedbackError(f"{log}: cannot read ({exc.strerror or exc})") from None


def find_event(events: str | Path, event_id: str) -> tuple[dict[str, Any], Path]:
    """The event's last line (its ``closed`` line where there is one) and the log it is in.

    Raises:
        FeedbackError: no log there, or no event with this id in it.
    """
    logs = event_logs(events)
    for log in logs:
        found = [line for line in _lines(log, event_id) if line.get("schema") == EVENT_SCHEMA and line.get("event_id") == event_id]
        if found:
            return next((line for line in reversed(found) if line.get("type") == "closed"), found[-1]), log
    searched = ", ".join(p.name for p in logs) or "no log in it"
    raise FeedbackError(f"{event_id}: no such event in {events} ({searched})")


def event_clip(event: dict[str, Any], log: Path, clips: str | Path | None = None) -> Path:
    """The event's clip file, where the service wrote it: its path as logged (relative paths
    relative to the current folder, then to the log's folder), or its name in ``clips`` (the
    service's snapshots folder).

    Raises:
        FeedbackError: the event has no clip, it is still being written, or it is gone.
    """
    event_id, logged = event["event_id"], event.get("clip")
    if not logged:
        raise FeedbackError(f"{event_id}: the event has no clip (clips were off: [snapshots] folder, clip_before, clip_after)")
    logged = Path(logged)
    candidates = [logged] if logged.is_absolute() else [logged, log.parent / logged]
    if clips:
        candidates.append(Path(clips) / logged.name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
        if (candidate.parent / f".{candidate.stem}.partial.avi").is_file():
            raise FeedbackError(f"{event_id}: its clip {candidate} is still being written (complete a few seconds after the "
                                "event closes); try again then")
    raise FeedbackError(f"{event_id}: its clip {logged} is gone (clips are rotated, [snapshots] clip_max_files and clip_max_mb)")


def camera_folder(hard_normal: str | Path, camera: str) -> Path:
    """The camera's folder of the hard-normal set."""
    return Path(hard_normal) / camera_slug(camera)


def mark_not_anomaly(event_id: str, events: str | Path, hard_normal: str | Path, clips: str | Path | None = None) -> Marked:
    """Put the event's clip in its camera's hard-normal set, with a record beside it.

    Args:
        event_id: the event's ``event_id``.
        events: the service's events log (its rotated files are searched too), or a folder of logs.
        hard_normal: the hard-normal set; the clip goes to its camera's folder.
        clips: the service's snapshots folder, where the clip is looked for by name when its
            logged path does not lead to it.

    Raises:
        FeedbackError: an unknown event, an event without a clip, or a file in the way that is not
            this event's (never overwritten).
    """
    event, log = find_event(events, event_id)
    source = event_clip(event, log, clips)
    folder = camera_folder(hard_normal, event.get("camera") or "camera")
    name = camera_slug(event_id)
    clip, record_path = folder / f"{name}.avi", folder / f"{name}.json"
    checksum = file_sha256(source)
    if record_path.exists():
        kept = _read_record(record_path)
        if kept is None or kept.get("event_id") != event_id:
            raise FeedbackError(f"{record_path}: already exists and is not this event's record; not overwritten")
        if clip.is_file() and file_sha256(clip) == kept.get("clip_sha256"):
            return Marked(clip, record_path, event, already=True)
    if clip.exists() and not (clip.is_file() and file_sha256(clip) == checksum):
        raise FeedbackError(f"{clip}: already exists and is not this event's clip; not overwritten")
    if not clip.exists():
        copy_atomic(source, clip)
    record = {"schema": HARD_NORMAL_SCHEMA, "verdict": "not_anomaly", **{key: event.get(key) for key in EVENT_FIELDS},
              **({"profile": event["profile"]} if "profile" in event else {}),
              "clip": clip.name, "clip_sha256": checksum, "source_clip": str(source), "marked_at": now_iso()}
    if not record_path.exists():
        write_atomic(record_path, (json.dumps(record, indent=2) + "\n").encode())
    return Marked(clip, record_path, event)


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("schema") == HARD_NORMAL_SCHEMA else None


@dataclass
class HardNormalClip:
    """One clip of a camera's hard-normal set.

    Attributes:
        event_id: the event it was.
        clip: the video file.
        record: its record (:data:`HARD_NORMAL_SCHEMA`).
    """

    event_id: str
    clip: Path
    record: dict[str, Any]


def hard_normal_clips(folder: str | Path) -> list[HardNormalClip]:
    """A camera's hard-normal set (``<hard-normal folder>/<camera>``), oldest event first.

    Raises:
        FeedbackError: no such folder, the set's top folder instead of a camera's, no record in it,
            a record that is not one, or a record whose clip is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FeedbackError(f"{folder}: no hard-normal folder there")
    records = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not records:
        cameras = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.json")))
        if cameras:
            raise FeedbackError(f"{folder}: holds the hard-normal sets of {', '.join(cameras)}; give the calibrated camera's "
                                f"folder, e.g. {folder / cameras[0]}")
        raise FeedbackError(f"{folder}: holds no hard-normal clip (occ feedback EVENT_ID --not-anomaly puts them there)")
    clips = []
    for path in records:
        record = _read_record(path)
        if record is None or not isinstance(record.get("clip"), str) or not isinstance(record.get("event_id"), str):
            raise FeedbackError(f"{path}: not a hard-normal record ({HARD_NORMAL_SCHEMA})")
        clip = folder / Path(record["clip"]).name
        if not clip.is_file():
            raise FeedbackError(f"{path}: its clip {clip} is missing")
        clips.append(HardNormalClip(record["event_id"], clip, record))
    return sorted(clips, key=lambda c: c.event_id)
