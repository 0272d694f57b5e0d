"""Adversarial training of AVID's inpainter I and detector D on normal frames only.

I sees ``X + γ·N(0, 1)`` (γ = 0.4, 'hard' noise) and is trained to make D call every region of
its output normal (Eq. 3), plus the optional ``λ‖X − I(X̃)‖²`` term; D learns to score regions
of X as normal and regions of I(X̃) as inpainted. On a normal-only validation split θ_I is kept
where ``‖X − I(X)‖²`` is lowest and θ_D where D best separates real from inpainted.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from occ import __version__
from occ.runtime.datasets.common import Clip
from occ.runtime.manifest import InputSpec, Manifest, RegionSpec
from occ.runtime.scoring import calibrate_avid_thresholds
from occ.runtime.preprocess import normalize, preprocess_clip

from .avid import AvidGraph, create_avid
from .common import CollapseMonitor, batches, evaluate_in_batches, make_optimizer, progress_bar, save_checkpoint, seed_everything, squared_error


@dataclass
class AvidConfig:
    """Every knob of AVID training, with the defaults used by ``occ train avid``."""

    height: int = 64
    width: int = 96
    base_width: int = 16
    depth: int = 3
    epochs: int = 6
    batch_size: int = 16
    optimizer: str = "sgd"
    lr: float = 0.002
    momentum: float = 0.9
    gamma: float = 0.4
    lam: float = 0.4
    residual_kernel: int = 3
    val_fraction: float = 0.2
    max_train_frames: int | None = 4000
    false_alarm_rate: float = 0.01
    pixel_quantile: float = 0.999
    region_quantile: float = 0.99
    seed: int = 0


@dataclass
class AvidData:
    spec: InputSpec
    train: np.ndarray  # (N, C, H, W)
    val: np.ndarray  # (M, C, H, W) held-out normal frames
    description: str
    summary: dict[str, Any] = field(default_factory=dict)


def video_data(clips: list[Clip], config: AvidConfig, description: str) -> AvidData:
    """Temporal triplets of normal clips; the last clips (``val_fraction``) are held out."""
    spec = InputSpec(height=config.height, width=config.width, channels=3, temporal="avid_triplet")
    per_clip = [preprocess_clip(clip.frames, spec) for clip in clips]
    if len(per_clip) >= 2:
        n_val = max(1, round(config.val_fraction * len(per_clip)))
        train, val = np.concatenate(per_clip[:-n_val]), np.concatenate(per_clip[-n_val:])
        val_names = [c.name for c in clips[-n_val:]]
    else:
        cut = int(len(per_clip[0]) * (1 - config.val_fraction))
        train, val = per_clip[0][:cut], per_clip[0][cut:]
        val_names = [f"{clips[0].name}[{cut}:]"]
    if config.max_train_frames and len(train) > config.max_train_frames:
        train = train[np.sort(np.random.default_rng(config.seed).choice(len(train), config.max_train_frames, replace=False))]
    return AvidData(spec=spec, train=train, val=val, description=description,
                    summary={"data": description, "clips": [c.name for c in clips], "validation_clips": val_names,
                             "train_frames": int(len(train))})


def image_data(images: np.ndarray, config: AvidConfig, description: str) -> AvidData:
    """Single-channel images (IR-MNIST grids); ``val_fraction`` held out."""
    spec = InputSpec(height=images.shape[1], width=images.shape[2], channels=1, temporal="none")
    x = normalize(images.astype(np.float32)[:, None], spec)
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_val = max(1, int(config.val_fraction * len(x)))
    return AvidData(spec=spec, train=x[order[n_val:]], val=x[order[:n_val]], description=description,
                    summary={"data": description, "train_images": int(len(x) - n_val), "validation_images": n_val})


def graph_maps(graph: AvidGraph, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual ``(N, H, W)`` and region anomaly ``(N, rows, cols)`` maps."""
    results = evaluate_in_batches(lambda x: (graph.residual(x), graph.region_anomaly(x)), frames, 64)
    return (np.concatenate([r[0].numpy() for r in results]), np.concatenate([r[1].numpy() for r in results]))


def train_avid(data: AvidData, config: AvidConfig, out: str | Path, console: Console | None = None) -> Manifest:
    console = console or Console()
    cell = 2**config.depth
    if data.spec.height % cell or data.spec.width % cell:
        raise ValueError(f"input {data.spec.height}x{data.spec.width} must be a multiple of the {cell}px region cell")
    generator = seed_everything(config.seed)
    channels = data.train.shape[1]
    inpainter, detector = create_avid(channels, config.base_width, config.depth)
    opt_i = make_optimizer(config.optimizer, inpainter.parameters(), config.lr, config.momentum)
    opt_d = make_optimizer(config.optimizer, detector.parameters(), config.lr, config.momentum)
    train = torch.from_numpy(data.train)
    val = torch.from_numpy(data.val[: 256])
    monitor = CollapseMonitor()
    history: list[dict[str, Any]] = []
    best_i: dict[str, Any] | None = None
    best_d: dict[str, Any] | None = None
    started = time.monotonic()

    with progress_bar(console) as progress:
        for epoch in range(1, config.epochs + 1):
            inpainter.train()
            detector.train()
            order = batches(len(train), config.batch_size, generator)
            task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(order))
            d_losses, i_adv, i_rec = [], [], []
            for index in order:
                x = train[index]
                if len(x) < 2:
                    continue
                noisy = x + config.gamma * torch.randn(x.shape, generator=generator)
                with torch.no_grad():
                    fake = inpainter(noisy)
                real_logits, fake_logits = detector(x), detector(fake)
                d_loss = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + \
                    F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                fake = inpainter(noisy)
                logits = detector(fake)
                adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
                rec = squared_error(fake, x) if config.lam > 0 else torch.zeros(())
                loss = adv + config.lam * rec
                opt_i.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(inpainter.parameters(), 10.0)
                opt_i.step()
                d_losses.append(d_loss.item())
                i_adv.append(adv.item())
                i_rec.append(rec.item())
                progress.advance(task)
            progress.remove_task(task)
            val_rec, d_accuracy = _validate(inpainter, detector, val, config, generator)
            record = {"epoch": epoch, "d_loss": float(np.mean(d_losses)), "i_adv_loss": float(np.mean(i_adv)),
                      "train_reconstruction": float(np.mean(i_rec)), "val_reconstruction": val_rec,
                      "d_accuracy": d_accuracy, "seconds": round(time.monotonic() - started, 1)}
            marks = ""
            if best_i is None or val_rec < best_i["value"]:
                best_i = {"epoch": epoch, "value": val_rec, "state": copy.deepcopy(inpainter.state_dict())}
                marks += " I*"
            if best_d is None or d_accuracy > best_d["value"]:
                best_d = {"epoch": epoch, "value": d_accuracy, "state": copy.deepcopy(detector.state_dict())}
                marks += " D*"
            history.append(record)
            console.print(f"epoch {epoch:3d}  D {record['d_loss']:.3f}  I adv {record['i_adv_loss']:.3f}  "
                          f"rec {record['train_reconstruction']:.1f}  val rec/px {val_rec:.4f}  D acc {d_accuracy:.2f}{marks}",
                          highlight=False)
            collapse = monitor.update(epoch, record["d_loss"], float(np.std(d_losses)))
            if collapse:
                console.print(f"[yellow]warning:[/yellow] {collapse}", highlight=False)

    inpainter.load_state_dict(best_i["state"])
    detector.load_state_dict(best_d["state"])
    graph = AvidGraph(inpainter, detector, config.residual_kernel).eval()
    residual, regions = graph_maps(graph, data.val)
    thresholds = calibrate_avid_thresholds(residual, regions, cell, config.false_alarm_rate, f"{data.description} (held-out normal frames)",
                                           config.pixel_quantile, config.region_quantile)
    manifest = Manifest(
        method="avid",
        input=data.spec,
        regions=RegionSpec(cell=cell, rows=data.spec.height // cell, cols=data.spec.width // cell),
        scoring={
            "frame_score": "max over pixels of min(residual / alpha, (1 - O) / (1 - zeta)); decision: score >= 1",
            "residual_kernel": config.residual_kernel,
        },
        training={**data.summary, "config": asdict(config), "selected_epoch_inpainter": best_i["epoch"],
                  "selected_epoch_detector": best_d["epoch"], "collapse_events": monitor.events,
                  "seconds": round(time.monotonic() - started, 1)},
        occ_version=__version__,
    )
    for name, threshold in thresholds.items():
        manifest.set_threshold(name, threshold)
    manifest.validate()
    architecture = {"in_channels": channels, "base_width": config.base_width, "depth": config.depth,
                    "residual_kernel": config.residual_kernel}
    verification = data.val[np.linspace(0, len(data.val) - 1, min(8, len(data.val))).astype(int)]
    save_checkpoint(out, manifest, architecture, {"inpainter": inpainter, "detector": detector}, history,
                    verification_inputs=verification)
    return manifest


def _validate(inpainter, detector, val: torch.Tensor, config: AvidConfig, generator) -> tuple[float, float]:
    inpainter.eval()
    detector.eval()
    with torch.no_grad():
        rec = float(torch.mean((inpainter(val) - val) ** 2))
        noisy = val + config.gamma * torch.randn(val.shape, generator=generator)
        real, fake = detector(val), detector(inpainter(noisy))
        accuracy = float(((real > 0).float().mean() + (fake < 0).float().mean()) / 2)
    return rec, accuracy


def build_graph(architecture: dict[str, Any], state_dicts: dict[str, dict], manifest: Manifest) -> AvidGraph:
    inpainter, detector = create_avid(architecture["in_channels"], architecture["base_width"], architecture["depth"])
    inpainter.load_state_dict(state_dicts["inpainter"])
    detector.load_state_dict(state_dicts["detector"])
    return AvidGraph(inpainter, detector, architecture["residual_kernel"]).eval()
