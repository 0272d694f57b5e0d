"""Pieces both training loops share: seeding, optimizers, collapse detection, checkpoints, logging."""
from __future__ import annotations

import io
import json
import math
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from occ.evaluation.datasets.common import Clip, data_name
from occ.runtime.files import file_sha256, write_atomic
from occ.runtime.fingerprint import Fingerprint
from occ.runtime.manifest import Manifest

CHECKPOINT_FORMAT = "occ-checkpoint-1"
LN4 = 2 * math.log(2)  # BCE of a discriminator that says 0.5 to both real and fake


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; one line naming the file."""


# The data set's entries that may hold a path or a URL (the rest, such as a split "70/10/20", are not names).
NAMED_KEYS = ("spec", "camera")


def footage_summary(clips: list[Clip], description: str, dataset: dict[str, Any] | None, validation_clips: list[str]) -> dict[str, Any]:
    """The manifest's record of the footage a model was trained on: the data set's name (no
    paths), the fingerprint of every frame given to training, validation clips included
    (``occ calibrate`` refuses those frames), the clips' names and the validation part's."""
    named = {key: data_name(value) if key in NAMED_KEYS and isinstance(value, str) else value for key, value in (dataset or {"kind": "video"}).items()}
    return {"data": data_name(description), "dataset": named,
            "footage": Fingerprint.of(frame for clip in clips for frame in clip.frames).to_dict(), "clips": [c.name for c in clips],
            "validation_clips": validation_clips}


DATA_KINDS = {"video": ("video",), "images": ("images",), "paper": ("video", "images")}


def recipe_config(config_class: type, recipes: dict[str, dict[str, Any]], method: str, recipe: str, settings: dict[str, Any]) -> Any:
    """The recipe's configuration (``config_class``'s defaults changed by ``recipes[recipe]``) with ``settings`` changed."""
    check_recipe(recipe, recipes, method)
    unknown = sorted(set(settings) - {f.name for f in fields(config_class)})
    if unknown:
        raise ValueError(f"unknown {method} setting(s) {unknown}")
    return config_class(**{"recipe": recipe, **recipes[recipe], **settings})


def check_recipe(recipe: str, recipes: dict[str, Any], method: str, kind: str | None = None) -> None:
    """Refuse an unknown recipe, or one that is not for the data's ``kind`` (``video`` or ``images``)."""
    if recipe not in recipes:
        raise ValueError(f"unknown {method} recipe {recipe!r}; recipes: {', '.join(recipes)}")
    if kind is not None and kind not in DATA_KINDS[recipe]:
        raise ValueError(f"the {method} recipe '{recipe}' is for {' and '.join(DATA_KINDS[recipe])}; "
                         f"this data is {kind}: use --recipe {kind}")


def check_sizes(config: Any, method: str, positive: tuple[str, ...] = ("epochs", "base_width", "depth")) -> None:
    """Refuse sizes below one, a batch of fewer than two samples and a false-alarm rate outside [0, 1)."""
    bad = [f"{name} {getattr(config, name)}" for name in positive if getattr(config, name) < 1]
    if bad or config.batch_size < 2:
        raise ValueError(f"{method} needs epochs, base_width and depth >= 1 and batch_size >= 2, got {', '.join(bad) or config.batch_size}")
    if not 0 <= config.false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be in [0, 1), got {config.false_alarm_rate}")


def evenly_spaced(count: int, most: int) -> np.ndarray:
    """Up to ``most`` row numbers spread evenly over ``count`` rows, first and last included."""
    return np.linspace(0, count - 1, min(most, count)).astype(int)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch, ask torch for deterministic kernels; return a batch-order generator."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float) -> torch.optim.Optimizer:
    """``adam`` (betas ``(momentum, 0.999)``, the DCGAN setting at 0.5) or ``sgd`` with momentum."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer must be 'adam' or 'sgd', got {name!r}")


def batches(count: int, batch_size: int, generator: torch.Generator, shuffle: bool = True) -> list[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    return list(order.split(batch_size))


@dataclass
class CollapseMonitor:
    """Flags a discriminator that has won (loss near 0) or gives up (loss stuck at 2·ln 2).

    Args:
        patience: epochs in a row before a collapse is reported.
        low: discriminator loss below this counts as 'D wins'.
        band: distance from 2·ln 2 that counts as 'D confused'.
    """

    patience: int = 3
    low: float = 0.01
    band: float = 0.02
    _wins: int = 0
    _confused: int = 0
    events: list[str] = field(default_factory=list)

    def update(self, epoch: int, d_loss: float, d_loss_std: float) -> str | None:
        self._wins = self._wins + 1 if d_loss < self.low else 0
        stuck = abs(d_loss - LN4) < self.band and d_loss_std < self.band
        self._confused = self._confused + 1 if stuck else 0
        message = None
        if self._wins == self.patience:
            message = f"epoch {epoch}: discriminator collapse (D loss {d_loss:.4f} ≈ 0: D separates everything, R gets no signal)"
        if self._confused == self.patience:
            message = f"epoch {epoch}: discriminator collapse (D loss {d_loss:.4f} ≈ 2·ln2: D cannot tell real from reconstructed)"
        if message:
            self.events.append(message)
        return message


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )


def save_checkpoint(path: str | Path, manifest: Manifest, architecture: dict[str, Any],
                    networks: dict[str, torch.nn.Module], history: list[dict[str, Any]],
                    verification_inputs: np.ndarray | None = None) -> Path:
    """Write a checkpoint that ``torch.load(path, weights_only=True)`` opens: tensors, strings, numbers.

    ``verification_inputs`` are real held-out normal samples that export checks ONNX Runtime on.
    """
    state_dicts = {name: {k: v.detach().cpu() for k, v in net.state_dict().items()} for name, net in networks.items()}
    if verification_inputs is not None:
        state_dicts["verification"] = {"inputs": torch.from_numpy(np.ascontiguousarray(verification_inputs))}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "method": manifest.method,
        "manifest": manifest.to_json(),
        "architecture": json.dumps(architecture),
        "history": json.dumps(history),
        "state_dicts": state_dicts,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(Path(path), buffer.getvalue())


@dataclass
class Checkpoint:
    path: Path
    method: str
    manifest: Manifest
    architecture: dict[str, Any]
    history: list[dict[str, Any]]
    state_dicts: dict[str, dict[str, torch.Tensor]]
    sha256: str


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an occ checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r})")
    missing = [key for key in ("method", "manifest", "architecture", "history", "state_dicts") if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: damaged occ checkpoint, missing {', '.join(missing)}")
    manifest = Manifest.from_json(payload["manifest"], str(path))
    try:
        architecture, history = json.loads(payload["architecture"]), json.loads(payload["history"])
    except (TypeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: damaged occ checkpoint (architecture or history is not JSON)") from None
    checkpoint = Checkpoint(path=path, method=payload["method"], manifest=manifest, architecture=architecture, history=history,
                            state_dicts=payload["state_dicts"], sha256=file_sha256(path))
    _check_parts(checkpoint)
    return checkpoint


# What each method's checkpoint must hold: networks (state dicts) and architecture entries.
PARTS = {"alocc": (("reconstructor", "discriminator"), ("in_channels", "patch_size", "base_width", "depth")),
         "avid": (("inpainter", "detector"), ("in_channels", "base_width", "depth"))}


def _check_parts(checkpoint: Checkpoint) -> None:
    where = checkpoint.path
    if checkpoint.method not in PARTS:
        raise CheckpointError(f"{where}: unknown method {checkpoint.method!r}; occ trains {', '.join(PARTS)}")
    if checkpoint.manifest.method != checkpoint.method:
        raise CheckpointError(f"{where}: the checkpoint says {checkpoint.method} but its manifest says {checkpoint.manifest.method}")
    networks, entries = PARTS[checkpoint.method]
    if not isinstance(checkpoint.state_dicts, dict) or not isinstance(checkpoint.architecture, dict):
        raise CheckpointError(f"{where}: damaged occ checkpoint (state_dicts and architecture must be mappings)")
    absent = [n for n in networks if n not in checkpoint.state_dicts] + [e for e in entries if e not in checkpoint.architecture]
    if absent:
        raise CheckpointError(f"{where}: not a complete {checkpoint.method} checkpoint, missing {', '.join(absent)}")


def checkpoint_networks(build: Callable[[], tuple[torch.nn.Module, ...]], names: tuple[str, ...], state_dicts: dict[str, dict],
                        method: str, where: str) -> tuple[torch.nn.Module, ...]:
    """The networks ``build`` makes from a checkpoint's architecture, with its weights ``state_dicts[name]``."""
    try:
        networks = build()
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: the recorded {method} architecture cannot be built ({exc})") from None
    for name, network in zip(names, networks):
        load_weights(network, state_dicts[name], where)
    return networks


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``module.load_state_dict(state)``, with a mismatch (another architecture's weights) in one line."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((line.strip() for line in first[1:] if line.strip()), first[0] if first else "")
        raise CheckpointError(f"{where}: the weights do not fit the architecture it records ({detail[:160]})") from None


def evaluate_in_batches(fn: Callable[[torch.Tensor], Any], data: np.ndarray, batch_size: int = 512) -> list[Any]:
    """Run ``fn`` under no_grad over ``data`` in batches; return the per-batch results."""
    results = []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            results.append(fn(torch.from_numpy(np.ascontiguousarray(data[start : start + batch_size]))))
    return results


def squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖a − b‖²`` per sample (summed over pixels, as in the paper), averaged over the batch.

    The sum, not the per-pixel mean, is what keeps λ = 0.4 meaningful: with a mean the
    reconstruction term is hundreds of times weaker than the adversarial one and R stops
    reconstructing.
    """
    return ((a - b) ** 2).flatten(1).sum(dim=1).mean()


def validation_cuts(lengths: list[int], fraction: float) -> list[int]:
    """Where each clip's validation tail begins: its last ``fraction`` of frames (at least one).

    Every clip gives its tail, so that validation and the threshold see every scene the training
    footage holds: Ped2's last clips by name are its two calmest (docs/accuracy-log.md, 2026-12-06).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    return [max(1, min(length - 1, int(round(length * (1 - fraction))))) if length > 1 else length for length in lengths]


def validation_names(names: list[str], lengths: list[int], cuts: list[int]) -> list[str]:
    """The manifest's names of the validation tails, ``clip[first:end]``."""
    return [f"{name}[{cut}:{length}]" for name, length, cut in zip(names, lengths, cuts) if cut < length]
