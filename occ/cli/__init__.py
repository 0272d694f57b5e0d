"""The ``occ`` command: one typer app. Every command parses its options, calls one library
function and prints; heavy imports (torch) happen inside the commands that need them, so the
runtime commands work without torch. ``occ-export`` and ``occ-bench`` are two of its groups,
installed as their own commands too."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from occ import __version__

from . import bench, data, engine, feedback, inspect_model, run, train
from . import export as export_command
from .common import OneLineCommand, OneLineGroup, console

app = typer.Typer(name="occ", help="Train, export and run one-class anomaly detectors (ALOCC, AVID) on cameras.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineGroup)


def _version(value: bool) -> None:
    if value:
        console.print(f"occ {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                         help="Print the version and exit.")] = None) -> None:
    """occ: adversarial one-class anomaly detection, from training to the camera."""


app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.command("export", cls=OneLineCommand)(export_command.export)
app.command("run", cls=OneLineCommand)(run.run)
app.command("eval", cls=OneLineCommand)(run.evaluate)
app.command("calibrate", cls=OneLineCommand)(run.calibrate)
app.command("demo", cls=OneLineCommand)(run.demo)
app.command("feedback", cls=OneLineCommand)(feedback.feedback)
app.command("inspect", cls=OneLineCommand)(inspect_model.inspect)
app.add_typer(bench.app, name="bench")
app.add_typer(engine.app, name="engine")

__all__ = ["app"]
