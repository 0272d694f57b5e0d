"""``occ-bench``: latency by stage, run comparison and export validation across backends."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(name="occ-bench", help="Benchmark and validate exported occ models.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        _fail(f"{what} must be comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        _fail(f"{what} must be positive integers, got {text!r}")
    return values


@app.command("latency")
def latency_command(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx); PyTorch baselines use the checkpoint beside it.")],
    backend: Annotated[Optional[str], typer.Option(help="Comma-separated backends: ort-cpu, ort-cpu-fp16, ort-cuda, ort-cuda-fp16 (numpy preprocessing), gpu-pipeline, gpu-pipeline-fp16 (CUDA preprocessing + ORT CUDA on device buffers, CUDA graph: what occ run --backend ort-cuda runs), tensorrt, torch-fp32, torch-fp16-cuda; default: every one present.")] = None,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes (frames per inference).")] = "1,8,32",
    duration: Annotated[float, typer.Option(help="Seconds of recorded iterations per backend and batch.")] = 3.0,
    warmup: Annotated[float, typer.Option(help="Seconds of unrecorded warm-up per backend and batch.")] = 1.0,
    frame_size: Annotated[str, typer.Option(help="Raw camera frame size HxW fed to preprocessing, pixels.")] = "240x360",
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the JSON result here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG plot of latency and throughput here.")] = None,
    json_only: Annotated[bool, typer.Option("--json-only", help="Print only the JSON result (for scripts).")] = False,
) -> None:
    """Latency (min/mean/p50/p90/p99/max) and throughput per backend and batch, split by stage."""
    from rich.progress import Progress

    from occ.runtime.backends import BackendError
    from occ.runtime.manifest import ManifestError, write_atomic

    from .latency import run_latency

    batches = _ints(batch, "--batch")
    try:
        height, width = (int(v) for v in frame_size.lower().split("x"))
    except ValueError:
        _fail(f"--frame-size must look like 240x360, got {frame_size!r}")
    backends = [b.strip() for b in backend.split(",")] if backend else None
    try:
        with Progress(console=err_console, transient=True, disable=json_only) as progress:
            task = progress.add_task("benchmark", total=None)
            result = run_latency(str(model), backends, batches, warmup, duration, (height, width),
                                 progress=lambda text: progress.update(task, description=text))
    except (BackendError, ManifestError) as exc:
        _fail(str(exc))
    if json_path:
        write_atomic(json_path, json.dumps(result, indent=2).encode())
    if plot:
        from .plot import plot_latency

        plot_latency(result, plot)
    if json_only:
        print(json.dumps(result, indent=2))
        return
    _print_latency(result)


def _fmt(stats: dict | None) -> str:
    return "n/a" if stats is None else f"{stats['p50']:.3f}"


def _print_latency(result: dict) -> None:
    device = result["device"]
    gpu = ", ".join(g.get("name", "?") for g in device["gpus"]) or "no GPU"
    table = Table(title=f"{result['model']} ({result.get('method', '?')}), frames {result['frame_size'][0]}x{result['frame_size'][1]} "
                        f"on {device['cpu']['model']} ({device['cpu']['usable_cores']} cores), {gpu}")
    for column in ("backend", "batch", "pre p50", "infer p50", "post p50", "e2e p50", "e2e p90", "e2e p99",
                   "model-only p50", "frames/s", "patches/s"):
        table.add_column(column, justify="right")
    for run in result["runs"]:
        e2e = run["end_to_end_ms"]
        patches = run["throughput"]["patches_per_s"]
        table.add_row(run["backend"], str(run["batch"]), _fmt(run["stages_ms"]["preprocess"]), _fmt(run["stages_ms"]["inference"]),
                      _fmt(run["stages_ms"]["postprocess"]), f"{e2e['p50']:.3f}", f"{e2e['p90']:.3f}", f"{e2e['p99']:.3f}",
                      f"{run['model_only_ms']['p50']:.3f}", f"{run['throughput']['frames_per_s']:.1f}",
                      "" if patches is None else f"{patches:.0f}")
    console.print(table)
    console.print("times in ms; host↔device stages are n/a on CPU backends", highlight=False)
    for skipped in result["skipped"]:
        console.print(f"skipped {skipped['backend']}: {skipped['reason']}", highlight=False)
    for warning in device["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


@app.command("compare")
def compare_command(
    baseline: Annotated[Path, typer.Argument(help="occ-bench latency JSON taken as 1.0.")],
    candidate: Annotated[Path, typer.Argument(help="occ-bench latency JSON compared against it.")],
    json_only: Annotated[bool, typer.Option("--json-only", help="Print only JSON.")] = False,
) -> None:
    """Ratios candidate / baseline of p50, p99 and throughput for every shared backend and batch."""
    from .latency import SCHEMA, compare_runs

    runs = []
    for path in (baseline, candidate):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            _fail(f"{path}: not a readable JSON file ({exc})")
        if data.get("schema") != SCHEMA:
            _fail(f"{path}: not an {SCHEMA} result (schema {data.get('schema')!r})")
        runs.append(data)
    try:
        rows = compare_runs(*runs)
    except ValueError as exc:
        _fail(str(exc))
    if json_only:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{candidate} / {baseline}")
    for column in ("backend", "batch", "p50 ratio", "p99 ratio", "throughput ratio"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["backend"], str(row["batch"]), f"{row['p50_ratio']:.3f}", f"{row['p99_ratio']:.3f}", f"{row['throughput_ratio']:.3f}")
    console.print(table)


@app.command("validate")
def validate_command(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx).")],
    data: Annotated[str, typer.Option(help="Labelled data: a UCSD-layout folder or 'walkway[:opts]'.")],
    backend: Annotated[Optional[str], typer.Option(help="Comma-separated backends; default: every one present.")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the JSON result here.")] = None,
    json_only: Annotated[bool, typer.Option("--json-only", help="Print only the JSON result.")] = False,
) -> None:
    """Evaluate on every backend, compare with ONNX Runtime CPU FP32; exit 1 when any is off budget or failed."""
    from occ.runtime.datasets import DatasetError
    from occ.runtime.manifest import ManifestError, write_atomic

    from .latency import validate

    try:
        result = validate(str(model), data, [b.strip() for b in backend.split(",")] if backend else None)
    except (DatasetError, ManifestError) as exc:
        _fail(str(exc))
    if json_path:
        write_atomic(json_path, json.dumps(result, indent=2).encode())
    if json_only:
        print(json.dumps(result, indent=2))
    else:
        table = Table(title=f"validate {model} on {data}")
        for column in ("backend", "status", "frame AUC", "frame EER", "pixel EER", "decision agreement", "max |score error|", "relative"):
            table.add_column(column)
        for row in result["backends"]:
            if row["status"] == "failed":
                table.add_row(row["backend"], "[red]failed[/red]", row["reason"], "", "", "", "", "")
                continue
            colour = "green" if row["status"] == "works" else "yellow"
            pixel = "n/a" if row["pixel_eer"] is None else f"{row['pixel_eer']:.1%}"
            table.add_row(row["backend"], f"[{colour}]{row['status']}[/{colour}]", f"{row['frame_auc']:.3f}", f"{row['frame_eer']:.1%}",
                          pixel, f"{row['decision_agreement']:.2%}", f"{row['score_max_abs']:.2e}",
                          f"{row['score_rel_error']:.2e}")
        console.print(table)
        for skipped in result["skipped"]:
            console.print(f"skipped {skipped['backend']}: {skipped['reason']}", highlight=False)
    if any(row["status"] != "works" for row in result["backends"]):
        raise typer.Exit(1)
