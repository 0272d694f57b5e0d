"""Adversarial training of ALOCC's R and D on normal data only.

R sees ``X̃ = X + N(0, σ²)`` and is trained with ``L_adv + λ‖X − R(X̃)‖²`` (λ = 0.4); D learns to
tell X from R(X̃). Model selection uses a normal-only validation split: the weights kept are those
with the lowest validation reconstruction error ``‖X − R(X)‖²``; anomalies are never looked at.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from occ.evaluation.datasets.common import Clip, data_name
from occ.runtime.manifest import TEMPORAL_CHANNELS, AloccScoring, InputSpec, Manifest, ManifestError, PatchSpec
from occ.runtime.preprocess import PatchGrid, normalize, preprocess_clip
from occ.runtime.scoring import alocc_frame_scores, alocc_thresholds, location_stats, patch_scores

from .alocc import AloccScorer, create_alocc
from .common import check_recipe, check_sizes, checkpoint_networks, evaluate_in_batches, footage_summary, recipe_config, squared_error, validation_cuts, validation_names
from .irregularities import MOTION_KINDS, motion_patches
from .loop import AdversarialTraining, Deployment, Selection

SCORES = ("fused", "paper")


@dataclass
class AloccConfig:
    """Every setting of ALOCC training. Start from a named recipe (:func:`alocc_config`); the
    defaults here are the ``video`` recipe. For images (MNIST) the whole image is one patch and
    the geometry comes from the data.

    Args:
        recipe: the recipe these settings came from (``video``, ``images`` or ``paper``).
        height: video: frame height after resize, pixels.
        width: video: frame width after resize, pixels.
        patch_size: video: patch side, pixels.
        stride: video: step between patches, pixels.
        temporal: video: ``frame_diff`` (appearance and signed motion) or ``none``.
        base_width: channels of the first layer of R and D; each next layer doubles it.
        depth: stride-2 layers per network.
        bottleneck: size of a linear code between R's encoder and decoder (0: none, as the paper).
        epochs: most epochs; the weights kept are the epoch with the lowest validation reconstruction error.
        batch_size: patches per batch.
        lr: learning rate of R and D (Adam).
        momentum: Adam's β1.
        noise_sigma: σ of the Gaussian noise on R's input (normalized units).
        lam: λ, the weight of ‖X − R(X̃)‖².
        val_fraction: share of each normal clip (its last frames) or of the images held out for model selection and τ.
        max_train_patches: most training patches drawn (None: all).
        false_alarm_rate: share of held-out normal frames above τ; 0 puts τ at the largest of them
            (the video recipe: on Ped2's held-out training clips the 1 % quantile gave about three
            times the false alarms, at the same events caught; docs/accuracy-log.md, 2026-12-07).
        score: ``fused`` (``d_weight`` · z(−D(R(X))) + z(‖X − R(X)‖²), each normalized per patch
            location on normal frames) or ``paper`` (−D(R(X)) alone, raw).
        d_weight: the weight of D(R(X)) in the fused score.
        irregular_weight: video with ``frame_diff``: weight of synthetic irregular patches made
            from the normal clips (D learns them as not normal, R to restore them); 0: none.
        irregular_patches: how many synthetic irregular patches are made.
        seed: random seed (training is deterministic on the CPU).
    """

    recipe: str = "video"
    height: int = 60
    width: int = 90
    patch_size: int = 20
    stride: int = 10
    temporal: str = "frame_diff"
    base_width: int = 32
    depth: int = 3
    bottleneck: int = 0
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-4
    momentum: float = 0.5
    noise_sigma: float = 0.155
    lam: float = 0.4
    val_fraction: float = 0.2
    max_train_patches: int | None = 60000
    false_alarm_rate: float = 0.0
    score: str = "fused"
    d_weight: float = 0.25
    irregular_weight: float = 2.0
    irregular_patches: int = 20000
    seed: int = 0


# What each recipe changes from the video recipe's defaults (docs/methods.md says why).
ALOCC_RECIPES: dict[str, dict[str, Any]] = {
    "video": {},
    # a linear code in R stops it reconstructing any digit (MNIST mean AUC 0.74 → 0.96)
    "images": dict(temporal="none", base_width=16, depth=3, bottleneck=16, epochs=15, val_fraction=0.1, irregular_weight=0.0,
                   false_alarm_rate=0.01),
    # as published: the paper's widths, −D(R(X)) as the score, no synthetic irregularities
    "paper": dict(temporal="none", base_width=64, depth=4, score="paper", irregular_weight=0.0, false_alarm_rate=0.01),
}


def alocc_config(recipe: str = "video", **settings: Any) -> AloccConfig:
    """The recipe's configuration with ``settings`` changed (names of :class:`AloccConfig` fields)."""
    return recipe_config(AloccConfig, ALOCC_RECIPES, "ALOCC", recipe, settings)


def check_config(config: AloccConfig, kind: str) -> None:
    """Refuse settings that do not fit together or do not fit the data (``video`` or ``images``), in one line."""
    check_recipe(config.recipe, ALOCC_RECIPES, "ALOCC", kind)
    if config.temporal not in ("none", "frame_diff"):
        raise ValueError(f"ALOCC temporal rule must be 'none' or 'frame_diff', got {config.temporal!r}")
    if config.score not in SCORES:
        raise ValueError(f"ALOCC score must be one of {', '.join(SCORES)}, got {config.score!r}")
    check_sizes(config, "ALOCC")


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


def video_data(clips: list[Clip], config: AloccConfig, description: str, dataset: dict[str, Any] | None = None,
               validation: list[Clip] | None = None) -> AloccData:
    """Patches from normal clips; ``validation`` clips (footage's validation part) are held out, or
    else the last ``val_fraction`` of every clip (its tail)."""
    check_config(config, "video")
    spec = InputSpec(height=config.height, width=config.width, channels=TEMPORAL_CHANNELS[config.temporal], temporal=config.temporal)
    patch_spec = PatchSpec(size=config.patch_size, stride=config.stride)
    try:
        patch_spec.validate(spec)
    except ManifestError as exc:
        raise ValueError(str(exc)) from None
    grid = PatchGrid.from_spec(patch_spec, spec)
    if validation:
        clips = [*clips, *validation]
    stacked = [preprocess_clip(clip.frames, spec) for clip in clips]
    per_clip = [grid.extract_clip(frames) for frames in stacked]
    if validation:
        n_val = len(validation)
        train_frames, val_frames = np.concatenate(per_clip[:-n_val]), np.concatenate(per_clip[-n_val:])
        train_stacked = stacked[:-n_val]
        val_names = [c.name for c in clips[-n_val:]]
    else:
        lengths = [len(frames) for frames in per_clip]
        cuts = validation_cuts(lengths, config.val_fraction)
        train_frames = np.concatenate([frames[:cut] for frames, cut in zip(per_clip, cuts)])
        val_frames = np.concatenate([frames[cut:] for frames, cut in zip(per_clip, cuts)])
        train_stacked = [frames[:cut] for frames, cut in zip(stacked, cuts)]
        val_names = validation_names([c.name for c in clips], lengths, cuts)
    train = train_frames.reshape(-1, *train_frames.shape[2:])
    rng = np.random.default_rng(config.seed)
    if config.max_train_patches and len(train) > config.max_train_patches:
        train = train[np.sort(rng.choice(len(train), config.max_train_patches, replace=False))]
    irregular = irregular_clean = None
    if config.irregular_weight > 0 and config.temporal == "frame_diff":  # they change the motion channel
        per_clip_count = -(-config.irregular_patches // len(train_stacked))
        made = [motion_patches(frames, grid, per_clip_count, rng, MOTION_KINDS) for frames in train_stacked]
        irregular = np.concatenate([m[0] for m in made])
        irregular_clean = np.concatenate([m[1] for m in made])
        if not len(irregular):
            raise ValueError(f"{description}: no motion in the training clips to make synthetic irregularities from")
    return AloccData(
        spec=spec, patches=patch_spec, train=train, train_frames=train_frames, val_frames=val_frames,
        description=data_name(description),
        summary={**footage_summary(clips, description, dataset, val_names), "train_patches": int(len(train)), "patches_per_frame": grid.count,
                 "irregular_patches": 0 if irregular is None else int(len(irregular))},
        irregular=irregular, irregular_clean=irregular_clean,
    )


def image_data(images: np.ndarray, config: AloccConfig, description: str, dataset: dict[str, Any] | None = None) -> AloccData:
    """Whole images (e.g. one MNIST digit class) as single patches; ``val_fraction`` held out."""
    check_config(config, "images")
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
        description=description, summary={"data": description, "dataset": dataset or {"kind": "images"},
                                          "train_images": int(len(train)), "validation_images": n_val},
    )


def graph_outputs(scorer: AloccScorer, frames: np.ndarray) -> dict[str, np.ndarray]:
    """``(F, P, C, s, s)`` → the graph's outputs as ``(F, P)`` arrays."""
    flat = frames.reshape(-1, *frames.shape[2:])
    results = evaluate_in_batches(scorer, flat)
    return {name: np.concatenate([r[i].numpy() for r in results]).reshape(frames.shape[:2])
            for i, name in enumerate(scorer.output_names())}


def frame_scores(scorer: AloccScorer, frames: np.ndarray, scoring: AloccScoring) -> np.ndarray:
    """Frame scores exactly as the runtime computes them from the graph's outputs."""
    return alocc_frame_scores(patch_scores(graph_outputs(scorer, frames), scoring))


def alocc_scoring(config: AloccConfig, scorer: AloccScorer, normal_frames: np.ndarray) -> AloccScoring:
    """The scoring contract a configuration deploys, with its statistics from ``normal_frames``."""
    if config.score == "paper":
        return AloccScoring(terms={"score": 1.0})
    # D(R(X)) stays in the score at 0.25: every larger weight measured lower AUC on the walkway and
    # on Ped2 (docs/accuracy.md). Per-location statistics of normal outputs (one location for whole
    # images) put both terms on one scale and make scoring scene-aware.
    terms = {"score": config.d_weight, "reconstruction_error": 1.0}
    outputs = graph_outputs(scorer, normal_frames[:: max(1, len(normal_frames) // 300)])
    # 0.1 logits: below that D(R(X)) differences mean nothing (trained D's vary by 0.1–0.6)
    floors = {"score": 0.1}
    return AloccScoring(terms=terms, location_stats={name: location_stats(outputs[name], floors.get(name, 0.0)) for name in terms})


def train_alocc(data: AloccData, config: AloccConfig, out: str | Path, console: Console | None = None) -> Manifest | None:
    """Train R and D, calibrate the threshold on held-out normal frames, write the checkpoint
    (:class:`~occ.train.loop.AdversarialTraining`).

    Returns:
        The manifest written into the checkpoint (None on torchrun ranks other than 0).
    """
    return AloccTraining(config, data, console).fit(out)


class AloccTraining(AdversarialTraining):
    """ALOCC's hooks: R's and D's steps, the validation reconstruction error, τ on frame scores."""

    method = "alocc"
    losses = ("d_loss", "r_adv_loss", "train_reconstruction")

    def __init__(self, config: AloccConfig, data: AloccData, console: Console | None = None):
        super().__init__(config, data, console)
        self.selections = [Selection(("reconstructor", "discriminator"), "val_reconstruction", "selected_epoch")]
        self.train = torch.from_numpy(data.train)
        self.irregular = None  # video_data never makes an empty pool
        if config.irregular_weight > 0 and data.irregular is not None:
            self.irregular, self.irregular_clean = torch.from_numpy(data.irregular), torch.from_numpy(data.irregular_clean)
        val_patches = data.val_frames.reshape(-1, *data.val_frames.shape[2:])
        self.val_patches = val_patches[np.random.default_rng(config.seed).permutation(len(val_patches))[:4096]]

    def architecture(self) -> dict[str, Any]:
        return {"in_channels": self.data.train.shape[1], "patch_size": self.data.patches.size, "base_width": self.config.base_width,
                "depth": self.config.depth, "bottleneck": self.config.bottleneck}

    def build(self) -> dict[str, nn.Module]:
        return dict(zip(("reconstructor", "discriminator"), create_alocc(**self.architecture())))

    def step(self, index: torch.Tensor) -> tuple[dict[str, float], float]:
        config, ddp, generator = self.config, self.ddp, self.generator
        reconstructor, discriminator = self.networks["reconstructor"], self.networks["discriminator"]
        batch = self.train[index]
        # the global batch's noise, drawn identically in every process, then sharded
        noisy_batch = batch + config.noise_sigma * torch.randn(batch.shape, generator=generator)
        x, noisy = ddp.shard(batch), ddp.shard(noisy_batch)
        weight = ddp.loss_weight(len(x), len(batch))
        if self.irregular is not None:
            picked = torch.randint(len(self.irregular), (len(batch),), generator=generator)
            odd_batch = self.irregular[picked]
            noisy_odd_batch = odd_batch + config.noise_sigma * torch.randn(batch.shape, generator=generator)
            odd, odd_noisy, odd_clean = ddp.shard(odd_batch), ddp.shard(noisy_odd_batch), ddp.shard(self.irregular_clean[picked])
        ones, zeros = torch.ones(len(x), device=ddp.device), torch.zeros(len(x), device=ddp.device)
        with torch.no_grad(), ddp.autocast():
            fake = reconstructor(noisy)
        with ddp.autocast():
            d_loss = F.binary_cross_entropy_with_logits(discriminator(x), ones) + F.binary_cross_entropy_with_logits(discriminator(fake), zeros)
            if self.irregular is not None:
                d_loss = d_loss + config.irregular_weight * F.binary_cross_entropy_with_logits(discriminator(odd), zeros)
        self.update("discriminator", d_loss, weight)
        with ddp.autocast():
            fake = reconstructor(noisy)
            adv = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
            rec = squared_error(fake.float(), x)
            r_loss = adv + config.lam * rec
            if self.irregular is not None:
                r_loss = r_loss + config.irregular_weight * config.lam * squared_error(reconstructor(odd_noisy).float(), odd_clean)
        self.update("reconstructor", r_loss, weight)
        losses = self.global_means({"d_loss": d_loss, "r_adv_loss": adv, "train_reconstruction": rec}, len(x), len(batch))
        return losses, losses["d_loss"]

    def validate(self) -> dict[str, float]:
        reconstructor, discriminator = self.networks["reconstructor"].eval(), self.networks["discriminator"].eval()
        device = next(reconstructor.parameters()).device
        errors, correct, total = [], 0, 0
        with torch.no_grad():
            for start in range(0, len(self.val_patches), 512):
                x = torch.from_numpy(self.val_patches[start : start + 512])
                noisy = (x + self.config.noise_sigma * torch.randn(x.shape, generator=self.generator)).to(device)
                x = x.to(device)
                errors.append(torch.mean((x - reconstructor(x)) ** 2, dim=(1, 2, 3)).cpu())
                correct += int((discriminator(x) > 0).sum()) + int((discriminator(reconstructor(noisy)) < 0).sum())
                total += 2 * len(x)
        return {"val_reconstruction": float(torch.cat(errors).mean()), "d_accuracy": correct / total}

    def epoch_line(self, record: dict[str, Any]) -> str:
        return (f"epoch {record['epoch']:3d}  D {record['d_loss']:.3f}  R adv {record['r_adv_loss']:.3f}  "
                f"rec {record['train_reconstruction']:.2f}  val rec {record['val_reconstruction']:.4f}  D acc {record['d_accuracy']:.2f}")

    def deploy(self, networks: dict[str, nn.Module]) -> Deployment:
        data = self.data
        scorer = AloccScorer(networks["reconstructor"], networks["discriminator"]).eval()
        scoring = alocc_scoring(self.config, scorer, data.train_frames)
        thresholds = alocc_thresholds(frame_scores(scorer, data.val_frames, scoring), self.config.false_alarm_rate, self.calibration_data)
        return Deployment({"patches": data.patches, "scoring": scoring}, thresholds, self.architecture(), networks, data.val_frames)

    def run_record(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        return {"epochs_run": len(history)}


def build_scorer(architecture: dict[str, Any], state_dicts: dict[str, dict], where: str = "checkpoint") -> AloccScorer:
    """The deployed graph of a checkpoint's networks."""
    networks = checkpoint_networks(lambda: create_alocc(**architecture), ("reconstructor", "discriminator"), state_dicts, "ALOCC", where)
    return AloccScorer(*networks).eval()
