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


def _comma_list(text: str) -> list[str]:
    """``'a, b,'`` → ``['a', 'b']``."""
    return [item.strip() for item in text.split(",") if item.strip()]


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


# ---- train --------------------------------------------------------------------------------------
train_app = typer.Typer(help="Train a detector on normal data (needs the train extra: pip install occ\\[train]).", no_args_is_help=True)
app.add_typer(train_app, name="train")

_GEOMETRY = "Geometry"
_TRAINING = "Training"


def _relaunch_on_devices(devices: int) -> None:
    """``--devices N`` (N > 1): run this same command in N processes under torchrun, then exit.

    Inside torchrun (``WORLD_SIZE`` set) it returns and the command trains its shard; rank 0
    writes the checkpoint. GPUs use NCCL when there are N of them, otherwise gloo on the CPU.
    """
    import os
    import subprocess
    import sys

    if devices < 1:
        fail(f"--devices must be ≥ 1, got {devices}")
    if devices == 1 or "WORLD_SIZE" in os.environ:
        return
    argv, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--devices":
            skip = True
            continue
        if arg.startswith("--devices="):
            continue
        argv.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}", "-m", "occ", *argv]
    raise typer.Exit(subprocess.run(command).returncode)


@train_app.command("alocc")
def train_alocc_command(
    data: Annotated[str, typer.Option(help="Normal training data: a UCSD-layout folder, 'walkway[:opts]', or 'mnist:FOLDER'.")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.pt).")],
    digit: Annotated[int, typer.Option(help="MNIST only: the target (normal) digit.")] = 0,
    height: Annotated[int, typer.Option(help="Video: frame height after resize, pixels.", rich_help_panel=_GEOMETRY)] = 60,
    width: Annotated[int, typer.Option(help="Video: frame width after resize, pixels.", rich_help_panel=_GEOMETRY)] = 90,
    patch_size: Annotated[int, typer.Option(help="Video: patch side, pixels.", rich_help_panel=_GEOMETRY)] = 20,
    stride: Annotated[int, typer.Option(help="Video: step between patches, pixels.", rich_help_panel=_GEOMETRY)] = 10,
    temporal: Annotated[str, typer.Option(help="Video: 'frame_diff' (appearance + signed motion) or 'none'.", rich_help_panel=_GEOMETRY)] = "frame_diff",
    base_width: Annotated[int, typer.Option(help="Channels of the first layer (paper: 64).", rich_help_panel=_TRAINING)] = 32,
    depth: Annotated[int, typer.Option(help="Stride-2 layers per network (paper: 4).", rich_help_panel=_TRAINING)] = 3,
    bottleneck: Annotated[Optional[int], typer.Option(help="Size of a linear code between R's encoder and decoder (0: none, as the paper). Default: 16 for images (mnist:), 0 for video; see docs/accuracy.md.", rich_help_panel=_TRAINING)] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs.", rich_help_panel=_TRAINING)] = 8,
    batch_size: Annotated[int, typer.Option(help="Patches per batch.", rich_help_panel=_TRAINING)] = 64,
    optimizer: Annotated[str, typer.Option(help="'adam' or 'sgd'.", rich_help_panel=_TRAINING)] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate of R and D.", rich_help_panel=_TRAINING)] = 2e-4,
    noise_sigma: Annotated[float, typer.Option(help="σ of the Gaussian noise on R's input (normalized units).", rich_help_panel=_TRAINING)] = 0.155,
    lam: Annotated[float, typer.Option(help="λ, weight of ‖X − R(X̃)‖².", rich_help_panel=_TRAINING)] = 0.4,
    d_steps: Annotated[int, typer.Option(help="D updates per batch.", rich_help_panel=_TRAINING)] = 1,
    r_steps: Annotated[int, typer.Option(help="R updates per batch.", rich_help_panel=_TRAINING)] = 1,
    rho: Annotated[float, typer.Option(help="Stop once validation ‖X − R(X)‖² per pixel < ρ (0: off).", rich_help_panel=_TRAINING)] = 0.0,
    irregular_weight: Annotated[float, typer.Option(help="Video with frame_diff: weight of synthetic irregular patches made from the normal clips (D learns them as not normal, R to restore them); 0 turns them off.", rich_help_panel=_TRAINING)] = 2.0,
    irregular_kinds: Annotated[str, typer.Option(help="Comma-separated kinds: 'fast' (motion over 3–4 frames instead of 1), 'reverse' (time runs backwards).", rich_help_panel=_TRAINING)] = "fast,reverse",
    false_alarm_rate: Annotated[float, typer.Option(help="Target false-alarm rate of the threshold on held-out normal frames.")] = 0.01,
    devices: Annotated[int, typer.Option(help="Processes to train in (torchrun; one per GPU with NCCL, else gloo on the CPU). Results equal one process on the same global batch.", rich_help_panel=_TRAINING)] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic on CPU).")] = 0,
) -> None:
    """Train ALOCC (R + D) on normal data; calibrate its threshold on held-out normal frames."""
    _relaunch_on_devices(devices)
    from occ.runtime.datasets import DatasetError
    from occ.train.train_alocc import AloccConfig, image_data, train_alocc, video_data

    if bottleneck is None:  # measured: a code of 16 lifts MNIST's mean AUC from 0.74 to 0.96, no gain on video
        bottleneck = 16 if data.startswith("mnist:") else 0
    config = AloccConfig(height=height, width=width, patch_size=patch_size, stride=stride, temporal=temporal,
                         base_width=base_width, depth=depth, bottleneck=bottleneck, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                         lr=lr, noise_sigma=noise_sigma, lam=lam, d_steps=d_steps, r_steps=r_steps, rho=rho,
                         irregular_weight=irregular_weight, irregular_kinds=_comma_list(irregular_kinds),
                         false_alarm_rate=false_alarm_rate, seed=seed)
    try:
        if data.startswith("mnist:"):
            from occ.runtime.datasets import load_mnist

            images, labels = load_mnist(data.partition(":")[2], "train")
            prepared = image_data(images[labels == digit], config, f"MNIST train digit {digit}")
        else:
            from occ.runtime.datasets.spec import load_video_data

            video = load_video_data(data, splits=("train",))
            prepared = video_data(video.train, config, video.description)
        manifest = train_alocc(prepared, config, out, console)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    if manifest is None:  # a torchrun rank other than 0
        return
    tau = manifest.thresholds["tau"]
    console.print(f"wrote {out}: tau = {tau.value:.4f} at {tau.target_false_alarm_rate:.1%} false alarms on {tau.n_samples} held-out normal frames")


# ---- run, eval, calibrate -----------------------------------------------------------------------
def _open_detector(model: Path, backend: str):
    from occ.runtime.backends import BackendError
    from occ.runtime.detector import Detector
    from occ.runtime.manifest import ManifestError

    try:
        return Detector.open(str(model), backend)
    except (BackendError, ManifestError) as exc:
        fail(str(exc))


@app.command("run")
def run_command(
    model: Annotated[Optional[Path], typer.Argument(help="Exported model (.onnx); not needed with --config.")] = None,
    source: Annotated[Optional[str], typer.Option(help="Video file, image folder, /dev/videoN, rtsp:// or http:// URL, or GStreamer pipeline.")] = None,
    config: Annotated[Optional[Path], typer.Option(help="Service configuration (TOML); see `occ.runtime.service`.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Per-frame JSON lines (default: standard output when no --events).")] = None,
    events: Annotated[Optional[Path], typer.Option(help="Event JSON lines (episodes), appended.")] = None,
    snapshots: Annotated[Optional[Path], typer.Option(help="Folder for peak-frame snapshots of events (rotated).")] = None,
    overlay: Annotated[Optional[Path], typer.Option(help="Overlay output: a .avi video or a folder of PNGs.")] = None,
    open_after: Annotated[int, typer.Option(help="Anomalous frames in a row that open an event.")] = 3,
    close_after: Annotated[int, typer.Option(help="Quiet frames in a row that close an event.")] = 5,
    metrics_port: Annotated[int, typer.Option(help="Serve /healthz and /metrics on this port (0: off).")] = 0,
    triton: Annotated[Optional[str], typer.Option(help="Triton / KServe v2 server (host:port); the model runs there, named by --model.", rich_help_panel="Triton")] = None,
    model_name: Annotated[Optional[str], typer.Option("--model", help="With --triton: the model's name in the server's repository.", rich_help_panel="Triton")] = None,
    backend: Annotated[str, typer.Option(help="ort-cpu (numpy preprocessing, ONNX Runtime CPU); ort-cuda or tensorrt "
                                              "(.engine): the whole frame path on the GPU (CUDA preprocessing kernels, "
                                              "model on device buffers).")] = "ort-cpu",
) -> None:
    """Run a model on a source: per-frame JSON lines, events, snapshots, overlays, /metrics. Stops on SIGTERM/SIGINT."""
    import signal
    import tempfile

    from occ.runtime.backends import BackendError
    from occ.runtime.datasets import DatasetError
    from occ.runtime.gpu.cuda import CudaError, GpuUnavailable
    from occ.runtime.manifest import ManifestError
    from occ.runtime.service import ConfigError, Service, ServiceConfig, setup_logging

    try:
        if triton is not None:
            if model_name is None or model is not None:
                fail("with --triton give the server's model name as --model NAME (and no MODEL file)")
            model, backend = Path(model_name), "triton"
        if config is not None:
            settings = ServiceConfig.from_toml(config)
        elif model is None or source is None:
            fail("give MODEL and --source, or --config FILE")
        else:
            to_stdout = out is None and events is None
            settings = ServiceConfig(
                model=str(model), source=source, backend=backend, triton_url=triton or "",
                events_log=str(events) if events else str(Path(tempfile.mkdtemp()) / "events.jsonl"),
                open_after=open_after, close_after=close_after, snapshots=str(snapshots or ""),
                overlay_video=str(overlay or ""), frames_log="/dev/stdout" if to_stdout else str(out or ""),
                metrics_port=metrics_port)
        setup_logging()
        service = Service(settings)
        signal.signal(signal.SIGTERM, lambda *_: service.request_stop())
        signal.signal(signal.SIGINT, lambda *_: service.request_stop())
        summary = service.run()
    except (BackendError, ManifestError, DatasetError, ConfigError, GpuUnavailable, CudaError) as exc:
        fail(str(exc))
    err_console.print(f"{summary['frames']} frames, {summary['anomalous_frames']} anomalous, {summary['events']} events, "
                      f"{summary['dropped']} dropped, {summary['reconnects']} reconnects", highlight=False)


@app.command("eval")
def eval_command(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx); the exported graph is what gets evaluated.")],
    data: Annotated[str, typer.Option(help="Labelled data: a UCSD-layout folder, 'walkway[:opts]', 'mnist:FOLDER' (ALOCC paper "
                                           "protocol), or 'irmnist:FOLDER[:test_grids=1000,digit=D]' (AVID paper: detection and "
                                           "localization EER; the digit, the grids' seed and the training grid count, which "
                                           "fix the test grids, default to the model's training).")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    roc: Annotated[Optional[Path], typer.Option(help="Write the frame-level ROC curve as a PNG here.")] = None,
    digit: Annotated[Optional[int], typer.Option(help="MNIST: the target digit (default: the one the model was trained on).")] = None,
    smoothing: Annotated[int, typer.Option(help="Window (frames, odd) of the labelled smoothed variants.")] = 9,
    backend: Annotated[str, typer.Option(help="Inference backend: ort-cpu or ort-cuda.")] = "ort-cpu",
) -> None:
    """Evaluate an exported model on labelled test clips: frame AUC/EER (micro, macro), pixel level where masks exist."""
    from occ.runtime.datasets import DatasetError
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.evaluate import report, score_clips

    detector = _open_detector(model, backend)
    if data.startswith("mnist:"):
        _eval_mnist(detector, model, data.partition(":")[2], digit, json_path)
        return
    if data.startswith("irmnist:"):
        _eval_irmnist(detector, model, data, json_path)
        return
    try:
        video = load_video_data(data, splits=("test",))
    except DatasetError as exc:
        fail(str(exc))
    from occ.train.common import progress_bar  # noqa: F401  (rich only; no torch import at module level)
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as progress:
        task = progress.add_task("scoring clips", total=len(video.test))
        clips = score_clips(detector, video.test, progress=lambda: progress.advance(task))
    result = {"model": str(model), "data": video.description, **report(clips, smoothing)}
    if json_path:
        from occ.runtime.manifest import write_atomic

        write_atomic(json_path, json.dumps(result, indent=2).encode())
    if roc:
        from occ.runtime.overlay import write_roc_png
        import numpy as np

        write_roc_png(roc, np.concatenate([c.labels for c in clips]), np.concatenate([c.scores for c in clips]))
    _print_eval(result)


def _eval_mnist(detector, model: Path, folder: str, digit: Optional[int], json_path: Optional[Path]) -> None:
    import re

    from occ.runtime.datasets import DatasetError, load_mnist
    from occ.runtime.evaluate import mnist_protocol

    if digit is None:
        match = re.search(r"digit (\d)", detector.manifest.training.get("data", ""))
        if not match:
            fail(f"{model}: give --digit (the manifest does not say which digit it was trained on)")
        digit = int(match.group(1))
    try:
        images, labels = load_mnist(folder, "test")
    except DatasetError as exc:
        fail(str(exc))
    result = {"model": str(model), "data": f"MNIST test, target digit {digit}", **mnist_protocol(detector, images, labels, digit)}
    if json_path:
        from occ.runtime.manifest import write_atomic

        write_atomic(json_path, json.dumps(result, indent=2).encode())
    table = Table(title=f"{model}: MNIST one-class protocol, target digit {digit}, threshold from the manifest")
    for column in ("outliers", "F1 (target positive)", "F1 (outliers positive)", "AUC", "images"):
        table.add_column(column)
    for fraction, row in result["by_outlier_fraction"].items():
        table.add_row(fraction, f"{row['f1_target']:.3f}", f"{row['f1_outlier']:.3f}", f"{row['auc']:.3f}", str(row["images"]))
    console.print(table)


def _eval_irmnist(detector, model: Path, data: str, json_path: Optional[Path]) -> None:
    from occ.runtime.datasets import DatasetError
    from occ.runtime.datasets.irmnist import IrMnistSpec
    from occ.runtime.evaluate import irmnist_protocol

    training = detector.manifest.training
    seed = int(training.get("config", {}).get("seed", 0))
    try:
        spec = IrMnistSpec.parse(data, **IrMnistSpec.trained_on(training.get("data", "")))
        with err_console.status(f"scoring {spec.test_grids} test grids of each construction"):
            result = {"model": str(model), "data": f"IR-MNIST test grids, digit {spec.digit} irregular", **irmnist_protocol(detector, spec, seed)}
    except DatasetError as exc:
        fail(str(exc))
    if json_path:
        from occ.runtime.manifest import write_atomic

        write_atomic(json_path, json.dumps(result, indent=2).encode())
    for positives, title in (("few", "one to five irregular digits per positive grid"),
                             ("natural", "every cell from all of MNIST test, as the paper")):
        row = result[positives]
        table = Table(title=f"{model}: IR-MNIST, {spec.test_grids} grids (half positive), {title} "
                            f"({row['irregular_per_positive_grid']:.1f} per positive grid)")
        deployed = result["frame_score"]
        other = "peak" if deployed == "evidence" else "evidence"
        for column in ("map", f"detection EER, {deployed} (deployed)", f"detection AUC, {deployed}", f"detection EER, {other}",
                       "localization EER", "localization AUC"):
            table.add_column(column)
        for name, m in row["parts"].items():
            table.add_row("deployed intersection M" if name == "intersection" else f"{name} alone",
                          f"{m[f'detection_eer_{deployed}']:.1%}", f"{m[f'detection_auc_{deployed}']:.3f}",
                          f"{m[f'detection_eer_{other}']:.1%}", f"{m['localization_eer']:.1%}", f"{m['localization_auc']:.3f}")
        console.print(table)
        at = row["at_stored_thresholds"]
        console.print(f"at the stored thresholds: detection TPR {at['true_positive_rate']:.3f}, FPR {at['false_positive_rate']:.3f}",
                      highlight=False)


def _print_eval(result: dict) -> None:
    table = Table(title=f"{result['model']} on {result['data']}")
    for column in ("variant", "micro AUC", "macro AUC", "EER"):
        table.add_column(column)
    for name, metrics in result["frame_level"].items():
        if "error" in metrics:
            table.add_row(name, metrics["error"], "", "")
        else:
            table.add_row(name, f"{metrics['micro_auc']:.3f}", f"{metrics['macro_auc']:.3f}", f"{metrics['eer']:.1%}")
    if "pixel_level" in result and "auc" in result["pixel_level"]:
        table.add_row("pixel level (40 % rule)", f"{result['pixel_level']['auc']:.3f}", "", f"{result['pixel_level']['eer']:.1%}")
    console.print(table)
    at = result["at_stored_threshold"]
    console.print(f"at the stored threshold: TPR {at['true_positive_rate']:.3f}, FPR {at['false_positive_rate']:.3f}, "
                  f"F1 {at['f1_anomalous']:.3f} over {result['frames']} frames", highlight=False)


@train_app.command("avid")
def train_avid_command(
    data: Annotated[str, typer.Option(help="Normal training data: a UCSD-layout folder, 'walkway[:opts]' (video), or "
                                           "'irmnist:FOLDER[:grids=5000,digit=3,test_grids=1000]' (IR-MNIST digit grids from "
                                           "the MNIST IDX files in FOLDER; single images).")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.pt).")],
    height: Annotated[Optional[int], typer.Option(help="Frame height after resize, pixels (multiple of 2**depth). Default: 64 (video), 176 (IR-MNIST).", rich_help_panel=_GEOMETRY)] = None,
    width: Annotated[Optional[int], typer.Option(help="Frame width after resize, pixels (multiple of 2**depth). Default: 96 (video), 176 (IR-MNIST).", rich_help_panel=_GEOMETRY)] = None,
    base_width: Annotated[Optional[int], typer.Option(help="Channels at full resolution of I and first layer of D. Default: 16.", rich_help_panel=_TRAINING)] = None,
    depth: Annotated[Optional[int], typer.Option(help="Down-sampling steps; the region cell is 2**depth pixels. Default: 3 (video), 4 (IR-MNIST: one cell per digit).", rich_help_panel=_TRAINING)] = None,
    skip_connections: Annotated[Optional[bool], typer.Option("--skip-connections/--no-skip-connections", help="I's U-Net skips. Default: on (video), off (IR-MNIST: I must not copy an unseen digit through).", rich_help_panel=_TRAINING)] = None,
    code_channels: Annotated[Optional[int], typer.Option(help="Channels of a 1×1 code at I's deepest level (0: none). Default: 0 (video), 16 (IR-MNIST).", rich_help_panel=_TRAINING)] = None,
    residual_kernel: Annotated[Optional[int], typer.Option(help="Window of the residual average, pixels (odd). Default: about 0.13 × height (video), 5 (IR-MNIST, a stroke's width).", rich_help_panel=_TRAINING)] = None,
    region_memory: Annotated[Optional[int], typer.Option(help="Single images: score regions by their distance to the nearest of up to this many normal training regions instead of by D (0: D, as published; refused on video). Default: 60000 (IR-MNIST).", rich_help_panel=_TRAINING)] = None,
    region_alignment: Annotated[Optional[bool], typer.Option("--region-alignment/--no-region-alignment", help="With the region memory: compare regions centred on their ink and unslanted (bright strokes on a dark background, such as digits). Default: on (IR-MNIST).", rich_help_panel=_TRAINING)] = None,
    residual_weight: Annotated[Optional[float], typer.Option(help="With the region memory: the weight w of the residual in a soft intersection, (residual/α)^w · (odds(1−O)/odds(1−ζ))^(1−w), where both parts rank; 0 or unset: their minimum (Eq. 4's mask exactly). Default: 0.2 (IR-MNIST), 0 elsewhere.", rich_help_panel=_TRAINING)] = None,
    frame_score: Annotated[Optional[str], typer.Option(help="How a frame's score comes from its blocks: 'peak', the largest value (fires exactly when the mask is not empty; one irregular object per frame, as in video), or 'evidence', what every block holds above a quarter of the mask's level, summed (several irregular regions per image). Default: peak (video), evidence (IR-MNIST).", rich_help_panel=_TRAINING)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs. Default: 6 (video), 5 (IR-MNIST).", rich_help_panel=_TRAINING)] = None,
    batch_size: Annotated[int, typer.Option(help="Frames per batch (paper: 16).", rich_help_panel=_TRAINING)] = 16,
    optimizer: Annotated[str, typer.Option(help="'adam', or 'sgd' (paper; with lr 0.002, momentum 0.9 D stayed at 2·ln 2 here).", rich_help_panel=_TRAINING)] = "adam",
    lr: Annotated[float, typer.Option(help="Learning rate of I and D (paper: 0.002 with SGD).", rich_help_panel=_TRAINING)] = 0.001,
    momentum: Annotated[float, typer.Option(help="SGD momentum (paper: 0.9) or Adam's beta1.", rich_help_panel=_TRAINING)] = 0.5,
    gamma: Annotated[float, typer.Option(help="γ, scale of the Gaussian noise on I's input (normalized units).", rich_help_panel=_TRAINING)] = 0.4,
    lam: Annotated[float, typer.Option(help="λ of ‖X − I(X̃)‖² (0 drops the term, as the authors' code).", rich_help_panel=_TRAINING)] = 0.4,
    predict_newest: Annotated[bool, typer.Option(help="Video: hide the newest frame from I so its residual is a prediction error.", rich_help_panel=_TRAINING)] = True,
    irregularities: Annotated[bool, typer.Option(help="Train with synthetic irregularities made from the normal data.", rich_help_panel=_TRAINING)] = True,
    irregular_kinds: Annotated[str, typer.Option(help="Comma-separated kinds of synthetic irregularity: video 'fast' (a region's frames 2–3× further apart), 'reverse' (time backwards), 'foreign' (a region from another frame and place); images 'flip', 'foreign' (defaults), 'chimera', 'erase', 'warp'. Empty: the data's defaults.", rich_help_panel=_TRAINING)] = "",
    false_alarm_rate: Annotated[float, typer.Option(help="Target fraction of held-out normal frames that fire (score >= 1).")] = 0.01,
    devices: Annotated[int, typer.Option(help="Processes to train in (torchrun; one per GPU with NCCL, else gloo on the CPU). Results equal one process on the same global batch.", rich_help_panel=_TRAINING)] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (training is deterministic on CPU; IR-MNIST: also the grids).")] = 0,
) -> None:
    """Train AVID (U-Net inpainter I + FCN detector D) on normal video or images; calibrate α and ζ."""
    _relaunch_on_devices(devices)
    from occ.runtime.datasets import DatasetError
    from occ.runtime.datasets.irmnist import IrMnistSpec
    from occ.runtime.datasets.spec import load_video_data
    from occ.train.train_avid import AvidConfig, image_data, irmnist_config, train_avid, video_data

    chosen = {name: value for name, value in dict(
        height=height, width=width, base_width=base_width, depth=depth, skip_connections=skip_connections,
        code_channels=code_channels, residual_kernel=residual_kernel, region_memory=region_memory,
        region_alignment=region_alignment, frame_score=frame_score, epochs=epochs).items()
        if value is not None}
    if residual_weight is not None:  # 0 on the command line: the minimum
        chosen["residual_weight"] = residual_weight or None
    common = dict(batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum, gamma=gamma, lam=lam,
                  predict_newest=predict_newest, irregularities=irregularities, false_alarm_rate=false_alarm_rate, seed=seed,
                  irregular_kinds=_comma_list(irregular_kinds) or None)
    try:
        if data.startswith(IrMnistSpec.PREFIX):
            spec = IrMnistSpec.parse(data)
            config = irmnist_config(**common, **chosen)
            spec.check_size(config.height, config.width)
            prepared = image_data(spec.build(seed).train, config, spec.description())
        else:
            config = AvidConfig(**common, **chosen)
            video = load_video_data(data, splits=("train",))
            prepared = video_data(video.train, config, video.description)
        manifest = train_avid(prepared, config, out, console)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    if manifest is None:  # a torchrun rank other than 0
        return
    console.print(f"wrote {out}: alpha = {manifest.threshold('alpha'):.4f}, zeta = {manifest.threshold('zeta'):.4f}")


# ---- demo ---------------------------------------------------------------------------------------
@app.command("demo")
def demo_command(
    workdir: Annotated[Path, typer.Option(help="Folder for the data, checkpoints, models and reports.")] = Path("runs/demo"),
    alocc_epochs: Annotated[int, typer.Option(help="ALOCC training epochs.")] = 4,
    avid_epochs: Annotated[int, typer.Option(help="AVID training epochs.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the data and of training.")] = 0,
) -> None:
    """The main job on built-in data: walkway → train ALOCC and AVID → export → run → evaluate."""
    import time

    from occ.export.onnx_export import export_onnx
    from occ.runtime.datasets import WalkwayConfig, generate_walkway, write_ucsd_layout
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.detector import Detector
    from occ.runtime.evaluate import report, score_clips
    from occ.runtime.overlay import OverlayWriter
    from occ.train.train_alocc import AloccConfig, train_alocc
    from occ.train.train_alocc import video_data as alocc_video
    from occ.train.train_avid import AvidConfig, train_avid
    from occ.train.train_avid import video_data as avid_video

    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    config = WalkwayConfig(seed=seed)
    data_dir = write_ucsd_layout(generate_walkway(config), workdir / "walkway")
    console.rule("1. data")
    console.print(f"synthetic walkway {config.height}x{config.width}: {config.train_clips} normal training clips, "
                  f"{config.test_clips} test clips (car, fast, against_flow) → {data_dir}", highlight=False)
    video = load_video_data(str(data_dir))
    rows = []
    jobs = [
        ("alocc", AloccConfig(epochs=alocc_epochs, seed=seed), alocc_video, train_alocc),
        ("avid", AvidConfig(epochs=avid_epochs, seed=seed), avid_video, train_avid),
    ]
    for method, method_config, prepare, train in jobs:
        console.rule(f"2. {method}: train (small built-in sizes for a 2-core CPU)")
        t0 = time.monotonic()
        checkpoint = workdir / f"{method}.pt"
        train(prepare(video.train, method_config, video.description), method_config, checkpoint, console)
        train_seconds = time.monotonic() - t0
        console.rule(f"3. {method}: export and verify")
        result = export_onnx(checkpoint)
        for line in result.report:
            console.print("  " + line, highlight=False, markup=False)
        console.rule(f"4. {method}: run the exported model through the runtime and evaluate")
        detector = Detector.open(str(result.path))
        clips = score_clips(detector, video.test)
        metrics = report(clips)
        (workdir / f"{method}_eval.json").write_text(json.dumps(metrics, indent=2))
        overlay_path = workdir / f"{method}_overlay_{video.test[0].name}.avi"
        writer = OverlayWriter(overlay_path, detector.manifest)
        detector.reset()
        for frame in video.test[0].frames:
            writer.write(frame, detector.process(frame))
        writer.close()
        raw = metrics["frame_level"]["raw"]
        rows.append({
            "method": method,
            "micro AUC": f"{raw['micro_auc']:.3f}",
            "macro AUC": f"{raw['macro_auc']:.3f}",
            "EER": f"{raw['eer']:.1%}",
            "pixel EER": f"{metrics['pixel_level']['eer']:.1%}" if "eer" in metrics.get("pixel_level", {}) else "n/a",
            "TPR/FPR at threshold": f"{metrics['at_stored_threshold']['true_positive_rate']:.2f} / "
                                    f"{metrics['at_stored_threshold']['false_positive_rate']:.2f}",
            "train s": f"{train_seconds:.0f}",
        })
        console.print("  per clip AUC: " + ", ".join(f"{c['clip']} {c['auc']:.3f}" for c in metrics["per_clip"]), highlight=False)
        console.print(f"  overlay video of {video.test[0].name}: {overlay_path}", highlight=False)
    table = Table(title=f"occ demo on the synthetic walkway (exported ONNX models, ONNX Runtime CPU), {time.monotonic() - started:.0f} s")
    for key in rows[0]:
        table.add_column(key)
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    console.print("frame-level metrics pool all test frames, raw scores (no smoothing, no per-video normalization); "
                  "pixel level: 40 % rule of Mahadevan et al.", highlight=False)


@app.command("calibrate")
def calibrate_command(
    model: Annotated[Path, typer.Argument(help="Exported model (.onnx); its embedded manifest and <model>.onnx.json are updated.")],
    data: Annotated[str, typer.Option(help="New normal data: a UCSD-layout folder (its Train clips), a video file, an image folder, or a live source (/dev/videoN, URL, GStreamer pipeline).")],
    minutes: Annotated[float, typer.Option(help="Live sources: minutes of footage to collect.")] = 5.0,
    false_alarm_rate: Annotated[float, typer.Option(help="Target false-alarm rate on this normal data.")] = 0.01,
    backend: Annotated[str, typer.Option(help="Inference backend: ort-cpu, ort-cuda, or tensorrt for an .engine.")] = "ort-cpu",
) -> None:
    """Recompute thresholds (ALOCC tau; AVID alpha, zeta) on new normal data; old values go to the history."""
    import time

    import numpy as np

    from occ.runtime.calibrate import calibrate, write_manifest
    from occ.runtime.datasets import Clip, DatasetError
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.sources import is_live, open_source

    detector = _open_detector(model, backend)
    try:
        path = Path(data)
        if is_live(data) or path.is_file() or (path.is_dir() and not (path / "Train").is_dir() and not any(p.is_dir() for p in path.iterdir())):
            frames, deadline = [], time.monotonic() + minutes * 60
            from rich.progress import Progress

            with Progress(console=err_console, transient=True) as progress:
                task = progress.add_task(f"collecting normal frames from {data}", total=None)
                with open_source(data) as source:
                    for frame in source:
                        frames.append(frame.image)
                        progress.advance(task)
                        if source.live and time.monotonic() > deadline:
                            break
            if not frames:
                fail(f"{data}: no frames collected")
            clips = [Clip(name=path.name or data, frames=np.stack(frames), labels=np.zeros(len(frames), bool))]
        else:
            clips = load_video_data(data, splits=("train",)).train
        manifest = calibrate(detector, clips, false_alarm_rate, f"{data} (normal, {sum(len(c) for c in clips)} frames)")
        detector.close()
        write_manifest(model, manifest)
    except (DatasetError, RuntimeError) as exc:
        fail(str(exc))
    for name, threshold in manifest.thresholds.items():
        console.print(f"{name} = {threshold.value:.5g} ({threshold.method}; {threshold.n_samples} samples)", highlight=False)
    console.print(f"updated {model} and {model}.json (previous values kept in threshold_history)")
