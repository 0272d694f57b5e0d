"""Adversarial training of ALOCC's R and D on normal data only.

R sees ``X̃ = X + N(0, σ²)`` and is trained with ``L_adv + λ‖X − R(X̃)‖²`` (λ = 0.4); D learns to
tell X from R(X̃). Model selection and the stopping rule use a normal-only validation split: the
weights kept are those with the lowest validation reconstruction error ``‖X − R(X)‖²`` (training
stops early once it falls below ρ); anomalies are never looked at.
"""
from __future__ import annotations

import io
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
from occ.runtime.manifest import InputSpec, Manifest, PatchSpec
from occ.runtime.preprocess import PatchGrid, normalize, preprocess_clip
from occ.runtime.scoring import fused_location_scores, location_stats, quantile_threshold, reduce_frame

from .alocc import AloccScorer, create_alocc
from .distributed import Distributed, plain_state_dict
from .irregularities import MOTION_KINDS, motion_patches
from .common import CollapseMonitor, squared_error, batches, evaluate_in_batches, make_optimizer, progress_bar, save_checkpoint, seed_everything


@dataclass
class AloccConfig:
    """Every knob of ALOCC training, with the defaults used by ``occ train alocc``.

    Geometry: frames are resized to ``height``×``width`` and cut into ``patch_size`` patches at
    ``stride``; for image data (MNIST) the whole image is one patch.
    """

    height: int = 60
    width: int = 90
    patch_size: int = 20
    stride: int = 10
    temporal: str = "frame_diff"
    roi: list[int] | None = None
    base_width: int = 32
    depth: int = 3
    bottleneck: int = 0  # linear code size in R (0: none, as the paper); see AloccReconstructor
    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 2e-4
    momentum: float = 0.5
    noise_sigma: float = 0.155
    lam: float = 0.4
    d_steps: int = 1
    r_steps: int = 1
    rho: float = 0.0
    val_fraction: float = 0.2
    max_train_patches: int | None = 60000
    false_alarm_rate: float = 0.01
    scene_stats: bool = True
    fuse_reconstruction: bool = True
    d_weight: float = 0.25
    # Synthetic irregular patches made from the normal clips (video with frame_diff only): D learns
    # them as not normal, R to restore the normal patch. At weight 2: Ped2 dev EER 16.2 -> 13.0 %,
    # walkway AUC 0.892 -> 0.950 (docs/accuracy.md). 0 turns them off.
    irregular_weight: float = 2.0
    irregular_patches: int = 20000
    irregular_kinds: list[str] = field(default_factory=lambda: ["fast", "reverse"])
    seed: int = 0


@dataclass
class AloccData:
    """Training patches and normal held-out frames (each frame = its patches)."""

    spec: InputSpec
    patches: PatchSpec
    train: np.ndarray  # (N, C, s, s)
    train_frames: np.ndarray  # (F, P, C, s, s) frames of the training split, for scene statistics
    val_frames: np.ndarray  # (F, P, C, s, s) held-out normal frames
    description: str
    summary: dict[str, Any] = field(default_factory=dict)
    irregular: np.ndarray | None = None  # (M, C, s, s) synthetic irregular patches, see motion_patches
    irregular_clean: np.ndarray | None = None  # (M, C, s, s) the normal patches they were made from


def video_data(clips: list[Clip], config: AloccConfig, description: str) -> AloccData:
    """Patches from normal clips; the last clips (``val_fraction``) are held out for validation."""
    channels = {"none": 1, "frame_diff": 2}.get(config.temporal)
    if channels is None:
        raise ValueError(f"ALOCC temporal rule must be 'none' or 'frame_diff', got {config.temporal!r}")
    spec = InputSpec(height=config.height, width=config.width, channels=channels, temporal=config.temporal)
    patch_spec = PatchSpec(size=config.patch_size, stride=config.stride, roi=config.roi)
    patch_spec.validate(spec)
    grid = PatchGrid.from_spec(patch_spec, spec)
    stacked = [preprocess_clip(clip.frames, spec) for clip in clips]
    per_clip = [grid.extract_clip(frames) for frames in stacked]
    if len(per_clip) >= 2:
        n_val = max(1, round(config.val_fraction * len(per_clip)))
        train_frames, val_frames = np.concatenate(per_clip[:-n_val]), np.concatenate(per_clip[-n_val:])
        train_stacked = stacked[:-n_val]
        val_names = [c.name for c in clips[-n_val:]]
    else:
        frames = per_clip[0]
        cut = int(len(frames) * (1 - config.val_fraction))
        train_frames, val_frames = frames[:cut], frames[cut:]
        train_stacked = [stacked[0][:cut]]
        val_names = [f"{clips[0].name}[{cut}:]"]
    train = train_frames.reshape(-1, *train_frames.shape[2:])
    rng = np.random.default_rng(config.seed)
    if config.max_train_patches and len(train) > config.max_train_patches:
        train = train[np.sort(rng.choice(len(train), config.max_train_patches, replace=False))]
    irregular = irregular_clean = None
    if config.irregular_weight > 0 and config.temporal == "frame_diff":  # they change the motion channel
        unknown = set(config.irregular_kinds) - set(MOTION_KINDS)
        if unknown:
            raise ValueError(f"unknown ALOCC irregularity kind(s) {sorted(unknown)}; choose from {list(MOTION_KINDS)}")
        per_clip_count = -(-config.irregular_patches // len(train_stacked))
        made = [motion_patches(frames, grid, per_clip_count, rng, tuple(config.irregular_kinds)) for frames in train_stacked]
        irregular = np.concatenate([m[0] for m in made])
        irregular_clean = np.concatenate([m[1] for m in made])
        if not len(irregular):
            raise ValueError(f"{description}: no motion in the training clips to make synthetic irregularities from")
    return AloccData(
        spec=spec, patches=patch_spec, train=train, train_frames=train_frames, val_frames=val_frames,
        description=description,
        summary={"data": description, "clips": [c.name for c in clips], "validation_clips": val_names,
                 "train_patches": int(len(train)), "patches_per_frame": grid.count,
                 "irregular_patches": 0 if irregular is None else int(len(irregular))},
        irregular=irregular, irregular_clean=irregular_clean,
    )


def image_data(images: np.ndarray, config: AloccConfig, description: str) -> AloccData:
    """Whole images (e.g. one MNIST digit class) as single patches; ``val_fraction`` held out."""
    height, width = images.shape[1:3]
    spec = InputSpec(height=height, width=width, channels=1, temporal="none")
    patch_spec = PatchSpec(size=height, stride=height)
    if height != width:
        raise ValueError(f"image data must be square, got {height}x{width}")
    x = normalize(images.astype(np.float32)[:, None], spec)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(x))
    n_val = max(1, int(config.val_fraction * len(x)))
    val, train = x[order[:n_val]], x[order[n_val:]]
    return AloccData(
        spec=spec, patches=patch_spec, train=train, train_frames=train[:, None], val_frames=val[:, None],
        description=description, summary={"data": description, "train_images": int(len(train)), "validation_images": n_val},
    )


def graph_outputs(scorer: AloccScorer, frames: np.ndarray) -> dict[str, np.ndarray]:
    """``(F, P, C, s, s)`` → the graph's outputs as ``(F, P)`` arrays (score, d_of_r, reconstruction_error)."""
    flat = frames.reshape(-1, *frames.shape[2:])
    results = evaluate_in_batches(scorer, flat)
    names = scorer.output_names()
    return {name: np.concatenate([r[i].numpy() for r in results]).reshape(frames.shape[:2])
            for i, name in enumerate(names) if name != "reconstruction"}


def frame_scores(scorer: AloccScorer, frames: np.ndarray, scoring: dict) -> np.ndarray:
    """Frame scores exactly as the runtime computes them from the graph's outputs."""
    return reduce_frame(fused_location_scores(graph_outputs(scorer, frames), scoring))


def train_alocc(data: AloccData, config: AloccConfig, out: str | Path, console: Console | None = None) -> Manifest | None:
    """Train R and D, calibrate the threshold on held-out normal frames, write the checkpoint.

    Under ``torchrun`` every process trains on its shard of each batch (see
    :mod:`occ.train.distributed`); rank 0 calibrates and writes the checkpoint.

    Returns:
        The manifest written into the checkpoint (None on ranks other than 0).
    """
    ddp = Distributed.from_env()
    console = (console or Console()) if ddp.is_main else Console(file=io.StringIO())
    generator = seed_everything(config.seed)
    channels = data.train.shape[1]
    reconstructor, discriminator = create_alocc(channels, data.patches.size, config.base_width, config.depth, config.bottleneck)
    reconstructor, discriminator = ddp.prepare(reconstructor), ddp.prepare(discriminator)
    opt_r = make_optimizer(config.optimizer, reconstructor.parameters(), config.lr, config.momentum)
    opt_d = make_optimizer(config.optimizer, discriminator.parameters(), config.lr, config.momentum)
    train = torch.from_numpy(data.train)
    use_irregular = config.irregular_weight > 0 and data.irregular is not None  # video_data never makes an empty pool
    if use_irregular:
        irregular, irregular_clean = torch.from_numpy(data.irregular), torch.from_numpy(data.irregular_clean)
    val_patches = data.val_frames.reshape(-1, *data.val_frames.shape[2:])
    val_patches = val_patches[np.random.default_rng(config.seed).permutation(len(val_patches))[:4096]]
    monitor = CollapseMonitor()
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    started = time.monotonic()
    ones = lambda n: torch.ones(n, device=ddp.device)  # noqa: E731
    zeros = lambda n: torch.zeros(n, device=ddp.device)  # noqa: E731

    with progress_bar(console) as progress:
        for epoch in range(1, config.epochs + 1):
            reconstructor.train()
            discriminator.train()
            order = batches(len(train), config.batch_size, generator)
            task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(order))
            d_losses, r_adv_losses, rec_losses = [], [], []
            for index in order:
                batch = train[index]
                if len(batch) < 2 * ddp.world:  # batch norm needs two samples
                    continue
                # the global batch's noise, drawn identically in every process, then sharded
                noisy_batch = batch + config.noise_sigma * torch.randn(batch.shape, generator=generator)
                x, noisy = ddp.shard(batch), ddp.shard(noisy_batch)
                weight = ddp.loss_weight(len(x), len(batch))
                if use_irregular:
                    picked = torch.randint(len(irregular), (len(batch),), generator=generator)
                    odd_batch = irregular[picked]
                    noisy_odd_batch = odd_batch + config.noise_sigma * torch.randn(batch.shape, generator=generator)
                    odd, odd_noisy, odd_clean = ddp.shard(odd_batch), ddp.shard(noisy_odd_batch), ddp.shard(irregular_clean[picked])
                for _ in range(config.d_steps):
                    with torch.no_grad(), ddp.autocast():
                        fake = reconstructor(noisy)
                    with ddp.autocast():
                        d_loss = F.binary_cross_entropy_with_logits(discriminator(x), ones(len(x))) + \
                            F.binary_cross_entropy_with_logits(discriminator(fake), zeros(len(x)))
                        if use_irregular:
                            d_loss = d_loss + config.irregular_weight * F.binary_cross_entropy_with_logits(discriminator(odd), zeros(len(odd)))
                    opt_d.zero_grad(set_to_none=True)
                    (d_loss * weight).backward()
                    ddp.average_gradients(discriminator)
                    opt_d.step()
                for _ in range(config.r_steps):
                    with ddp.autocast():
                        fake = reconstructor(noisy)
                        adv = F.binary_cross_entropy_with_logits(discriminator(fake), ones(len(x)))
                        rec = squared_error(fake.float(), x)
                        r_loss = adv + config.lam * rec
                        if use_irregular:
                            restored = reconstructor(odd_noisy).float()
                            r_loss = r_loss + config.irregular_weight * config.lam * squared_error(restored, odd_clean)
                    opt_r.zero_grad(set_to_none=True)
                    (r_loss * weight).backward()
                    ddp.average_gradients(reconstructor)
                    opt_r.step()
                d_losses.append(ddp.global_mean(d_loss.item(), len(x), len(batch)))
                r_adv_losses.append(ddp.global_mean(adv.item(), len(x), len(batch)))
                rec_losses.append(ddp.global_mean(rec.item(), len(x), len(batch)))
                progress.advance(task)
            progress.remove_task(task)

            val = _validate(reconstructor, discriminator, val_patches, config, generator)
            record = {
                "epoch": epoch,
                "d_loss": float(np.mean(d_losses)),
                "r_adv_loss": float(np.mean(r_adv_losses)),
                "train_reconstruction": float(np.mean(rec_losses)),
                **val,
                "seconds": round(time.monotonic() - started, 1),
            }
            collapse = monitor.update(epoch, record["d_loss"], float(np.std(d_losses)))
            improved = best is None or val["val_reconstruction"] < best["val_reconstruction"]
            if improved:
                best = {
                    "epoch": epoch, "val_reconstruction": val["val_reconstruction"],
                    "reconstructor": plain_state_dict(reconstructor),
                    "discriminator": plain_state_dict(discriminator),
                }
            history.append(record)
            console.print(
                f"epoch {epoch:3d}  D {record['d_loss']:.3f}  R adv {record['r_adv_loss']:.3f}  "
                f"rec {record['train_reconstruction']:.2f}  val rec {val['val_reconstruction']:.4f}  "
                f"D acc {val['d_accuracy']:.2f}{'  *' if improved else ''}",
                highlight=False,
            )
            if collapse:
                console.print(f"[yellow]warning:[/yellow] {collapse}", highlight=False)
            if config.rho > 0 and val["val_reconstruction"] < config.rho:
                console.print(f"stopping: validation reconstruction {val['val_reconstruction']:.4f} < ρ = {config.rho}")
                break

    assert best is not None, "no epoch ran"
    if not ddp.is_main:  # rank 0 calibrates and writes the checkpoint
        return None
    # the rest runs on the CPU with plain networks (no synchronised batch norm)
    reconstructor, discriminator = create_alocc(channels, data.patches.size, config.base_width, config.depth, config.bottleneck)
    reconstructor.load_state_dict(best["reconstructor"])
    discriminator.load_state_dict(best["discriminator"])
    reconstructor.eval()
    discriminator.eval()
    scorer = AloccScorer(reconstructor, discriminator).eval()

    # D(R(X)) stays in the score; its weight is 0.25 because every larger weight measured lower
    # AUC on the walkway and on Ped2 (docs/accuracy.md). Without fusion it is the whole score.
    terms = {"score": config.d_weight if config.fuse_reconstruction else 1.0}
    if config.fuse_reconstruction:
        terms["reconstruction_error"] = 1.0
    stats = None
    if config.scene_stats or config.fuse_reconstruction:
        # Per-location statistics of normal outputs (a single location for whole images): they
        # put D(R(X)) and the reconstruction error on one scale and make scoring scene-aware.
        stats_frames = data.train_frames[:: max(1, len(data.train_frames) // 300)]
        outputs = graph_outputs(scorer, stats_frames)
        if not config.scene_stats:
            outputs = {k: v.reshape(-1, 1) for k, v in outputs.items()}
        # 0.1 logits: below that D(R(X)) differences mean nothing (trained D's vary by 0.1–0.6)
        floors = {"score": 0.1}
        stats = {name: location_stats(outputs[name], floors.get(name, 0.0)) for name in terms}
        if not config.scene_stats:  # one global statistic, repeated for every location
            count = data.train_frames.shape[1]
            stats = {name: {k: [v[0]] * count for k, v in s.items()} for name, s in stats.items()}
    scoring = {
        "patch_score": "sum over terms of weight * (output - mean[location]) / std[location]",
        "terms": terms,
        "location_stats": stats,
        "frame_reduce": "max",
    }
    val_scores = frame_scores(scorer, data.val_frames, scoring)
    tau = quantile_threshold(val_scores, config.false_alarm_rate, data=f"{data.description} (held-out normal frames)")

    manifest = Manifest(
        method="alocc",
        input=data.spec,
        patches=data.patches,
        scoring=scoring,
        training={
            **data.summary,
            "config": asdict(config),
            "selected_epoch": best["epoch"],
            "epochs_run": len(history),
            "collapse_events": monitor.events,
            "seconds": round(time.monotonic() - started, 1),
        },
        occ_version=__version__,
    )
    manifest.set_threshold("tau", tau)
    manifest.validate()
    architecture = {"in_channels": channels, "patch_size": data.patches.size, "base_width": config.base_width, "depth": config.depth,
                    "bottleneck": config.bottleneck}
    verification = data.val_frames[np.linspace(0, len(data.val_frames) - 1, min(8, len(data.val_frames))).astype(int)]
    save_checkpoint(out, manifest, architecture, {"reconstructor": reconstructor, "discriminator": discriminator}, history,
                    verification_inputs=verification)
    return manifest


def _validate(reconstructor, discriminator, val_patches: np.ndarray, config: AloccConfig, generator: torch.Generator) -> dict[str, float]:
    reconstructor.eval()
    discriminator.eval()
    device = next(reconstructor.parameters()).device
    errors, correct, total = [], 0, 0
    with torch.no_grad():
        for start in range(0, len(val_patches), 512):
            x = torch.from_numpy(val_patches[start : start + 512])
            noisy = (x + config.noise_sigma * torch.randn(x.shape, generator=generator)).to(device)
            x = x.to(device)
            r = reconstructor(x)
            errors.append(torch.mean((x - r) ** 2, dim=(1, 2, 3)).cpu())
            correct += int((discriminator(x) > 0).sum()) + int((discriminator(reconstructor(noisy)) < 0).sum())
            total += 2 * len(x)
    return {"val_reconstruction": float(torch.cat(errors).mean()), "d_accuracy": correct / total}


def build_scorer(architecture: dict[str, Any], state_dicts: dict[str, dict]) -> AloccScorer:
    reconstructor, discriminator = create_alocc(**architecture)
    reconstructor.load_state_dict(state_dicts["reconstructor"])
    discriminator.load_state_dict(state_dicts["discriminator"])
    return AloccScorer(reconstructor, discriminator).eval()
