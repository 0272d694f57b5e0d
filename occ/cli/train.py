"""``occ train alocc|avid``: a recipe on normal data → a checkpoint with its thresholds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from occ.train.openmp import let_idle_workers_spin_briefly

from .common import OneLineGroup, SplitOption, console, err_console, fail, one_line_errors, table

app = typer.Typer(help="Train a detector on normal data (needs the train extra: pip install 'occ[train]').", no_args_is_help=True,
                  cls=OneLineGroup)

GEOMETRY = "Geometry and size (default: the recipe's)"
RUN = "Run"

Recipe = Annotated[Optional[str], typer.Option(help="Named recipe: 'video' (walkway, UCSD), 'images' (MNIST, IR-MNIST) or "
                                                    "'paper' (as published, for comparison). Default: the data's kind. "
                                                    "docs/methods.md describes each.")]
Out = Annotated[Path, typer.Option(help="Checkpoint to write (.pt); its folder must be writable.")]
Epochs = Annotated[Optional[int], typer.Option(min=1, help="Training epochs. Default: the recipe's.", rich_help_panel=RUN)]
BatchSize = Annotated[Optional[int], typer.Option(min=2, help="Samples per batch. Default: the recipe's.", rich_help_panel=RUN)]
BaseWidth = Annotated[Optional[int], typer.Option(min=1, help="Channels of the first layer (each level down doubles them). "
                                                             "Default: the recipe's.", rich_help_panel=GEOMETRY)]
FalseAlarms = Annotated[Optional[float], typer.Option(
    min=0.0, max=0.5, help="Share of held-out normal frames that fire at the stored thresholds; 0 puts ALOCC's τ or AVID's α "
    "at the largest of them. Default: the recipe's (ALOCC video 0; otherwise 0.01).")]
Devices = Annotated[int, typer.Option(min=1, help="Processes to train in (torchrun: one per GPU with NCCL, else gloo on the CPU); "
                                                 "results equal one process on the same global batch.", rich_help_panel=RUN)]
Seed = Annotated[int, typer.Option(help="Random seed (training is deterministic on the CPU; IR-MNIST: also the grids).", rich_help_panel=RUN)]


def _settings(**values: Any) -> dict[str, Any]:
    """The options given on the command line (None: keep the recipe's)."""
    return {name: value for name, value in values.items() if value is not None}


def _check_writable(out: Path) -> None:
    """Refuse an output that cannot be written now, not after minutes of training."""
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        fail(f"{out}: is a folder; give the checkpoint's file name")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        fail(f"{out}: folder {folder} does not exist or is not writable")


def _relaunch_on_devices(devices: int) -> None:
    """``--devices N`` (N > 1): run this same command in N processes under torchrun, then exit.

    Inside torchrun (``WORLD_SIZE`` set) it returns and the command trains its shard; rank 0
    writes the checkpoint. GPUs use NCCL when there are N of them, otherwise gloo on the CPU.
    """
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


@app.command("alocc")
def alocc(
    data: Annotated[str, typer.Option(help="Normal training data: footage (an occ data record folder, a video file, 'videos/*.mp4', a "
                                           "folder of videos; split by --split), a UCSD-layout folder, 'walkway[:opts]', or 'mnist:FOLDER' "
                                           "(MNIST IDX files). docs/data.md shows each layout.")],
    out: Out,
    recipe: Recipe = None,
    digit: Annotated[int, typer.Option(min=0, max=9, help="mnist: only: the normal digit.")] = 0,
    height: Annotated[Optional[int], typer.Option(min=8, help="Video: frame height after resize, pixels. Default: the recipe's (60).", rich_help_panel=GEOMETRY)] = None,
    width: Annotated[Optional[int], typer.Option(min=8, help="Video: frame width after resize, pixels. Default: the recipe's (90).", rich_help_panel=GEOMETRY)] = None,
    patch_size: Annotated[Optional[int], typer.Option(min=4, help="Video: patch side, pixels. Default: the recipe's (20).", rich_help_panel=GEOMETRY)] = None,
    stride: Annotated[Optional[int], typer.Option(min=1, help="Video: step between patches, pixels. Default: the recipe's (10).", rich_help_panel=GEOMETRY)] = None,
    base_width: BaseWidth = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    false_alarm_rate: FalseAlarms = None,
    split: SplitOption = "70/10/20",
    devices: Devices = 1,
    seed: Seed = 0,
) -> None:
    """Train ALOCC (reconstructor R + discriminator D) on normal data; τ from held-out normal frames."""
    let_idle_workers_spin_briefly()  # before torch is imported; torchrun's ranks inherit it
    _relaunch_on_devices(devices)
    _check_writable(out)
    from occ.evaluation.datasets.footage import Split
    from occ.train.workflow import train_alocc_from

    with one_line_errors():
        manifest = train_alocc_from(data, out, recipe, digit, console, split=Split.parse(split), seed=seed,
                                    **_settings(height=height, width=width, patch_size=patch_size, stride=stride,
                                                base_width=base_width, epochs=epochs, batch_size=batch_size,
                                                false_alarm_rate=false_alarm_rate))
    if manifest is None:  # a torchrun rank other than 0
        return
    _show_footage_split(manifest)
    tau = manifest.thresholds["tau"]
    where = f"at {tau.target_false_alarm_rate:.1%} false alarms on" if tau.target_false_alarm_rate else "the largest of"
    console.print(f"wrote {out}: tau = {tau.value:.4f}, {where} {tau.n_samples} held-out normal frames", highlight=False)
    _warn_thresholds(manifest)


@app.command("avid")
def avid(
    data: Annotated[str, typer.Option(help="Normal training data: footage (an occ data record folder, a video file, 'videos/*.mp4', a "
                                           "folder of videos; split by --split), a UCSD-layout folder, 'walkway[:opts]', or "
                                           "'irmnist:FOLDER[:grids=5000,digit=3,test_grids=1000]' (IR-MNIST grids from the MNIST "
                                           "IDX files in FOLDER). docs/data.md shows each layout.")],
    out: Out,
    recipe: Recipe = None,
    height: Annotated[Optional[int], typer.Option(min=8, help="Input height after resize, pixels, a multiple of the region cell. "
                                                             "Default: the recipe's (video 64, images 176).", rich_help_panel=GEOMETRY)] = None,
    width: Annotated[Optional[int], typer.Option(min=8, help="Input width after resize, pixels, a multiple of the region cell. "
                                                            "Default: the recipe's (video 96, images 176).", rich_help_panel=GEOMETRY)] = None,
    base_width: BaseWidth = None,
    region_memory: Annotated[Optional[int], typer.Option(min=1, help="Images recipe: the most normal training regions the region "
                                                                     "memory keeps (bank size, about 1 KB each). Default: 60000.",
                                                         rich_help_panel=GEOMETRY)] = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    false_alarm_rate: FalseAlarms = None,
    split: SplitOption = "70/10/20",
    devices: Devices = 1,
    seed: Seed = 0,
) -> None:
    """Train AVID (U-Net inpainter I + fully convolutional detector D) on normal video or images; α and ζ from held-out normal frames."""
    let_idle_workers_spin_briefly()  # before torch is imported; torchrun's ranks inherit it
    _relaunch_on_devices(devices)
    _check_writable(out)
    from occ.evaluation.datasets.footage import Split
    from occ.train.workflow import train_avid_from

    with one_line_errors():
        manifest = train_avid_from(data, out, recipe, console, split=Split.parse(split), seed=seed,
                                   **_settings(height=height, width=width, base_width=base_width, region_memory=region_memory,
                                               epochs=epochs, batch_size=batch_size, false_alarm_rate=false_alarm_rate))
    if manifest is None:
        return
    _show_footage_split(manifest)
    console.print(f"wrote {out}: alpha = {manifest.threshold('alpha'):.4f}, zeta = {manifest.threshold('zeta'):.4f}", highlight=False)
    _warn_thresholds(manifest)


def _show_footage_split(manifest: Any) -> None:
    """Which minutes of which file went to training, validation and calibration (footage only)."""
    dataset = manifest.training.get("dataset") or {}
    if dataset.get("kind") == "footage":
        table(f"{dataset['spec']}: split {dataset['split']} % by time (occ calibrate with the same --split uses the calibration part)",
              [{key: row[key] for key in ("part", "file", "from", "to", "frames")} for row in dataset["pieces"]])


def _warn_thresholds(manifest: Any) -> None:
    from occ.runtime.scoring import threshold_warnings

    for warning in threshold_warnings(manifest):
        err_console.print(f"warning: {warning} (occ calibrate MODEL --data FOOTAGE)", highlight=False, markup=False)
