"""``occ engine``: TensorRT engines built outside occ (trtexec, Polygraphy), adopted with a sidecar."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOption, OneLineGroup, QuietOption, console, one_line_errors, report

app = typer.Typer(help="TensorRT engines: adopt one built elsewhere (occ-export --engine builds them).", no_args_is_help=True,
                  cls=OneLineGroup)


@app.command("attach")
def attach(
    engine: Annotated[Path, typer.Argument(help="A TensorRT plan built from an occ ONNX model (trtexec --saveEngine, Polygraphy); "
                                                "its name must end in .engine.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="The occ ONNX model the engine was built from (its manifest goes into the sidecar).")],
    version_compatible: Annotated[bool, typer.Option(help="The engine was built version-compatible (trtexec --versionCompatible): "
                                                          "loading it runs the TensorRT runtime embedded in the plan, so trust the plan. "
                                                          "Default: off.")] = False,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Check an engine's bindings against its ONNX model (names, dtypes, shapes) and write <engine>.json beside it,
    so `occ run --backend tensorrt` runs it. Needs TensorRT and the GPU the engine was built for."""
    from occ.export.engine import EngineBuildError, attach_engine

    with one_line_errors(EngineBuildError):
        sidecar, notes = attach_engine(engine, onnx, version_compatible)

    def show(result: dict) -> None:
        for note in result["notes"]:
            console.print(f"note: {note}", highlight=False, markup=False)
        console.print(f"wrote {result['sidecar']}", highlight=False, markup=False)

    report({"engine": str(engine), "sidecar": str(sidecar), "notes": notes}, json_path, quiet, show)
