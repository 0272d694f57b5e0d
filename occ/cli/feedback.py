"""``occ feedback``: an operator's word on an event, kept for the next calibration."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import JsonOption, QuietOption, check_outputs, console, fail, one_line_errors, report

DEFAULT_EVENTS = Path("events.jsonl")
DEFAULT_HARD_NORMAL = "hard-normal"  # beside the events log, as [feedback] hard_normal's default is beside the configuration


def feedback(
    ctx: typer.Context,
    event_id: Annotated[str, typer.Argument(help="The event's event_id, as in the events log (e.g. gate-20261206T024000.123Z-7f3a).")],
    not_anomaly: Annotated[bool, typer.Option("--not-anomaly", help="The event was normal for this camera: copy its clip into the "
                                                                    "camera's hard-normal set. Required (the one verdict so far).")] = False,
    events: Annotated[Optional[Path], typer.Option(metavar="PATH", help="The service's events log (its rotated files are searched "
                                                                       "too) or a folder of logs. Default: the configuration's "
                                                                       "[events] log, else events.jsonl here.")] = None,
    hard_normal: Annotated[Optional[Path], typer.Option("--hard-normal", metavar="DIR", help="The hard-normal set; the clip goes to "
                                                                                            "DIR/<camera>/. Default: the configuration's "
                                                                                            "[feedback] hard_normal, else hard-normal/ "
                                                                                            "beside the events log.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="The service configuration (TOML) the event came from: its events log, "
                                                        "snapshots folder and [feedback] hard_normal. Default: none.")] = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Mark an event as normal: its clip and a record go to the camera's hard-normal set, which
    `occ calibrate --hard-normal DIR/<camera>` adds to the normal footage. Nothing is trained here.

    An unknown event, one without a clip, or a file in the set that is not this event's is refused
    in one line; an event already in the set is left as it is."""
    from occ.runtime.events import FeedbackError, mark_not_anomaly
    from occ.runtime.service import ConfigError, ServiceConfig

    if not not_anomaly:
        fail("say what the event was: --not-anomaly (its clip goes to the camera's hard-normal set)")
    clips = None
    if config is not None:
        for name, option in (("events", "--events"), ("hard_normal", "--hard-normal")):
            source = ctx.get_parameter_source(name)
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                fail(f"{option} conflicts with --config {config}, which sets it: drop one")
        with one_line_errors(ConfigError):
            settings = ServiceConfig.from_toml(config, check=False)
        events, hard_normal, clips = Path(settings.events_log), Path(settings.hard_normal), settings.snapshots or None
    events = events or DEFAULT_EVENTS
    if hard_normal is None:
        hard_normal = (events if events.is_dir() else events.parent) / DEFAULT_HARD_NORMAL
    check_outputs({"--json": json_path}, {"events log": events})
    with one_line_errors(FeedbackError):
        marked = mark_not_anomaly(event_id, events, hard_normal, clips)
    event = marked.event
    result = {"event_id": event_id, "camera": event.get("camera"), "verdict": "not_anomaly", "already": marked.already,
              "clip": str(marked.clip), "record": str(marked.record), "folder": str(marked.clip.parent),
              "model": event.get("model"), "peak_score": event.get("peak_score"), "thresholds": event.get("thresholds")}

    def show(result: dict) -> None:
        if result["already"]:
            console.print(f"{event_id} is already in the hard-normal set: {result['clip']}", highlight=False, markup=False)
            return
        console.print(f"{event_id} marked not an anomaly: its clip is in the hard-normal set as {result['clip']} (record "
                      f"{Path(result['record']).name}); the next `occ calibrate MODEL --data ... --hard-normal {result['folder']}` "
                      "counts it as normal", highlight=False, markup=False, soft_wrap=True)

    report(result, json_path, quiet, show)
