"""What every command shares: one-line errors, tables, ``--json PATH`` and ``--quiet``."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

console = Console()
err_console = Console(stderr=True)

# Options every command that reports a result takes, with one meaning everywhere.
JsonOption = Annotated[Optional[Path], typer.Option("--json", metavar="PATH", help="Also write the result as JSON to PATH ('-': standard output).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print no table (errors still go to standard error).")]
SplitOption = Annotated[str, typer.Option("--split", metavar="TRAIN/VAL/CALIB", help="Footage only: percent of its time for training, "
                                                                                      "validation and calibration, in that order of time. "
                                                                                      "Give train and calibrate the same split.")]


# click's UsageError, whichever click typer runs on (typer 0.2x vendors its own): BadParameter's parent
UsageError = typer.BadParameter.__mro__[1]


def _literal_help(command: Any) -> None:
    """Help texts are plain text: typer's rich mode would read ``[train]`` (``pip install
    'occ[train]'``) or ``[thresholds]`` as markup and drop it, so every ``[`` of every help text
    of ``command`` and the commands under it is escaped, once."""
    from typer.core import HAS_RICH

    if not HAS_RICH or getattr(command, "_occ_literal_help", False):
        return
    from rich.markup import escape

    command._occ_literal_help = True
    for attribute in ("help", "short_help", "epilog"):
        if getattr(command, attribute, None):
            setattr(command, attribute, escape(getattr(command, attribute)))
    for param in getattr(command, "params", []):
        if getattr(param, "help", None):
            param.help = escape(param.help)
    for sub in getattr(command, "commands", {}).values():
        _literal_help(sub)


class _OneLineUsageErrors:
    """A usage error (an unknown option, a value out of range) is one line, like every other bad
    input, instead of click's usage box; exit code 2 as click's. Help texts are shown as written
    (:func:`_literal_help`)."""

    def main(self, args: Optional[list[str]] = None, *rest: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        _literal_help(self)
        try:
            result = super().main(args, *rest, standalone_mode=False, **kwargs)  # type: ignore[misc]
        except UsageError as exc:
            message = exc.format_message().strip().splitlines()[0] if exc.format_message().strip() else str(exc)
            hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            if not standalone_mode:
                raise
            from rich.markup import escape

            err_console.print(f"[red]error:[/red] {escape(message + hint)}", highlight=False, soft_wrap=True, markup=True)
            raise SystemExit(2) from None
        except typer.Abort:
            if not standalone_mode:
                raise
            err_console.print("[red]error:[/red] aborted", highlight=False)
            raise SystemExit(1) from None
        if standalone_mode:
            raise SystemExit(result if isinstance(result, int) else 0)
        return result


class OneLineGroup(_OneLineUsageErrors, TyperGroup):
    pass


class OneLineCommand(_OneLineUsageErrors, TyperCommand):
    pass


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for bad input)."""
    from rich.markup import escape

    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True, markup=True)
    raise typer.Exit(code)


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types that mean bad input or an unusable environment: one line, exit 2."""
    from occ.evaluation.datasets.common import DatasetError
    from occ.evaluation.metrics import MetricError
    from occ.evaluation.plots import PlotsUnavailable
    from occ.runtime.backends import BackendError
    from occ.runtime.cuda.driver import CudaError, GpuUnavailable
    from occ.runtime.manifest import ManifestError
    from occ.runtime.preprocess.reference import FrameError
    from occ.runtime.sources import SourceError

    return (BackendError, CudaError, DatasetError, FrameError, GpuUnavailable, ManifestError, MetricError, PlotsUnavailable, SourceError, ValueError,
            OSError)


@contextlib.contextmanager
def one_line_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn the user errors (and ``extra``) raised inside into one line and exit code 2."""
    try:
        yield
    except typer.Exit:
        raise
    except (*user_errors(), *extra) as exc:
        fail(_one_line(exc))


@contextlib.contextmanager
def export_failures() -> Iterator[None]:
    """A failed export verification: its report, then one line, exit code 1 (the input was fine; the
    graph disagreed with PyTorch, and nothing was written)."""
    from occ.export.verify import ExportError

    try:
        yield
    except ExportError as exc:
        for line in exc.report:
            err_console.print(line, highlight=False, markup=False)
        fail(_one_line(exc), code=1)


def check_outputs(outputs: dict[str, Optional[Path]], inputs: dict[str, object]) -> None:
    """Refuse, before any work, an output that would overwrite one of the command's inputs."""
    from occ.runtime.files import same_file

    for option, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        for what, source in inputs.items():
            if source is not None and str(source) and same_file(path, str(source)):
                fail(f"{option} {path} is the {what} itself; choose another path")


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def report(result: Any, json_path: Optional[Path], quiet: bool, show: Callable[[Any], None]) -> None:
    """Write ``result`` to ``--json PATH`` (atomically; '-' prints it) and show it unless ``--quiet``."""
    if json_path is not None:
        text = json.dumps(result, indent=2, default=_json_default)
        if str(json_path) == "-":
            print(text)
        else:
            from occ.runtime.files import write_atomic

            write_atomic(json_path, text.encode())
    if not quiet and not (json_path is not None and str(json_path) == "-"):
        show(result)


def _json_default(value: Any) -> Any:
    import numpy as np

    if callable(getattr(value, "to_json", None)):  # a typed result (an evaluation report) gives its own JSON form
        return value.to_json()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def table(title: str, rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """Print ``rows`` (dicts) as one table; titles and cells are plain text (``occ[triton]`` stays)."""
    from rich.markup import escape

    if not rows:
        console.print(f"{title}: nothing to show", highlight=False, markup=False)
        return
    view = Table(title=escape(title))
    columns = columns or list(rows[0])
    for column in columns:
        view.add_column(escape(column.replace("_", " ")))
    for row in rows:
        view.add_row(*("" if row.get(c) is None else escape(str(row.get(c))) for c in columns))
    console.print(view)


def comma_list(text: str) -> list[str]:
    """``'a, b,'`` → ``['a', 'b']``."""
    return [item.strip() for item in text.split(",") if item.strip()]


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, disable: bool = False) -> Iterator[Callable[..., None]]:
    """A progress bar on standard error when it is a terminal (logs stay clean); yields
    ``advance(steps=1, description=None)``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True, disable=disable or not err_console.is_terminal) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int = 1, description: str | None = None) -> None:
            bar.update(task, advance=steps, **({"description": description} if description else {}))

        yield advance
