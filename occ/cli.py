"""The ``occ`` command: data, train, calibrate, run, eval and the demo.

Commands are thin: each parses options and calls an importable function. Heavy imports (torch)
happen inside the commands that need them, so the runtime commands work without torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from occ import __version__

app = typer.Typer(
    name="occ",
    help="Train, export and run one-class anomaly detectors (ALOCC, AVID) on cameras.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Generate and inspect data sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for bad input)."""
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        console.print(f"occ {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """occ: adversarial one-class anomaly detection, from training to the camera."""


@data_app.command("generate")
def data_generate(
    out: Annotated[Path, typer.Argument(help="Folder to write the UCSD-layout data set to (replaced).")],
    height: Annotated[int, typer.Option(help="Frame height, pixels.")] = 120,
    width: Annotated[int, typer.Option(help="Frame width, pixels.")] = 180,
    train_clips: Annotated[int, typer.Option(help="Normal-only training clips.")] = 6,
    test_clips: Annotated[int, typer.Option(help="Test clips, one anomalous episode each.")] = 5,
    frames: Annotated[int, typer.Option(help="Frames per clip.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Generate the synthetic walkway (normal pedestrians; cars, fast and wrong-way movers in test)."""
    from occ.runtime.datasets import DatasetError, WalkwayConfig, generate_walkway, write_ucsd_layout

    try:
        config = WalkwayConfig(height=height, width=width, train_clips=train_clips, test_clips=test_clips,
                               frames_per_clip=frames, seed=seed)
        data = generate_walkway(config)
        write_ucsd_layout(data, out)
    except DatasetError as exc:
        fail(str(exc))
    summary = _clip_summary(data.train, data.test, kinds=data.kinds)
    _print_summary(f"walkway written to {out}", summary, json_out)


@data_app.command("info")
def data_info(
    spec: Annotated[str, typer.Argument(help="Data spec: a UCSD-layout folder, or 'walkway[:key=value,...]'.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarize a data set: clips, frames, anomalous frames, pixel masks."""
    from occ.runtime.datasets import DatasetError
    from occ.runtime.datasets.spec import load_video_data

    try:
        data = load_video_data(spec)
    except DatasetError as exc:
        fail(str(exc))
    _print_summary(data.description, _clip_summary(data.train, data.test), json_out)


def _clip_summary(train, test, kinds=None) -> list[dict]:
    rows = []
    for split, clips in (("train", train), ("test", test)):
        for i, clip in enumerate(clips):
            rows.append({
                "split": split,
                "clip": clip.name,
                "frames": len(clip),
                "size": f"{clip.frames.shape[1]}x{clip.frames.shape[2]}",
                "anomalous_frames": int(clip.labels.sum()) if clip.labels is not None else None,
                "pixel_masks": clip.masks is not None,
                "anomaly": (kinds[i] if kinds and split == "test" else ""),
            })
    return rows


def _print_summary(title: str, rows: list[dict], json_out: bool) -> None:
    if json_out:
        print(json.dumps({"title": title, "clips": rows}, indent=2))
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key.replace("_", " "))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)
