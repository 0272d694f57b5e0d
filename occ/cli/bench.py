"""``occ-bench`` (also ``occ bench``): latency, backend validation and accuracy benchmarks."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from occ.train.openmp import let_idle_workers_spin_briefly

from .common import JsonOption, OneLineGroup, QuietOption, check_outputs, comma_list, console, err_console, fail, one_line_errors, progress_bar, report, table

app = typer.Typer(name="occ-bench", help="Benchmark exported occ models: latency, agreement across backends, accuracy.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineGroup)

VARIANT_HELP = ("Backends, comma-separated, from occ's registry (occ run --help lists them) and torch (the PyTorch baseline on "
                "the checkpoint beside the model). Default: every one that runs here.")
Backends = Annotated[Optional[str], typer.Option("--backend", help=VARIANT_HELP)]
Precisions = Annotated[str, typer.Option("--precision", help="Precisions, comma-separated: fp32, fp16, int8 (the .fp16.onnx / .int8.onnx beside the model; "
                                                                      "for tensorrt the .engine built in it).")]
Preprocessing = Annotated[str, typer.Option("--preprocess", help="Where preprocessing runs, comma-separated: cpu, gpu.")]
Workdir = Annotated[Path, typer.Option("--out", help="Folder for the checkpoints and models the benchmark trains.")]
Seed = Annotated[int, typer.Option(help="Seed of the data and of training.")]


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in comma_list(text)]
    except ValueError:
        fail(f"{what} must be comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        fail(f"{what} must be positive integers, got {text!r}")
    return values


def _variants(backend: Optional[str], precision: str, preprocess: str):
    """The variants asked for (None: every one that runs here); each setting checked up front."""
    from occ.benchmarks.latency import PRECISIONS, PREPROCESSING, variants
    from occ.runtime.backends import REGISTRY

    precisions, preprocessing = comma_list(precision), comma_list(preprocess)
    bad = [p for p in precisions if p not in PRECISIONS] + [p for p in preprocessing if p not in PREPROCESSING]
    if bad or not precisions or not preprocessing:
        fail(f"--precision takes {', '.join(PRECISIONS)} and --preprocess {', '.join(PREPROCESSING)}; got {precision!r}, {preprocess!r}")
    if backend is None:
        return None
    names = comma_list(backend)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown or not names:
        fail(f"unknown backend(s) {', '.join(unknown) or backend!r}; available: {', '.join(REGISTRY)}")
    return variants(names, precisions, preprocessing)


def _fmt(stats: dict | None) -> str:
    return "n/a" if stats is None else f"{stats['p50']:.3f}"


def _show_latency(result: dict) -> None:
    device = result["device"]
    gpu = ", ".join(g.get("name", "?") for g in device["gpus"]) or "no GPU"
    rows = [{"variant": run["variant"], "batch": run["batch"], "pre p50": _fmt(run["stages_ms"]["preprocess"]),
             "infer p50": _fmt(run["stages_ms"]["inference"]), "post p50": _fmt(run["stages_ms"]["postprocess"]),
             "e2e p50": f"{run['end_to_end_ms']['p50']:.3f}", "e2e p99": f"{run['end_to_end_ms']['p99']:.3f}",
             "frames/s": f"{run['throughput']['frames_per_s']:.1f}",
             "patches/s": "" if run["throughput"]["patches_per_s"] is None else f"{run['throughput']['patches_per_s']:.0f}",
             "guard+drift": f"{run['watch_share']['total']:.1%}" if "watch_share" in run else ""}
            for run in result["runs"]]
    table(f"{result['model']} ({result['method']}), frames {result['frame_size'][0]}x{result['frame_size'][1]} on "
          f"{device['cpu']['model']} ({device['cpu']['usable_cores']} cores), {gpu}; times in ms", rows)
    for skipped in result["skipped"]:
        console.print(f"skipped {skipped['variant']}: {skipped['reason']}", highlight=False)
    for warning in device["warnings"] + result.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


@app.command("latency")
def latency(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx); fp16, engine and checkpoint are looked up beside it.")],
    backend: Backends = None,
    precision: Precisions = "fp32,fp16",
    preprocess: Preprocessing = "cpu,gpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated (frames per inference).")] = "1,8,32",
    duration: Annotated[float, typer.Option(min=0.01, help="Seconds of recorded iterations per variant and batch.")] = 3.0,
    warmup: Annotated[float, typer.Option(min=0.0, help="Seconds of unrecorded warm-up per variant and batch.")] = 1.0,
    frame_size: Annotated[str, typer.Option(help="Raw camera frame size HxW fed to preprocessing, pixels.")] = "240x360",
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG plot of latency and throughput here.")] = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Latency (min/mean/p50/p90/p99/max) and throughput per variant and batch, split by stage."""
    from occ.benchmarks.latency import run_latency

    batches = _ints(batch, "--batch")
    check_outputs({"--json": json_path, "--plot": plot}, {"model": model})
    height, width = _frame_size(frame_size)
    chosen = _variants(backend, precision, preprocess)
    if chosen is None and (precision, preprocess) != ("fp32,fp16", "cpu,gpu"):
        fail("--precision and --preprocess narrow an explicit --backend list")
    with one_line_errors(), progress_bar("benchmark", disable=quiet) as advance:
        result = run_latency(str(model), chosen, batches, warmup, duration, (height, width),
                             progress=lambda text: advance(0, description=text))
    if chosen and not result["runs"]:
        fail("; ".join(f"{s['variant']}: {s['reason']}" for s in result["skipped"]) or "nothing ran")
    if plot:
        from occ.benchmarks.plot import plot_latency

        plot_latency(result, plot)
    report(result, json_path, quiet, _show_latency)


def _frame_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
        if min(height, width) < 2:
            raise ValueError
    except ValueError:
        fail(f"--frame-size must look like 240x360, got {text!r}")
    return height, width


@app.command("triton")
def triton(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx); served from the repository occ-export --triton writes.")],
    cameras: Annotated[str, typer.Option(help="Numbers of concurrent cameras, comma-separated; each is one stream scored frame by "
                                              "frame, as occ run does.")] = "1,4,16",
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of recorded frames per backend and camera count.")] = 10.0,
    warmup: Annotated[float, typer.Option(min=0.0, help="Seconds of unrecorded frames before each recording.")] = 2.0,
    frame_size: Annotated[str, typer.Option(help="Raw camera frame size HxW fed to preprocessing, pixels.")] = "240x360",
    threads: Annotated[int, typer.Option(min=0, help="ONNX Runtime intra-op threads of every local InferenceSession and of the server's "
                                                     "(0: ONNX Runtime's default, as occ run uses).")] = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Frames/s through a real Triton server (PyTriton's tritonserver started here, Python backend running the ONNX with
    ONNX Runtime CPU) with N cameras at once, next to the local runtime (ort-cpu) in the same run."""
    from occ.benchmarks.triton_server import TritonServerError, server_problem
    from occ.benchmarks.triton_throughput import markdown, run_triton_throughput

    counts = _ints(cameras, "--cameras")
    size = _frame_size(frame_size)
    if not model.is_file():
        fail(f"{model}: file not found")
    problem = server_problem()
    if problem:
        fail(problem)
    with one_line_errors(TritonServerError, RuntimeError), progress_bar("Triton throughput", disable=quiet) as advance:
        result = run_triton_throughput(str(model), counts, duration, warmup, size, threads or None,
                                       progress=lambda text: advance(0, description=text))

    def show(result: dict) -> None:
        server, cpu = result["server"], result["device"]["cpu"]
        ort_threads = f"{threads} ONNX Runtime thread(s)" if threads else "ONNX Runtime's default threads"
        console.print(f"{result['model']} ({result['method']}), frames {size[0]}x{size[1]}, {duration:g} s per row, {ort_threads}, on "
                      f"{cpu['model']} ({cpu['usable_cores']} cores); tritonserver {server['version']} (PyTriton {server['pytriton']}, "
                      f"{server['backend']}, {server['instances']} instance {server['instance_kind']}, max batch {server['max_batch_size']}, "
                      f"queue delay {server['max_queue_delay_us']} µs, tensors in {server['tensors']})",
                      highlight=False, markup=False)
        _print_markdown(markdown(result))

    report(result, json_path, quiet, show)


@app.command("compare")
def compare(
    baseline: Annotated[Path, typer.Argument(help="occ-bench latency JSON taken as 1.0.")],
    candidate: Annotated[Path, typer.Argument(help="occ-bench latency JSON compared against it.")],
    force: Annotated[bool, typer.Option(help="Compare runs of different models or frame sizes too.")] = False,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Ratios candidate / baseline of p50, p99 and throughput for every shared variant and batch, for
    two runs of the same model at the same frame size (--force for any two)."""
    from occ.benchmarks.latency import SCHEMA, compare_runs

    runs = []
    for path in (baseline, candidate):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"{path}: not a readable JSON file ({exc})")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            fail(f"{path}: not an {SCHEMA} result (schema {data.get('schema') if isinstance(data, dict) else None!r})")
        runs.append(data)
    with one_line_errors():
        rows = compare_runs(*runs, force=force)
    report(rows, json_path, quiet, lambda rows: table(f"{candidate} / {baseline}", [
        {"variant": r["variant"], "batch": r["batch"], "p50 ratio": f"{r['p50_ratio']:.3f}", "p99 ratio": f"{r['p99_ratio']:.3f}",
         "throughput ratio": f"{r['throughput_ratio']:.3f}"} for r in rows]))


@app.command("validate")
def validate(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx).")],
    data: Annotated[str, typer.Option(help="Labelled data: a UCSD-layout folder or 'walkway[:opts]'.")],
    backend: Backends = None,
    precision: Precisions = "fp32",
    preprocess: Preprocessing = "cpu",
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evaluate every variant, compare each with ONNX Runtime CPU FP32 and time each end to end; exit 1 when any is off budget
    or failed."""
    from occ.benchmarks.latency import validate as run_validation

    chosen = _variants(backend, precision, preprocess)
    if chosen is None and (precision, preprocess) != ("fp32", "cpu"):
        fail("--precision and --preprocess narrow an explicit --backend list")
    check_outputs({"--json": json_path}, {"model": model, "data": data})
    with one_line_errors(), progress_bar("validating", disable=quiet):
        result = run_validation(str(model), data, chosen)

    def show(result: dict) -> None:
        rows = []
        for row in result["variants"]:
            if row["status"] == "failed":
                rows.append({"variant": row["variant"], "status": "[red]failed[/red]", "frame AUC": row["reason"]})
                continue
            colour = "green" if row["status"] == "works" else "yellow"
            rows.append({"variant": row["variant"], "status": f"[{colour}]{row['status']}[/{colour}]",
                         "frame AUC": f"{row['frame_auc']:.3f}", "frame EER": f"{row['frame_eer']:.1%}",
                         "pixel EER": "n/a" if row["pixel_eer"] is None else f"{row['pixel_eer']:.1%}",
                         "decision agreement": f"{row['decision_agreement']:.2%}", "max |score error|": f"{row['score_max_abs']:.2e}",
                         "relative": f"{row['score_rel_error']:.2e}",
                         "frames/s": f"{row['frames_per_s']:.1f}" + ("" if row["speed_vs_reference"] is None
                                                                     else f" ({row['speed_vs_reference']:.2f}×)")})
        table(f"validate {model} on {data}", rows)
        for skipped in result["skipped"]:
            console.print(f"skipped {skipped['variant']}: {skipped['reason']}", highlight=False)

    report(result, json_path, quiet, show)
    if any(row["status"] != "works" for row in result["variants"]):
        raise typer.Exit(1)


def _print_markdown(text: str) -> None:
    console.print(text, highlight=False, markup=False)


@app.command("walkway")
def walkway(
    method: Annotated[str, typer.Option(help="alocc or avid.")],
    out: Workdir = Path("runs/bench_walkway"),
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs. Default: the video recipe's.")] = None,
    model: Annotated[Optional[str], typer.Option(help="Evaluate this exported model (e.g. the demo's) instead of training one.")] = None,
    seed: Seed = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """One method on the synthetic walkway (the demo's data): its test clips, and busier normal clips of the
    same walkway (4, 8, 12, 16 walkers in view) at the stored threshold; for AVID, each part of the intersection alone too."""
    from occ.benchmarks.walkway import markdown, run_walkway

    with one_line_errors():
        result = run_walkway(method, out, seed, epochs, console=err_console, model=model)
    report(result, json_path, quiet, lambda r: _print_markdown(markdown(r)))


@app.command("day")
def day(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx); a calibrated copy is written under --out, the model is left as it is.")],
    calibration: Annotated[Path, typer.Option(help="Calibration day (occ data generate --day): thresholds from its stretches with no event.")],
    test: Annotated[Path, typer.Option(help="Test day (occ data generate --day, another seed): alarms and events are counted on it.")],
    false_alarm_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the calibration day's normal frames allowed over the "
                                                                           "threshold.")] = 0.01,
    alarms_per_day: Annotated[Optional[float], typer.Option(min=0, help="Calibrate to an alarm budget instead (occ calibrate "
                                                                        "--alarms-per-day: thresholds and episode rule). Default: off.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the calibrated copy of the model.")] = Path("runs/bench_day"),
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Alarms per hour of normal footage for each hour of a walkway day (95 % intervals), in total, and the share of
    events flagged within 1 s, through the runtime detector and the service's episode rule."""
    from occ.benchmarks.day import markdown, run_day

    check_outputs({"--json": json_path}, {"model": model})
    with one_line_errors(), progress_bar("day", disable=quiet) as advance:
        result = run_day(model, calibration, test, out, false_alarm_rate, progress=advance, alarms_per_day=alarms_per_day)
    report(result, json_path, quiet, lambda r: _print_markdown(markdown(r)))


@app.command("guard")
def guard(
    hours: Annotated[float, typer.Option(min=0.01, help="Length of the walkway day, hours of footage at 10 frames/s (its clock spans 24 h).")] = 1.0,
    height: Annotated[int, typer.Option(min=16, help="Frame height, pixels.")] = 72,
    width: Annotated[int, typer.Option(min=16, help="Frame width, pixels.")] = 108,
    seed: Seed = 202,
    view_changes: Annotated[bool, typer.Option(help="Inject the view changes (shake, cover, lighting jump, creep, bump); without them "
                                                    "every minute after the first is normal, both rush hours included. Default: on.")] = True,
    view_change: Annotated[Optional[list[str]], typer.Option(
        help="With --view-changes: inject only this one (repeat for more): shake, cover, light_jump, creep, bump, or light_ramp "
             "(a slow gain ramp to 1.5 that stays, the drift watch's to catch; not in the default set).")] = None,
    ped2: Annotated[Optional[Path], typer.Option(
        help="Measure on real footage instead: a UCSD Ped2 folder (Train/TrainNNN). The reference is learnt from every other "
             "training clip; the others are watched untouched and with each view change injected 6 s in; the test clips untouched.")] = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """The scene guard on a walkway day with its view changes injected (generated in memory): the delay to report each
    change, and the share of normal minutes (rush hours apart) where it fires. With --ped2, on UCSD Ped2's clips."""
    from occ.benchmarks.scene_guard import markdown, markdown_ped2, run_guard, run_guard_ped2
    from occ.evaluation.datasets.walkway_day import VIEW_CHANGES, DayConfig

    check_outputs({"--json": json_path}, {"--ped2": ped2})
    if ped2 is not None:
        with one_line_errors(), progress_bar("guard on Ped2", disable=quiet) as advance:
            result = run_guard_ped2(str(ped2), progress=advance)
        report(result, json_path, quiet, lambda r: _print_markdown(markdown_ped2(r)))
        return
    config = DayConfig(hours=hours, height=height, width=width, seed=seed, view_changes=view_changes,
                       view_change_kinds=tuple(view_change) if view_change else VIEW_CHANGES)
    with one_line_errors(), progress_bar("guard", total=config.frames, disable=quiet) as advance:
        config.validate()
        result = run_guard(config, progress=advance)
    report(result, json_path, quiet, lambda r: _print_markdown(markdown(r)))


@app.command("mnist")
def mnist(
    mnist_folder: Annotated[Path, typer.Option("--mnist", help="Folder with the MNIST IDX files.")],
    digits: Annotated[str, typer.Option(help="Target digits, comma-separated.")] = "0,1,2,3,4,5,6,7,8,9",
    out: Workdir = Path("runs/bench_mnist"),
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Epochs per digit. Default: the images recipe's (15).")] = None,
    reuse: Annotated[bool, typer.Option(help="Evaluate mnist_<digit>.pt already in --out instead of training.")] = False,
    seed: Seed = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """ALOCC on MNIST by the paper's one-class protocol (the images recipe), every digit."""
    let_idle_workers_spin_briefly()  # before torch is imported: the same bits, faster (occ.train.openmp)
    from occ.benchmarks.mnist import markdown, run_mnist

    chosen = [int(d) for d in comma_list(digits) if d.isdigit() and 0 <= int(d) <= 9]
    if not chosen or len(chosen) != len(comma_list(digits)):
        fail(f"--digits must be digits 0-9, comma-separated, got {digits!r}")
    with one_line_errors(), progress_bar("MNIST", total=len(chosen), disable=quiet) as advance:
        result = run_mnist(str(mnist_folder), chosen, out, seed, epochs, reuse, progress=advance)
    report(result, json_path, quiet, lambda r: _print_markdown(markdown(r)))


@app.command("irmnist")
def irmnist(
    mnist_folder: Annotated[Path, typer.Option("--mnist", help="Folder with the MNIST IDX files.")],
    out: Workdir = Path("runs/bench_irmnist"),
    recipe: Annotated[str, typer.Option(help="images (the deployed recipe) or paper (D as published).")] = "images",
    grids: Annotated[int, typer.Option(min=2, help="Training grids (paper: 5000).")] = 5000,
    test_grids: Annotated[int, typer.Option(min=2, help="Test grids (paper: 1000).")] = 1000,
    digit: Annotated[int, typer.Option(min=0, max=9, help="The irregular digit (paper: 3).")] = 3,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs. Default: the recipe's.")] = None,
    region_memory: Annotated[Optional[int], typer.Option(min=1, help="Images recipe: the region memory's bank size. Default: 60000.")] = None,
    model: Annotated[Optional[Path], typer.Option(help="Evaluate this checkpoint (trained on the same --seed, --grids and --digit) instead of training.")] = None,
    seed: Seed = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """AVID on the paper's IR-MNIST digit grids: detection and localization of the deployed intersection and of each part."""
    let_idle_workers_spin_briefly()  # before torch is imported: the same bits, faster (occ.train.openmp)
    from occ.benchmarks.irmnist import markdown, run_irmnist

    with one_line_errors():
        result = run_irmnist(str(mnist_folder), out, seed, grids, test_grids, digit, recipe, epochs, region_memory, model,
                             console=err_console)
    report(result, json_path, quiet, lambda r: _print_markdown(markdown(r)))


@app.command("ped2")
def ped2(
    data: Annotated[str, typer.Option(help="UCSD Ped2 folder (official layout).")],
    method: Annotated[str, typer.Option(help="alocc or avid.")] = "alocc",
    size: Annotated[str, typer.Option(help="cpu (reduced sizes, minutes on 2 cores) or gpu (the full 240×360 frames).")] = "cpu",
    out: Workdir = Path("runs/ped2"),
    model: Annotated[Optional[list[str]], typer.Option(
        help="Evaluate this exported model instead of training one; repeat it for one model per seed.")] = None,
    folds: Annotated[bool, typer.Option(
        help="Leave-clips-out table: choose on half the test clips, measure on the others, over every split (Ped2's six: 20), mean and worst fold.")] = False,
    holdout_fold: Annotated[Optional[int], typer.Option(
        help="Train without this fold of the normal training clips (clip i in name order is in fold i mod --holdout-folds) and count "
             "alarms per hour on them and on the test clips' normal frames, raw and as the service's episodes. Default: none, "
             "train on every clip.")] = None,
    holdout_folds: Annotated[int, typer.Option(min=2, help="Folds the training clips are split into for --holdout-fold.")] = 4,
    epochs: Annotated[Optional[int], typer.Option(
        min=1, help="Training epochs. Default: the size's (cpu: ALOCC 5, AVID 6; gpu: 15, 20).")] = None,
    seed: Seed = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Real video: train on Ped2's normal clips, export, evaluate every scoring variant on its test clips
    (with --holdout-fold: count alarms on training clips held out of training)."""
    let_idle_workers_spin_briefly()  # before torch is imported: the same bits, faster (occ.train.openmp)
    from occ.benchmarks.ped2 import holdout_markdown, markdown, models_result, run_ped2, run_ped2_holdout

    if model and epochs is not None:
        fail("--epochs is for the model it trains: it takes no --model")
    if holdout_fold is not None:
        if folds or (model and len(model) > 1):
            fail("--holdout-fold takes one --model and no --folds")
        with one_line_errors():
            result = run_ped2_holdout(data, method, out, holdout_fold, holdout_folds, size, seed, model=model[0] if model else None,
                                      epochs=epochs)
        report(result, json_path, quiet, lambda r: _print_markdown(holdout_markdown(r)))
        return
    with one_line_errors():
        results = [run_ped2(data, method, out, size, seed, model=m, folds=folds, epochs=epochs) for m in (model or [None])]
    payload = results[0] if len(results) == 1 else models_result(results)
    report(payload, json_path, quiet, lambda r: _print_markdown(markdown(r)))


@app.command("ped2-holdout-summary")
def ped2_holdout_summary(
    results: Annotated[list[Path], typer.Argument(help="JSONs of occ-bench ped2 --holdout-fold, one per fold, of one method and seed.")],
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Pool the leave-training-clips-out folds: alarms and normal minutes summed, alarms per hour with its
    exact 95 % Poisson interval (raw runs and episodes), events caught, per fold and over all."""
    from occ.benchmarks.ped2 import holdout_markdown, holdout_summary

    folds = []
    for path in results:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            fail(f"{path}: not a readable JSON file ({exc})")
        if not isinstance(data, dict) or "alarms" not in data or "fold" not in data:
            fail(f"{path}: not an occ-bench ped2 --holdout-fold result")
        folds.append(data)
    with one_line_errors():
        summary = holdout_summary(folds)
    report(summary, json_path, quiet, lambda r: _print_markdown(holdout_markdown(r)))


@app.command("soak")
def soak(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx).")],
    frames: Annotated[int, typer.Option(min=100, help="Frames to process before stopping.")] = 20000,
    sample_every: Annotated[int, typer.Option(min=10, help="Processed frames between memory samples.")] = 1000,
    warmup_frames: Annotated[int, typer.Option(min=0, help="Frames before the memory baseline is taken.")] = 1000,
    timeout: Annotated[float, typer.Option(min=1, help="Give up after this many seconds.")] = 3600,
    paced: Annotated[bool, typer.Option(
        help="Stream at the clip's 10 frames/s like a camera (--no-paced: as fast as ffmpeg sends, so the model falls behind).")] = True,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Stream a live ffmpeg source through `occ run` and watch memory and file descriptors."""
    from occ.benchmarks.soak import run_soak

    with one_line_errors(RuntimeError), progress_bar("soak", total=frames // sample_every + 1, disable=quiet) as advance:
        result = run_soak(model, frames, sample_every, warmup_frames, timeout, progress=advance, paced=paced)
    report(result, json_path, quiet, lambda r: table("soak", [{k: v for k, v in r.items() if k != "samples"}]))
    if not result["passed"]:
        raise typer.Exit(1)


@app.command("sinks")
def sinks(
    appends: Annotated[int, typer.Option(min=10, help="Events spooled to time one spool append (default 1000).")] = 1000,
    idle: Annotated[int, typer.Option(min=0, help="Silent connections held open to /metrics while it is scraped (default 100).")] = 100,
    outage_s: Annotated[float, typer.Option("--outage-s", min=0, help="Also stream events through both sinks while a real webhook receiver "
                                                                     "is stopped and a real mosquitto broker killed for this many seconds, "
                                                                     "and count what is lost (0: off, the default).")] = 0.0,
    rate: Annotated[float, typer.Option(min=0.1, max=100, help="With --outage-s: events per second (default 10).")] = 10.0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """What a remote event sink costs the frame loop (a spool append, ms) and a /metrics scrape under idle connections (ms);
    with --outage-s, what the sinks lose across an outage of their servers."""
    from occ.benchmarks.sink_servers import broker_problem
    from occ.benchmarks.sinks import run

    check_outputs({"--json": json_path}, {})
    if outage_s > 0 and broker_problem():
        fail(f"--outage-s: {broker_problem()}")
    with one_line_errors(RuntimeError):
        result = run(appends, idle, outage_s, rate)
    report(result, json_path, quiet, _show_sinks)
    if not result["passed"]:
        raise typer.Exit(1)


def _show_sinks(result: dict) -> None:
    table("sinks", [{"what": "spool append", **result["spool_append_ms"]},
                    {"what": "spool append, fsynced", **result["spool_append_fsync_ms"]},
                    *({"what": f"scrape, {k.replace('_', ' ')} connections", **v} for k, v in result["scrape_ms"].items())])
    if "outage" in result:
        outage = result["outage"]
        table(f"a {outage['outage_s']:g} s outage, {outage['rate_hz']:g} events/s",
              [{"sink": name, **{k: v for k, v in row.items() if k not in ("backoff_s", "max_backoff_s")}} for name, row in outage["sinks"].items()])


device_app = typer.Typer(help="The GPU check: kernels, agreement and latency on an NVIDIA GPU, in one JSON.", no_args_is_help=True,
                         cls=OneLineGroup)
app.add_typer(device_app, name="device-check")


@device_app.command("prepare")
def device_prepare(models: Annotated[Path, typer.Option(help="Folder for the check's models.")] = Path("runs/device_models")) -> None:
    """Train and export the check's models (needs torch; runs on a CPU)."""
    from occ.benchmarks.device_check import prepare

    with one_line_errors():
        written = prepare(models)
    table("device-check models", [{"model": name, "path": path} for name, path in written.items()])


@device_app.command("run")
def device_run(
    models: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("runs/device_models"),
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds per latency measurement.")] = 2.0,
    out: Annotated[Path, typer.Option(help="The report as JSON, rewritten after every step (what finished survives a crash).")]
    = Path("device_check.json"),
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Run every GPU check (needs an NVIDIA GPU)."""
    from occ.benchmarks.device_check import run as run_check

    check_outputs({"--json": json_path}, {"--out": out})
    with one_line_errors():
        result = run_check(models, out, duration)
    report(result, json_path, quiet, lambda result: table("device check", [{"check": name, "verdict": str(value)}
                                                                             for name, value in result.get("verdict", {}).items()]))


def main() -> None:
    app()
