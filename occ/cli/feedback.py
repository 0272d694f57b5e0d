"""``occ feedback``: an operator's word on an event, kept for the next calibration."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .common import JsonOption, QuietOption, check_outputs, console, fail, one_line_errors, report

if TYPE_CHECKING:
    from occ.runtime.service import ServiceConfig

DEFAULT_EVENTS = Path("events.jsonl")
DEFAULT_HARD_NORMAL = "hard-normal"  # beside the events log, as [feedback] hard_normal's default is beside the configuration


def configured_hard_normal(config: Path) -> tuple["ServiceConfig", Path]:
    """The service configuration in ``config``, parsed as the service parses it but not checked (the
    running service holds its port and outputs), and its hard-normal set: ``[feedback] hard_normal``,
    default ``hard-normal`` beside the configuration; each camera's clips are in a subfolder of it.
    ``occ feedback`` fills that set and ``occ calibrate --config`` reads it, so both resolve it here.
    A configuration that does not parse exits in one line."""
    from occ.runtime.service import ConfigError, ServiceConfig

    with one_line_errors(ConfigError):
        settings = ServiceConfig.from_toml(config, check=False)
    return settings, Path(settings.hard_normal)


def camera_hard_normal(config: Path, camera: Optional[str]) -> tuple[str, Path]:
    """The camera's name and its folder of the hard-normal set that ``config`` names. ``camera`` may
    be left out when the configuration has one camera; an unknown name exits in one line."""
    from occ.runtime.events.feedback import camera_folder

    settings, hard_normal = configured_hard_normal(config)
    names = [c.name for c in settings.cameras]
    if camera is None:
        if len(names) > 1:
            fail(f"{config}: has cameras {', '.join(names)}; say which one with --camera NAME")
        camera = names[0]
    elif camera not in names:
        fail(f"{config}: no camera named {camera!r}; its cameras: {', '.join(names)}")
    return camera, camera_folder(hard_normal, camera)


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
    `occ calibrate MODEL --data FOOTAGE --config site.toml` (or `--hard-normal DIR/<camera>`) adds to
    the normal footage. Nothing is trained here.

    An unknown event, one without a clip, or a file in the set that is not this event's is refused
    in one line; an event already in the set is left as it is."""
    from occ.runtime.events import FeedbackError, mark_not_anomaly

    if not not_anomaly:
        fail("say what the event was: --not-anomaly (its clip goes to the camera's hard-normal set)")
    clips, cameras = None, 0
    if config is not None:
        for name, option in (("events", "--events"), ("hard_normal", "--hard-normal")):
            source = ctx.get_parameter_source(name)
            if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
                fail(f"{option} conflicts with --config {config}, which sets it: drop one")
        settings, hard_normal = configured_hard_normal(config)
        events, clips, cameras = Path(settings.events_log), settings.snapshots or None, len(settings.cameras)
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

    if config is None:
        calibrate_options = f"--hard-normal {result['folder']}"
    else:
        calibrate_options = f"--config {shlex.quote(str(config))}" + (f" --camera {shlex.quote(result['camera'])}" if cameras > 1 else "")

    def show(result: dict) -> None:
        if result["already"]:
            console.print(f"{event_id} is already in the hard-normal set: {result['clip']}", highlight=False, markup=False)
            return
        console.print(f"{event_id} marked not an anomaly: its clip is in the hard-normal set as {result['clip']} (record "
                      f"{Path(result['record']).name}); the next `occ calibrate MODEL --data ... {calibrate_options}` "
                      "counts it as normal", highlight=False, markup=False, soft_wrap=True)

    report(result, json_path, quiet, show)
