"""``occ data``: generate the built-in walkway, record footage, summarize a data set."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import JsonOption, OneLineGroup, QuietOption, SplitOption, one_line_errors, progress_bar, report, table

app = typer.Typer(help="Generate and inspect data sets.", no_args_is_help=True, cls=OneLineGroup)


def _show(result: dict) -> None:
    table(result["title"], result["clips"])


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Argument(help="Folder to write the UCSD-layout data set (or the --day) to: new, empty, or an earlier occ data set.")],
    height: Annotated[int, typer.Option(min=16, help="Frame height, pixels.")] = 120,
    width: Annotated[int, typer.Option(min=16, help="Frame width, pixels.")] = 180,
    train_clips: Annotated[int, typer.Option(min=1, help="Normal-only training clips.")] = 6,
    test_clips: Annotated[int, typer.Option(min=1, help="Test clips, one anomalous episode each.")] = 5,
    frames_per_clip: Annotated[int, typer.Option("--frames-per-clip", min=10, help="Frames in every clip.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    day: Annotated[Optional[float], typer.Option(
        min=0.001, help="Write a day on the walkway instead: this many hours of footage at 10 frames/s as video segments with "
                        "per-frame ground truth (walkers, light, events, view changes). Default: off (train and test clips).")] = None,
    start: Annotated[str, typer.Option(help="With --day: clock time of the first frame, HH:MM.")] = "00:00",
    clock_hours: Annotated[float, typer.Option(
        min=0.01, max=24, help="With --day: hours of the clock the footage spans (24: a whole day, compressed into --day hours).")] = 24.0,
    events_per_hour: Annotated[float, typer.Option(
        min=0, help="With --day: anomalous events (car, fast, against the flow) per hour of footage; 0 for normal footage only.")] = 6.0,
    view_changes: Annotated[bool, typer.Option(
        help="With --day: inject view changes (camera shake, covered lens, lighting jump, slow creep, bump). Default: off.")] = False,
    view_change: Annotated[Optional[list[str]], typer.Option(
        help="With --view-changes: inject only this one (repeat for more): shake, cover, light_jump, creep, bump, or light_ramp "
             "(a slow gain ramp to 1.5 over 10 minutes from 40 % of the footage that stays; not in the default set).")] = None,
    segment_minutes: Annotated[float, typer.Option(min=0.01, help="With --day: minutes of footage per video file.")] = 10.0,
    auto_gain: Annotated[bool, typer.Option(
        help="With --day: a camera with automatic gain: each frame brightened back to daylight's level, its sensor noise "
             "with it. Default: off (the night is dark).")] = False,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate the synthetic walkway (normal pedestrians; cars, fast and wrong-way movers in test), or with --day a day of it."""
    from occ.evaluation.datasets.walkway import WalkwayConfig, write_walkway

    if day is not None:
        from occ.evaluation.datasets.walkway_day import DayConfig, write_day

        config = DayConfig(hours=day, clock_hours=clock_hours, start=start, height=height, width=width, seed=seed,
                           events_per_hour=events_per_hour, view_changes=view_changes or bool(view_change), segment_minutes=segment_minutes,
                           auto_gain=auto_gain,
                           **({"view_change_kinds": tuple(view_change)} if view_change else {}))
        with one_line_errors(), progress_bar("generating the day", total=config.frames, disable=quiet) as advance:
            result = write_day(out, config, progress=advance)
        report(result, json_path, quiet, lambda r: table(f"{r['title']}: {r['frames']} frames in {r['segments']} segment(s); events",
                                                         r["clips"]))
        return
    with one_line_errors():
        result = write_walkway(out, WalkwayConfig(height=height, width=width, train_clips=train_clips, test_clips=test_clips,
                                                  frames_per_clip=frames_per_clip, seed=seed))
    report(result, json_path, quiet, _show)


@app.command("info")
def info(
    spec: Annotated[str, typer.Argument(help="Data spec: footage (an occ data record folder, a video file, 'videos/*.mp4', a folder of "
                                             "videos or image folders), a UCSD-layout folder, or 'walkway[:key=value,...]' "
                                             "(docs/data.md).")],
    split: SplitOption = "70/10/20",
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Summarize data: clips, frames, anomalous frames, pixel masks; footage by the minutes of each part of its split."""
    from occ.evaluation.datasets.footage import Split
    from occ.evaluation.datasets.spec import describe_data

    with one_line_errors():
        result = describe_data(spec, Split.parse(split))
    report(result, json_path, quiet, _show)


@app.command("record")
def record(
    source: Annotated[str, typer.Argument(help="What to record, any source occ run reads: a video file or image folder, rtsp:// or "
                                               "http:// URL, /dev/videoN, csi://N, or a GStreamer pipeline ending in appsink.")],
    out: Annotated[Path, typer.Option(help="New or empty folder for the clips (clip-NNNN.avi, MJPG) and recording.json; a folder "
                                           "with anything in it is refused (nothing is overwritten or appended to).")],
    minutes: Annotated[float, typer.Option(min=0.001, help="Minutes to record: of the file's own time, or of wall-clock time live. "
                                                            "A file shorter than this is recorded whole.")],
    clip_seconds: Annotated[float, typer.Option(min=1.0, help="Length of each clip file, seconds of footage.")] = 60.0,
    camera: Annotated[Optional[str], typer.Option(help="Camera name for recording.json. Default: the source (a URL without "
                                                       "its user name and password, a file's name).")] = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Record normal footage from a camera or file into fixed-length clips and a manifest (camera, start time, fps, size, clips)."""
    from occ.evaluation.datasets.footage import record as record_footage

    with one_line_errors(), progress_bar(f"recording {source}", total=int(round(minutes * 60)), disable=quiet) as advance:
        done = 0

        def seconds(elapsed: float) -> None:
            nonlocal done
            if int(elapsed) > done:
                advance(int(elapsed) - done)
                done = int(elapsed)

        result = record_footage(source, out, minutes, clip_seconds, camera, progress=seconds)

    def show(manifest: dict) -> None:
        table(f"{out}: {manifest['seconds']:g} s of {manifest['camera']} from {manifest['start_time']}, {manifest['fps']:g} fps, "
              f"{manifest['width']}x{manifest['height']}, {manifest['dropped_frames']} frames dropped",
              [{"clip": c["file"], "start (s)": c["start_seconds"], "frames": c["frames"]} for c in manifest["clips"]])

    report(result, json_path, quiet, show)
