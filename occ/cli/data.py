"""``occ data``: generate the built-in walkway, summarize a data set."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOption, OneLineGroup, QuietOption, one_line_errors, report, table

app = typer.Typer(help="Generate and inspect data sets.", no_args_is_help=True, cls=OneLineGroup)


def _show(result: dict) -> None:
    table(result["title"], result["clips"])


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Argument(help="Folder to write the UCSD-layout data set to: new, empty, or an earlier occ data set.")],
    height: Annotated[int, typer.Option(min=16, help="Frame height, pixels.")] = 120,
    width: Annotated[int, typer.Option(min=16, help="Frame width, pixels.")] = 180,
    train_clips: Annotated[int, typer.Option(min=1, help="Normal-only training clips.")] = 6,
    test_clips: Annotated[int, typer.Option(min=1, help="Test clips, one anomalous episode each.")] = 5,
    frames_per_clip: Annotated[int, typer.Option("--frames-per-clip", min=10, help="Frames in every clip.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Generate the synthetic walkway (normal pedestrians; cars, fast and wrong-way movers in test)."""
    from occ.evaluation.datasets.walkway import WalkwayConfig, write_walkway

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
