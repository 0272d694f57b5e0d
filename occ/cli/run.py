"""``occ run``, ``occ eval``, ``occ calibrate`` and ``occ demo``: the exported model at work."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from occ.runtime.backends import REGISTRY
from occ.runtime.sources import SOURCE_FORMS

from .common import JsonOption, QuietOption, check_outputs, console, err_console, fail, one_line_errors, progress_bar, report, table

BACKEND_HELP = "Inference backend: " + "; ".join(f"{kind.name} ({kind.summary})" for kind in REGISTRY.values()) + "."
PREPROCESS_HELP = ("Where preprocessing runs: cpu (the numpy reference) or gpu (CUDA kernels; only with a backend that runs on "
                   "device buffers: " + ", ".join(k.name for k in REGISTRY.values() if k.device_resident) + ").")
Backend = Annotated[str, typer.Option(help=BACKEND_HELP)]
Preprocess = Annotated[str, typer.Option(help=PREPROCESS_HELP)]
TritonUrl = Annotated[Optional[str], typer.Option(help="Triton / KServe v2 server, HOST:PORT (with --backend triton).", rich_help_panel="Triton")]


def _backend_options(backend: str, triton_url: Optional[str]) -> dict[str, Any]:
    from occ.runtime.backends import backend_kind

    with one_line_errors():
        backend_kind(backend)
    if triton_url and backend != "triton":
        fail("--triton-url goes with --backend triton")
    return {"url": triton_url} if triton_url else {}


def _check_preprocess(preprocess: str) -> None:
    from occ.runtime.detector import PREPROCESS

    if preprocess not in PREPROCESS:
        fail(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")


def run(
    model: Annotated[Optional[str], typer.Argument(help="Exported model (.onnx, or .engine with --backend tensorrt; the model's "
                                                       "name with --backend triton); not needed with --config.")] = None,
    source: Annotated[Optional[str], typer.Option(help=f"Where frames come from: {SOURCE_FORMS}.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Service configuration (TOML): several cameras, log rotation, snapshots; "
                                                       "see docs/deploy/site.example.toml.")] = None,
    camera: Annotated[Optional[str], typer.Option(help="The camera's name in events, logs and metrics. Default: from --source.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Per-frame JSON lines (default: standard output when there is no --events).")] = None,
    events: Annotated[Optional[Path], typer.Option(help="Event JSON lines (episodes), appended.")] = None,
    snapshots: Annotated[Optional[Path], typer.Option(help="Folder for peak-frame snapshots of events (rotated).")] = None,
    overlay: Annotated[Optional[Path], typer.Option(help="Overlay output: a .avi video or a folder of PNGs.")] = None,
    open_after: Annotated[int, typer.Option(min=1, help="Anomalous frames in a row that open an event.")] = 3,
    close_after: Annotated[int, typer.Option(min=1, help="Quiet frames in a row that close an event.")] = 5,
    give_up_after: Annotated[float, typer.Option(min=0, help="Live sources: seconds without a frame before giving up with exit "
                                                            "code 3 (0: never).")] = 0,
    metrics_port: Annotated[int, typer.Option(min=0, max=65535, help="Serve /healthz and /metrics on this TCP port (0: off).")] = 0,
    backend: Backend = "ort-cpu",
    preprocess: Preprocess = "cpu",
    triton_url: TritonUrl = None,
) -> None:
    """Run a model on a source: per-frame JSON lines, events, snapshots, overlays, /metrics; logs are JSON lines.

    Stops on SIGTERM/SIGINT. Exit codes: 0 when every source finished or a stop was requested, 2 for
    bad input, 3 when a live source gave up, 4 when a camera's loop failed."""
    import signal

    from occ.runtime.service import CameraConfig, ConfigError, Service, ServiceConfig

    _check_preprocess(preprocess)
    options = _backend_options(backend, triton_url)
    with one_line_errors(ConfigError):
        if config is not None:
            settings = ServiceConfig.from_toml(config)
        elif model is None or source is None:
            fail("give MODEL and --source, or --config FILE")
        else:
            to_stdout = out is None and events is None
            settings = ServiceConfig(
                model=model, cameras=[CameraConfig(spec=source, name=camera or "", give_up_after=give_up_after or None)],
                backend=backend, preprocess=preprocess, triton_url=options.get("url", ""),
                events_log=str(events) if events else str(Path(tempfile.mkdtemp()) / "events.jsonl"),
                open_after=open_after, close_after=close_after, snapshots=str(snapshots or ""),
                overlay_video=str(overlay or ""), frames_log="/dev/stdout" if to_stdout else str(out or ""),
                metrics_port=metrics_port).check("occ run")
        service = Service(settings)
        signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
        signal.signal(signal.SIGINT, lambda *_: service.request_stop())
        summary = service.run(capture_native_output=True)
    totals = summary.totals()
    server = f", {totals['backend_reconnects']} server reconnects" if totals["backend_reconnects"] else ""
    err_console.print(f"{totals['frames']} frames, {totals['anomalous_frames']} anomalous, {totals['events']} events, "
                      f"{totals['dropped']} dropped, {totals['reconnects']} reconnects{server}, {totals['sink_errors']} failed writes; "
                      + "; ".join(f"{c.camera}: {c.outcome}{' (' + c.error + ')' if c.error else ''}" for c in summary.cameras),
                      highlight=False, markup=False, soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(int(summary.exit_code))


def _show_eval(result: dict) -> None:
    shows = {"frames": _show_frames, "mnist": _show_mnist, "irmnist": _show_irmnist}
    shows[result["protocol"]](result)


def _show_operator(at: dict) -> None:
    from occ.evaluation.protocols import delay_text, false_alarms_text

    rate = (at.get("false_alarms_per_hour") or {}).get("fps")
    table(f"at the stored threshold{f' ({rate:g} frames/s)' if rate else ''}: false alarms are runs of alarmed frames "
          "with no anomalous frame; delay is frames from an event's first frame to its first alarm",
          [{"false alarms / h": false_alarms_text(at.get("false_alarms_per_hour")),
            "delay (frames, median)": delay_text(at["detection_delay"]),
            "delay (frames, mean)": "n/a" if at["detection_delay"]["mean_frames"] is None else f"{at['detection_delay']['mean_frames']:.1f}"}])


def _show_frames(result: dict) -> None:
    rows = [{"variant": name, "micro AUC": m.get("micro_auc") and f"{m['micro_auc']:.3f}",
             "macro AUC": m.get("macro_auc") and f"{m['macro_auc']:.3f}", "EER": m.get("eer") is not None and f"{m['eer']:.1%}" or m.get("error")}
            for name, m in result["frame_level"].items()]
    if "auc" in result.get("pixel_level", {}):
        rows.append({"variant": "pixel level (40 % rule)", "micro AUC": f"{result['pixel_level']['auc']:.3f}",
                     "EER": f"{result['pixel_level']['eer']:.1%}"})
    table(f"{result['model']} on {result['data']}", rows)
    at = result["at_stored_threshold"]
    console.print(f"at the stored threshold: TPR {at['true_positive_rate']:.3f}, FPR {at['false_positive_rate']:.3f}, "
                  f"F1 {at['f1_anomalous']:.3f} over {result['frames']} frames", highlight=False)
    _show_operator(at)
    if result.get("plots"):
        console.print(f"wrote {len(result['plots'])} plots: {', '.join(result['plots'][:3])}{' …' if len(result['plots']) > 3 else ''}",
                      highlight=False)


def _show_mnist(result: dict) -> None:
    rows = [{"outliers": fraction, "F1 (target positive)": f"{row['f1_target']:.3f}", "F1 (outliers positive)": f"{row['f1_outlier']:.3f}",
             "AUC": f"{row['auc']:.3f}", "images": row["images"]} for fraction, row in result["by_outlier_fraction"].items()]
    table(f"{result['model']}: MNIST one-class protocol, target digit {result['digit']}, threshold from the manifest", rows)


def _show_irmnist(result: dict) -> None:
    deployed = result["frame_score"]
    other = "peak" if deployed == "evidence" else "evidence"
    for positives, title in (("few", "one to five irregular digits per positive grid"),
                             ("natural", "every cell from all of MNIST test, as the paper")):
        row = result[positives]
        rows = [{"map": "deployed intersection M" if name == "intersection" else f"{name} alone",
                 f"detection EER, {deployed} (deployed)": f"{m[f'detection_eer_{deployed}']:.1%}",
                 f"detection AUC, {deployed}": f"{m[f'detection_auc_{deployed}']:.3f}",
                 f"detection EER, {other}": f"{m[f'detection_eer_{other}']:.1%}",
                 "localization EER": f"{m['localization_eer']:.1%}", "localization AUC": f"{m['localization_auc']:.3f}"}
                for name, m in row["parts"].items()]
        table(f"{result['model']}: IR-MNIST, {result['test_grids']} grids (half positive), {title} "
              f"({row['irregular_per_positive_grid']:.1f} per positive grid)", rows)
        at = row["at_stored_thresholds"]
        console.print(f"at the stored thresholds: detection TPR {at['true_positive_rate']:.3f}, FPR {at['false_positive_rate']:.3f}",
                      highlight=False)


def evaluate(
    model: Annotated[str, typer.Argument(help="Exported model (.onnx, or .engine with --backend tensorrt; the model's name with --backend triton).")],
    data: Annotated[str, typer.Option(help="Labelled data: a UCSD-layout folder, 'walkway[:opts]', 'mnist:FOLDER' (the ALOCC paper's "
                                           "protocol), or 'irmnist:FOLDER[:test_grids=1000,digit=D]' (the AVID paper's detection and "
                                           "localization; digit, grids and seed default to the model's training).")],
    plots: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Folder for PNG plots (video data; needs matplotlib, the plots "
                                                                     "extra): roc.png and scores_<clip>.png per clip.")] = None,
    digit: Annotated[Optional[int], typer.Option(min=0, max=9, help="mnist: the target digit. Default: the one the model was trained on.")] = None,
    smoothing: Annotated[int, typer.Option(min=1, help="Window (frames, odd) of the labelled smoothed variants.")] = 9,
    backend: Backend = "ort-cpu",
    preprocess: Preprocess = "cpu",
    triton_url: TritonUrl = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evaluate an exported model on labelled data: frame AUC and EER (micro, macro), pixel level where masks exist."""
    from occ.evaluation.evaluate import evaluate as run_evaluation

    _check_preprocess(preprocess)
    options = _backend_options(backend, triton_url)
    check_outputs({"--json": json_path, "--plots": plots}, {"model": model, "data": data})
    if smoothing % 2 == 0:
        fail(f"--smoothing must be odd, got {smoothing}")
    with one_line_errors(), progress_bar("evaluating", disable=quiet) as advance:
        result = run_evaluation(model, data, backend, preprocess, digit, smoothing, plots, progress=advance, **options)
    report(result, json_path, quiet, _show_eval)


def calibrate(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx, or .engine): its manifest gets the new thresholds.")],
    data: Annotated[str, typer.Option(help="New normal footage: a UCSD-layout folder (its Train clips), 'walkway[:opts]', or a "
                                           f"source ({SOURCE_FORMS}); live sources for --minutes.")],
    minutes: Annotated[float, typer.Option(min=0.05, help="Live sources: minutes of footage to collect.")] = 5.0,
    false_alarm_rate: Annotated[float, typer.Option(min=0.0001, max=0.5, help="Share of these normal frames that fire at the new thresholds.")] = 0.01,
    backend: Backend = "ort-cpu",
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Recompute thresholds (ALOCC τ; AVID α, ζ) on new normal footage; the old values go to the history."""
    from occ.evaluation.calibration import calibrate_model

    _backend_options(backend, None)
    check_outputs({"--json": json_path}, {"model": model, "data": data})
    with one_line_errors(), progress_bar(f"collecting normal frames from {data}", disable=quiet) as advance:
        result = calibrate_model(model, data, false_alarm_rate, minutes, backend, progress=advance)
    from occ.runtime.scoring import threshold_warnings

    payload = {"model": str(model), "frames": result.frames, "written": str(result.written),
               "thresholds": {name: {"value": t.value, "method": t.method, "n_samples": t.n_samples}
                              for name, t in result.manifest.thresholds.items()},
               "warnings": threshold_warnings(result.manifest)}

    def show(payload: dict) -> None:
        table(f"{model}: new thresholds from {result.frames} normal frames (previous values kept in threshold_history)",
              [{"threshold": name, "value": f"{t['value']:.5g}", "how": t["method"]} for name, t in payload["thresholds"].items()])

    report(payload, json_path, quiet, show)
    for warning in payload["warnings"]:
        err_console.print(f"warning: {warning}", highlight=False, markup=False)


def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the data, checkpoints, models and reports.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of the data and of training.")] = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """The main job on built-in data: walkway → train ALOCC and AVID → export → run → evaluate."""
    import io

    from rich.console import Console

    from occ.demo import run_demo

    say = (lambda text: None) if quiet else (lambda text: console.print(text, highlight=False, markup=False))
    with one_line_errors():
        result = run_demo(workdir, seed=seed, say=say, console=Console(file=io.StringIO()) if quiet else console)

    def show(result: dict) -> None:
        from occ.evaluation.datasets import WalkwayConfig

        columns = ["method", "micro AUC", "macro AUC", "EER", "pixel EER", "TPR / FPR at threshold", "false alarms / h",
                   "delay (frames, median)", "train s"]
        table(f"occ demo on the synthetic walkway (exported ONNX models, ONNX Runtime CPU), {result['seconds']} s", result["rows"], columns)
        console.print("frame-level metrics pool all test frames, raw scores (no smoothing, no per-video normalization); "
                      "pixel level: 40 % rule of Mahadevan et al.; at the stored threshold, false alarms (runs of alarmed frames "
                      f"with no anomalous frame) per hour of normal footage at the walkway's {WalkwayConfig.fps:g} frames/s, and the frames from an "
                      "event's first frame to its first alarm", highlight=False)

    report(result, json_path, quiet, show)
