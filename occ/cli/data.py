"""``occ data``: generate the built-in walkway, summarize a data set."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import JsonOption, OneLineGroup, QuietOption, one_line_errors, progress_bar, report, table

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
    segment_minutes: Annotated[float, typer.Option(min=0.01, help="With --day: minutes of footage per video file.")] = 10.0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate the synthetic walkway (normal pedestrians; cars, fast and wrong-way movers in test), or with --day a day of it."""
    from occ.evaluation.datasets.walkway import WalkwayConfig, write_walkway

    if day is not None:
        from occ.evaluation.datasets.walkway_day import DayConfig, write_day

        config = DayConfig(hours=day, clock_hours=clock_hours, start=start, height=height, width=width, seed=seed,
                           events_per_hour=events_per_hour, view_changes=view_changes, segment_minutes=segment_minutes)
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
    spec: Annotated[str, typer.Argument(help="Data spec: a UCSD-layout folder, or 'walkway[:key=value,...]'.")],
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Summarize a data set: clips, frames, anomalous frames, pixel masks."""
    from occ.evaluation.datasets.spec import describe_data

    with one_line_errors():
        result = describe_data(spec)
    report(result, json_path, quiet, _show)
