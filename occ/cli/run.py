"""``occ run``, ``occ eval``, ``occ calibrate`` and ``occ demo``: the exported model at work."""
from __future__ import annotations

import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from occ.runtime.backends import REGISTRY
from occ.runtime.sources import SOURCE_FORMS

from .common import JsonOption, QuietOption, SplitOption, check_outputs, console, err_console, export_failures, fail, one_line_errors, progress_bar, report, table
from .feedback import camera_hard_normal

BACKEND_HELP = "Inference backend: " + "; ".join(f"{kind.name} ({kind.summary})" for kind in REGISTRY.values()) + "."
PREPROCESS_HELP = ("Where preprocessing runs: cpu (the numpy reference) or gpu (CUDA kernels; only with a backend that runs on "
                   "device buffers: " + ", ".join(k.name for k in REGISTRY.values() if k.capabilities.device_resident) + ").")
Backend = Annotated[str, typer.Option(help=BACKEND_HELP)]
Preprocess = Annotated[str, typer.Option(help=PREPROCESS_HELP)]
TritonUrl = Annotated[Optional[str], typer.Option(help="Triton / KServe v2 server, HOST:PORT (with --backend triton).", rich_help_panel="Triton")]


def _backend_options(backend: str, triton_url: Optional[str]) -> dict[str, Any]:
    from occ.runtime.backends import backend_kind

    with one_line_errors():
        kind = backend_kind(backend)
    if triton_url and not kind.capabilities.on_server:
        fail("--triton-url goes with --backend " + " or ".join(k.name for k in REGISTRY.values() if k.capabilities.on_server))
    return {"url": triton_url} if triton_url else {}


ThresholdOption = Annotated[Optional[list[str]], typer.Option(
    "--threshold", metavar="NAME=VALUE", help="Run at this threshold instead of the model's (tau for ALOCC; alpha, zeta for AVID); "
    "repeatable; not saved. Default: the model's stored thresholds.")]


def _threshold_overrides(items: Optional[list[str]]) -> dict[str, float]:
    from occ.runtime.service import ConfigError
    from occ.runtime.service.config import parse_threshold

    with one_line_errors(ConfigError):
        return dict(parse_threshold(item) for item in items or [])


def _thresholds_text(thresholds: dict[str, float], overrides: dict[str, float]) -> str:
    given = f" ({', '.join(overrides)} from --threshold, not saved)" if overrides else ""
    return "thresholds " + ", ".join(f"{name}={value:.5g}" for name, value in thresholds.items()) + given


# What --config also sets, so that giving both is refused: option → the configuration's key.
CONFIG_SETS = {"model": ("MODEL", "[model] path"), "source": ("--source", "[source] spec"), "camera": ("--camera", "[source] name"),
               "out": ("--out", "[frames] log"), "frame_lines": ("--frame-lines", "[frames] lines"),
               "events": ("--events", "[events] log"), "snapshots": ("--snapshots", "[snapshots] folder"),
               "overlay": ("--overlay", "[overlay] video"), "open_after": ("--open-after", "[events] open_after"),
               "close_after": ("--close-after", "[events] close_after"), "give_up_after": ("--give-up-after", "[source] give_up_after"),
               "metrics_port": ("--metrics-port", "[metrics] port"), "backend": ("--backend", "[model] backend"),
               "preprocess": ("--preprocess", "[model] preprocess"), "triton_url": ("--triton-url", "[model] triton_url")}


def _refuse_config_conflicts(ctx: typer.Context, config: Path) -> None:
    """With --config, an option the configuration also sets is an error naming both (the
    configuration is the one place those settings come from); --threshold is the one mix allowed."""
    for name, (option, key) in CONFIG_SETS.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            fail(f"{option} conflicts with --config {config}, which sets {key}: set it in the configuration, or drop --config")


def _check_preprocess(preprocess: str) -> None:
    from occ.runtime.detector import PREPROCESS

    if preprocess not in PREPROCESS:
        fail(f"--preprocess must be one of {', '.join(PREPROCESS)}, got {preprocess!r}")


def run(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Argument(help="Exported model (.onnx, or .engine with --backend tensorrt; the model's "
                                                       "name with --backend triton); not needed with --config.")] = None,
    source: Annotated[Optional[str], typer.Option(help=f"Where frames come from: {SOURCE_FORMS}.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Service configuration (TOML): several cameras, log rotation, snapshots; "
                                                       "see docs/deploy/site.example.toml.")] = None,
    camera: Annotated[Optional[str], typer.Option(help="The camera's name in events, logs and metrics. Default: from --source.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Per-frame JSON lines (default: standard output when there is no --events).")] = None,
    frame_lines: Annotated[str, typer.Option(help="Which frames get a per-frame line: all, or events (only while an event "
                                                  "is open).")] = "all",
    events: Annotated[Optional[Path], typer.Option(help="Event JSON lines (episodes), appended.")] = None,
    snapshots: Annotated[Optional[Path], typer.Option(help="Folder for peak-frame snapshots of events (rotated).")] = None,
    overlay: Annotated[Optional[Path], typer.Option(help="Overlay output: a .avi video or a folder of PNGs.")] = None,
    open_after: Annotated[Optional[int], typer.Option(min=1, help="Anomalous frames in a row that open an event, overriding the "
                                                                  "model's episode rule (occ inspect shows it). Default: the model's.")] = None,
    close_after: Annotated[Optional[int], typer.Option(min=1, help="Quiet frames in a row that close an event. Default: the "
                                                                   "model's episode rule.")] = None,
    give_up_after: Annotated[float, typer.Option(min=0, help="Live sources: seconds without a frame before giving up with exit "
                                                            "code 3 (0: never).")] = 0,
    metrics_port: Annotated[int, typer.Option(min=0, max=65535, help="Serve /healthz and /metrics on this TCP port (0: off).")] = 0,
    backend: Backend = "ort-cpu",
    preprocess: Preprocess = "cpu",
    triton_url: TritonUrl = None,
    threshold: ThresholdOption = None,
) -> None:
    """Run a model on a source: per-frame JSON lines, events, snapshots, event clips, overlays, /metrics;
    logs are JSON lines. Lines follow the schema of docs/events.md.

    With --config, the configuration is the one source of settings: an option it also sets is an
    error. --threshold is allowed with it and wins over its [thresholds], which win over the model's.
    Stops on SIGTERM/SIGINT. Exit codes: 0 when every source finished or a stop was requested, 2 for
    bad input, 3 when a live source gave up, 4 when a camera's loop failed."""
    import signal

    from occ.runtime.service import CameraConfig, ConfigError, Service, ServiceConfig

    if config is not None:
        _refuse_config_conflicts(ctx, config)
    overrides = _threshold_overrides(threshold)
    _check_preprocess(preprocess)
    options = _backend_options(backend, triton_url)
    with one_line_errors(ConfigError):
        if config is not None:
            settings = ServiceConfig.from_toml(config)
            settings.thresholds = {**settings.thresholds, **overrides}
        elif model is None or source is None:
            fail("give MODEL and --source, or --config FILE")
        else:
            to_stdout = out is None and events is None
            settings = ServiceConfig(
                model=model, cameras=[CameraConfig(spec=source, name=camera or "", give_up_after=give_up_after or None)],
                backend=backend, preprocess=preprocess, triton_url=options.get("url", ""),
                events_log=str(events) if events else str(Path(tempfile.mkdtemp()) / "events.jsonl"),
                open_after=open_after, close_after=close_after, snapshots=str(snapshots or ""),
                overlay_video=str(overlay or ""), frames_log="/dev/stdout" if to_stdout else str(out or ""), frame_lines=frame_lines,
                thresholds=overrides, metrics_port=metrics_port).check("occ run")
        service = Service(settings)
        signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
        signal.signal(signal.SIGINT, lambda *_: service.request_stop())
        summary = service.run(capture_native_output=True)
    totals = summary.totals()
    server = f", {totals['backend_reconnects']} server reconnects" if totals["backend_reconnects"] else ""
    err_console.print(f"{totals['frames']} frames, {totals['anomalous_frames']} anomalous, {totals['events']} events, "
                      f"{totals['dropped']} dropped, {totals['reconnects']} reconnects{server}, {totals['sink_errors']} failed writes; "
                      f"{_thresholds_text(summary.thresholds, overrides)}; "
                      + "; ".join(f"{c.camera}: {c.outcome}{' (' + c.error + ')' if c.error else ''}" for c in summary.cameras),
                      highlight=False, markup=False, soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(int(summary.exit_code))


def _show_eval(result) -> None:
    from occ.evaluation.report import EvaluationReport

    if isinstance(result, EvaluationReport):
        _show_frames(result)
        return
    shows = {"mnist": _show_mnist, "irmnist": _show_irmnist}
    shows[result["protocol"]](result)


def _show_operator(at, where: str = "at the stored threshold") -> None:
    from occ.evaluation.metrics import FalseAlarmRate
    from occ.evaluation.protocols import delay_text, false_alarms_text

    false_alarms, delay = at.false_alarms_per_hour, at.detection_delay
    rate = false_alarms.fps if isinstance(false_alarms, FalseAlarmRate) else None
    table(f"{where}{f' ({rate:g} frames/s)' if rate else ''}: false alarms are runs of alarmed frames "
          "with no anomalous frame; delay is frames from an event's first frame to its first alarm",
          [{"false alarms / h": false_alarms_text(false_alarms),
            "delay (frames, median)": delay_text(delay),
            "delay (frames, mean)": "n/a" if delay.mean_frames is None else f"{delay.mean_frames:.1f}"}])


def _frame_rows(variants: dict) -> list[dict]:
    from occ.evaluation.report import Unavailable

    return [{"variant": name, "micro AUC": None, "macro AUC": None, "EER": m.error} if isinstance(m, Unavailable) else
            {"variant": name, "micro AUC": f"{m.micro_auc:.3f}", "macro AUC": f"{m.macro_auc:.3f}", "EER": f"{m.eer:.1%}"}
            for name, m in variants.items()]


def _show_frames(result) -> None:
    from occ.evaluation.metrics import PixelLevel

    rows = _frame_rows({"raw": result.frame_level.raw})
    if isinstance(result.pixel_level, PixelLevel):
        rows.append({"variant": "pixel level (40 % rule)", "micro AUC": f"{result.pixel_level.auc:.3f}",
                     "EER": f"{result.pixel_level.eer:.1%}"})
    table(f"{result.model} on {result.data}: what a camera runs (each frame scored as it comes)", rows)
    table("offline only, not what a camera runs (each needs the whole video first: centred smoothing, per-video min–max)",
          _frame_rows(result.frame_level_offline))
    where = "at the stored threshold"
    if result.threshold_overrides:
        where = "at the given thresholds"
        console.print(_thresholds_text(result.thresholds, result.threshold_overrides), highlight=False, markup=False)
    at = result.at_stored_threshold  # the name stays: with --threshold, the thresholds given
    console.print(f"{where}: TPR {at.true_positive_rate:.3f}, FPR {at.false_positive_rate:.3f}, "
                  f"F1 {at.f1_anomalous:.3f} over {result.frames} frames", highlight=False)
    _show_operator(at, where)
    if result.plots:
        console.print(f"wrote {len(result.plots)} plots: {', '.join(result.plots[:3])}{' …' if len(result.plots) > 3 else ''}",
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
    smoothing: Annotated[int, typer.Option(min=1, help="Window (frames, odd) of the offline smoothed variants.")] = 9,
    backend: Backend = "ort-cpu",
    preprocess: Preprocess = "cpu",
    triton_url: TritonUrl = None,
    threshold: ThresholdOption = None,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Evaluate an exported model on labelled data: frame AUC and EER (micro, macro), pixel level where masks exist.

    Video data: what a camera runs comes first; the offline-only variants (centred smoothing,
    per-video min–max) follow in their own table (in JSON under frame_level_offline)."""
    from occ.evaluation.evaluate import evaluate as run_evaluation

    overrides = _threshold_overrides(threshold)
    _check_preprocess(preprocess)
    options = _backend_options(backend, triton_url)
    check_outputs({"--json": json_path, "--plots": plots}, {"model": model, "data": data})
    if smoothing % 2 == 0:
        fail(f"--smoothing must be odd, got {smoothing}")
    with one_line_errors(), progress_bar("evaluating", disable=quiet) as advance:
        result = run_evaluation(model, data, backend, preprocess, digit, smoothing, plots, progress=advance, thresholds=overrides,
                                **options)
    report(result, json_path, quiet, _show_eval)


def calibrate(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx, or .engine): its manifest gets the new thresholds.")],
    data: Annotated[str, typer.Option(help="New normal footage of the camera, not the model's training footage: footage (an occ data "
                                           "record folder, a video file, 'videos/*.mp4', a folder of videos or image folders; its "
                                           "calibration part by --split), a UCSD-layout folder (its Train clips), 'walkway[:opts]', a "
                                           f"walkway day, or a live source ({SOURCE_FORMS}).")],
    alarms_per_day: Annotated[Optional[float], typer.Option(min=0, help="Alarm budget: solve the thresholds and the episode rule (k of n "
                                                                        "frames, or a CUSUM of the score) so that the episodes opened on "
                                                                        "the footage stay within this many a day. Default: off "
                                                                        "(--false-alarm-rate).")] = None,
    false_alarm_rate: Annotated[Optional[float], typer.Option(min=0.0001, max=0.5, help="Share of these normal frames that fire at the new "
                                                                                        "thresholds; the episode rule stays. Default: 0.01 "
                                                                                        "without --alarms-per-day.")] = None,
    minutes: Annotated[float, typer.Option(min=0.05, help="Live sources: minutes of footage to collect.")] = 5.0,
    fps: Annotated[Optional[float], typer.Option(min=0, help="The footage's frame rate, frames per second, that turns frames into "
                                                             "hours. Default: the data set's, or measured from the frames' times.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write a new model here (same kind of file; it must not exist) instead of "
                                                     "changing MODEL. Default: MODEL is changed.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the old and new values and the expected alarms; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Calibrate even on the model's own training footage (refused otherwise).")] = False,
    config: Annotated[Optional[Path], typer.Option(metavar="FILE", help="The camera's service configuration (TOML), as given to "
                                                                       "occ feedback --config: the camera's folder of its "
                                                                       "hard-normal set ([feedback] hard_normal, default "
                                                                       "hard-normal/ beside the configuration, then /<camera>) is "
                                                                       "added to the footage as normal; an empty or absent folder "
                                                                       "is noted and the footage is used alone. Default: none.")] = None,
    camera: Annotated[Optional[str], typer.Option(metavar="NAME", help="With --config: the camera whose hard-normal set is "
                                                                       "added. Default: the configuration's camera; required "
                                                                       "when it has several.")] = None,
    hard_normal: Annotated[Optional[Path], typer.Option("--hard-normal", metavar="DIR", help="A camera's hard-normal folder, given "
                                                                                            "by hand instead of --config "
                                                                                            "(<[feedback] hard_normal>/<camera>, filled by "
                                                                                            "occ feedback EVENT_ID --not-anomaly): its "
                                                                                            "clips are added to the footage as normal; "
                                                                                            "an empty or absent one is refused. "
                                                                                            "Default: none.")] = None,
    split: SplitOption = "70/10/20",
    backend: Backend = "ort-cpu",
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Recompute thresholds (ALOCC τ; AVID α, ζ) on new normal footage, for a frame rate or an alarm budget; the old values go to the history.

    Prints the old and new values with the alarms per hour each would raise on this footage. With
    --config, the camera's hard-normal set (events the operator marked with occ feedback) is added as
    normal footage, and the summary says how the thresholds and the alarms moved."""
    from occ.evaluation.calibration import calibrate_model
    from occ.evaluation.datasets.footage import Split

    _backend_options(backend, None)
    if alarms_per_day is not None and false_alarm_rate is not None:
        fail("give --alarms-per-day or --false-alarm-rate, not both")
    if alarms_per_day is not None and not alarms_per_day > 0:
        fail(f"--alarms-per-day must be > 0, got {alarms_per_day:g}")
    if hard_normal is not None and config is not None:
        fail(f"--hard-normal {hard_normal} conflicts with --config {config}, which names the camera's hard-normal set: drop one")
    if camera is not None and config is None:
        fail(f"--camera {camera} goes with --config FILE: it picks the configuration's camera whose hard-normal set is added")
    hard_normal_empty = None  # the configuration's folder for the camera, when it holds no clip yet
    if config is not None:
        camera, folder = camera_hard_normal(config, camera)
        if folder.is_dir() and any(not p.name.startswith(".") for p in folder.glob("*.json")):
            hard_normal = folder
        else:
            hard_normal_empty = str(folder)
    check_outputs({"--json": json_path, "--out": out}, {"model": model, "data": data, "hard-normal set": hard_normal,
                                                         "service configuration": config})
    with one_line_errors(), progress_bar(f"collecting normal frames from {data}", disable=quiet) as advance:
        result = calibrate_model(model, data, false_alarm_rate, minutes, backend, progress=advance, alarms_per_day=alarms_per_day,
                                 fps=fps, force=force, dry_run=dry_run, out=out, split=Split.parse(split), hard_normal=hard_normal)
    payload = {**calibration_payload(model, result), "hard_normal_empty": hard_normal_empty}

    def show(payload: dict) -> None:
        where = "not written (--dry-run)" if payload["written"] is None else f"written to {payload['written']}"
        length = f"{payload['minutes']:.1f} min at {payload['fps']:g} fps" if payload["fps"] else "frame rate unknown"
        table(f"{model}: thresholds from {payload['frames']} normal frames ({length}), "
              f"{where}; previous values kept in threshold_history",
              [{"": "old", **{name: f"{v:.5g}" for name, v in payload["old"]["thresholds"].items()},
                "episode rule": payload["old"]["episodes"], "alarms / h on this footage": _rate_text(payload["old"]["expected_alarms"])},
               {"": "new", **{name: f"{v:.5g}" for name, v in payload["new"]["thresholds"].items()},
                "episode rule": payload["new"]["episodes"], "alarms / h on this footage": _rate_text(payload["new"]["expected_alarms"])}])
        if payload["rules"]:
            table(f"episode rules at {payload['alarms_per_day']:g} alarms a day (the lowest threshold wins)",
                  [{"rule": r["described"], "frames that fire": f"{r['frame_rate']:.3g}", "alarms": r["alarms"],
                    "opens after (frames)": r["opening_frames"]} for r in payload["rules"]])
            console.print(f"chosen: {payload['choice']}", highlight=False, markup=False)
        console.print(_moved_text(payload), highlight=False, markup=False, soft_wrap=True)
        if payload["hard_normal"] is not None:
            console.print(_hard_normal_text(payload["hard_normal"]), highlight=False, markup=False, soft_wrap=True)
        if payload["hard_normal_empty"] is not None:
            console.print(f"hard-normal set {payload['hard_normal_empty']} (camera {camera}, {config}): no clip yet, the footage "
                          f"alone was used; occ feedback EVENT_ID --not-anomaly --config {config} puts clips there",
                          highlight=False, markup=False, soft_wrap=True)

    report(payload, json_path, quiet, show)
    for warning in payload["warnings"]:
        err_console.print(f"warning: {warning}", highlight=False, markup=False)


def _rate_text(rate: Optional[dict]) -> str:
    if rate is None:
        return "n/a"
    return f"{rate['per_hour']:.3g} (95 %: {rate['per_hour_low']:.3g}-{rate['per_hour_high']:.3g}; {rate['alarms']} in {rate['hours'] * 60:.1f} min)"


def _moved_text(payload: dict) -> str:
    """``moved: tau 0.41 → 0.53 (+29%); alarms a day on this footage 11000 → 0 (budget 24)``."""
    parts = []
    for name, move in payload["moved"]["thresholds"].items():
        change = f" ({move['change']:+.0%})" if move["change"] is not None else ""
        parts.append(f"{name} {_number(move['old'])} → {_number(move['new'])}{change}")
    alarms = payload["moved"]["alarms_per_day"]
    if alarms is not None:
        parts.append(f"alarms a day on this footage {_number(alarms['old'])} → {_number(alarms['new'])} (budget {payload['alarms_per_day']:g})")
    return "moved: " + "; ".join(parts)


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.5g}"


def _hard_normal_text(hard: dict) -> str:
    before = "n/a" if hard["alarms_before"] is None else hard["alarms_before"]
    firing = "n/a" if hard["firing_before"] is None else hard["firing_before"]
    return (f"hard-normal set {hard['folder']}: {hard['clips']} clip(s), {hard['frames']} frames included as normal; "
            f"episodes on them {before} → {hard['alarms_after']}, frames firing {firing} → {hard['firing_after']}")


def calibration_payload(model: Path, result: Any) -> dict[str, Any]:
    """What ``occ calibrate`` reports (and writes with ``--json``)."""
    import dataclasses

    def side(manifest: Any, expected: Any) -> dict[str, Any]:
        return {"thresholds": {name: t.value for name, t in manifest.thresholds.items()}, "episodes": manifest.episodes.describe(),
                "episode_rule": dataclasses.asdict(manifest.episodes),
                "expected_alarms": dataclasses.asdict(expected) if expected is not None else None}

    return {"model": str(model), "frames": result.frames, "fps": result.fps, "minutes": result.minutes,
            "written": str(result.written) if result.written else None,
            "alarms_per_day": next(iter(result.manifest.thresholds.values())).alarms_per_day_budget,
            "old": side(result.previous, result.previous_expected), "new": side(result.manifest, result.expected),
            "thresholds": {name: {"value": t.value, "method": t.method, "n_samples": t.n_samples}
                           for name, t in result.manifest.thresholds.items()},
            "rules": [r.to_json() for r in result.rules], "choice": result.choice,
            "training_overlap": dataclasses.asdict(result.overlap) if result.overlap is not None else None,
            "hard_normal": result.hard_normal.to_json() if result.hard_normal is not None else None,
            "moved": result.moved(), "warnings": result.warnings}


def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the data, checkpoints, models and reports.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of the data and of training.")] = 0,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """The main job on built-in data: walkway → train ALOCC and AVID → export → run → evaluate."""
    import io

    from rich.console import Console

    from occ.benchmarks.training_runs import commit
    from occ.benchmarks.training_runs import machine
    from occ.demo import run_demo

    say = (lambda text: None) if quiet else (lambda text: console.print(text, highlight=False, markup=False))
    with one_line_errors(), export_failures():
        result = run_demo(workdir, seed=seed, say=say, console=Console(file=io.StringIO()) if quiet else console)
    result = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
              "command": shlex.join(["occ", "demo", *sys.argv[2:]]), **result}

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
