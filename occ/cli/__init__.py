"""The ``occ`` command: one typer app. Every command parses its options, calls one library
function and prints; heavy imports (torch) happen inside the commands that need them, so the
runtime commands work without torch. ``occ-export`` and ``occ-bench`` are two of its groups,
installed as their own commands too."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from occ import __version__

from . import bench, data, engine, run, train
from . import export as export_command
from .common import console

app = typer.Typer(name="occ", help="Train, export and run one-class anomaly detectors (ALOCC, AVID) on cameras.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


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
app.command("export")(export_command.export)
app.command("run")(run.run)
app.command("eval")(run.evaluate)
app.command("calibrate")(run.calibrate)
app.command("demo")(run.demo)
app.add_typer(bench.app, name="bench")
app.add_typer(engine.app, name="engine")

__all__ = ["app"]
