"""Adversarial training of AVID's inpainter I and detector D on normal frames only.

I sees ``X + σ·N(0, 1)`` (``noise_sigma`` σ = 0.4, the paper's γ: 'hard' noise) and is trained to make D call every region of
its output normal (Eq. 3), plus the optional ``λ‖X − I(X̃)‖²`` term; D learns to score regions
of X as normal and regions of I(X̃) as inpainted. With an ``irregular_fraction`` (the video and
images recipes; :mod:`train.irregularities`) some inputs also carry synthetic irregular regions made from
the normal data: D learns to score those cells irregular and I to inpaint them back to the clean
input. On a normal-only validation split θ_I is kept where ``‖X − I(X)‖²`` is lowest and θ_D
where D best separates normal from irregular (real vs inpainted without irregularities).
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
from occ.evaluation.metrics import MetricError, roc_auc
from occ.runtime.manifest import AvidScoring, InputSpec, Manifest, RegionSpec
from occ.runtime.preprocess import AVID_OFFSETS, normalized_averages, preprocess_clip
from occ.runtime.scoring import avid_thresholds, block_peaks, check_rate

from .avid import RegionMemory, create_avid
from .avid_blocks import HideNewest
from .avid_graph import AvidGraph, create_avid_graph
from .common import (CheckpointError, check_recipe, check_sizes, checkpoint_networks, evaluate_in_batches, evenly_spaced, footage_summary,
                     load_weights, recipe_config, squared_error, validation_cuts, validation_names)
from .irregularities import IrregularityMaker, SampleStore
from .loop import AdversarialTraining, Deployment, Selection


# The blocks' evidence counts from a quarter of a mask block's level (IR-MNIST development set:
# 0.15–0.3 equally good; docs/accuracy.md).
EVIDENCE_FLOOR = 0.25
# D vetoes the fifth of normal regions it is surest of (docs/accuracy.md: a wider veto cut the
# walkway's pixel-level localization with frame-level results unchanged).
REGION_QUANTILE = 0.2


@dataclass
class AvidConfig:
    """Every setting of AVID training. Start from a named recipe (:func:`avid_config`); the
    defaults here are the ``video`` recipe.

    Args:
        recipe: the recipe these settings came from (``video``, ``images`` or ``paper``).
        height: input height after resize, pixels (a multiple of 2**depth).
        width: input width after resize, pixels (a multiple of 2**depth).
        base_width: channels of I at full resolution and of D's first layer.
        depth: down-sampling steps; the region cell is 2**depth pixels.
        skip_connections: I's U-Net skips (off for images: I must not copy an unseen digit through).
        code_channels: channels of a 1×1 code at I's deepest level (0: none).
        epochs: training epochs.
        batch_size: frames per batch.
        optimizer: ``adam`` or ``sgd``.
        lr: learning rate of I and D.
        momentum: SGD momentum or Adam's β1.
        noise_sigma: σ of the Gaussian noise on I's input (the paper's γ; normalized units).
        lam: λ of ‖X − I(X̃)‖² (0: the paper's objective, Eq. 3).
        residual_kernel: the residual's averaging window, pixels (odd); None: the video rule
            (:func:`residual_kernel_for`).
        mask_reach: pixels the mask follows a residual object; None: the video rule (:func:`mask_reach_for`).
        val_fraction: share of each normal clip (its last frames) or of the images held out for model selection and thresholds.
        max_train_frames: most training frames drawn (None: all).
        false_alarm_rate: share of held-out normal frames that fire at the stored thresholds; 0 puts α
            at the largest of them (binary gate with the ``peak`` frame score only). Every recipe keeps
            1 %: on six Ped2 holdout runs the largest frame raised 4 false episodes where 1 % raised 8,
            and caught 30 of 36 events where 1 % caught 33 (docs/accuracy-log.md, 2026-12-07).
        irregular_fraction: share of training inputs that get synthetic irregularities made from
            the normal data (the data's kinds: ``train.irregularities``); 0: none.
        predict_newest: video: hide the newest frame from I, so the residual is a prediction error.
        region_memory: images: score regions by the nearest of up to this many normal training
            regions instead of by D (0: D).
        region_alignment: with the memory: compare regions centred on their ink and unslanted.
        residual_weight: with the memory: the soft intersection's weight on the residual.
        frame_score: ``peak`` or ``evidence`` (several irregular regions per image).
        seed: random seed (training is deterministic on the CPU).
    """

    recipe: str = "video"
    height: int = 64
    width: int = 96
    base_width: int = 16
    depth: int = 3
    skip_connections: bool = True
    code_channels: int = 0
    epochs: int = 6
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.5
    noise_sigma: float = 0.4
    lam: float = 0.4
    residual_kernel: int | None = None
    mask_reach: int | None = None
    val_fraction: float = 0.2
    max_train_frames: int | None = 4000
    false_alarm_rate: float = 0.01
    irregular_fraction: float = 0.5
    predict_newest: bool = True
    region_memory: int = 0
    region_alignment: bool = False
    residual_weight: float | None = None
    frame_score: str = "peak"
    seed: int = 0


# What each recipe changes from the video recipe's defaults (docs/methods.md says why).
AVID_RECIPES: dict[str, dict[str, Any]] = {
    "video": {},
    # 176 = 11 × 16 px: with depth 4 every region cell is one IR-MNIST digit
    "images": dict(height=176, width=176, depth=4, epochs=5, skip_connections=False, code_channels=16, residual_kernel=5,
                   mask_reach=0, predict_newest=False, region_memory=60000, region_alignment=True, residual_weight=0.2,
                   frame_score="evidence"),
    # as published: the paper's optimizer and objective, Eq. 4's mask block by block, the per-pixel residual
    "paper": dict(optimizer="sgd", lr=0.002, momentum=0.9, lam=0.0, residual_kernel=1, mask_reach=0, irregular_fraction=0.0,
                  predict_newest=False),
}


def avid_config(recipe: str = "video", **settings: Any) -> AvidConfig:
    """The recipe's configuration with ``settings`` changed (names of :class:`AvidConfig` fields)."""
    return recipe_config(AvidConfig, AVID_RECIPES, "AVID", recipe, settings)


def check_config(config: AvidConfig, kind: str) -> None:
    """Refuse settings that do not fit together or do not fit the data (``video`` or ``images``), in one line."""
    check_recipe(config.recipe, AVID_RECIPES, "AVID", kind)
    cell = 2**config.depth
    if config.height % cell or config.width % cell:
        raise ValueError(f"input {config.height}x{config.width} must be a multiple of the {cell}px region cell (2**depth)")
    if config.predict_newest and kind != "video":
        raise ValueError("predict_newest needs video: single images have no newest frame to predict")
    if config.region_memory and kind != "images":
        raise ValueError("the region memory is for single images: on video it tied the residual (docs/accuracy.md)")
    if config.region_memory and not (config.residual_weight is not None and 0 < config.residual_weight < 1):
        raise ValueError(f"the region memory needs a residual_weight in (0, 1), got {config.residual_weight}")
    if not config.region_memory and config.residual_weight is not None:
        raise ValueError("residual_weight is the soft intersection's, which only the region memory uses")
    if config.frame_score not in ("peak", "evidence"):
        raise ValueError(f"frame_score must be 'peak' or 'evidence', got {config.frame_score!r}")
    check_sizes(config, "AVID", ("epochs", "batch_size", "base_width", "depth"))
    check_rate(config.false_alarm_rate, avid_scoring(config, config.height))
    if not 0 <= config.irregular_fraction <= 1:
        raise ValueError(f"irregular_fraction must be in [0, 1] (0: no synthetic irregularities), got {config.irregular_fraction}")


def avid_scoring(config: AvidConfig, height: int) -> AvidScoring:
    """The scoring contract a configuration deploys (the graph is composed from it)."""
    memory = config.region_memory > 0
    return AvidScoring(
        region_scorer="memory" if memory else "detector",
        gate="soft" if memory else "binary",
        residual_weight=config.residual_weight if memory else None,
        frame_score=config.frame_score,
        evidence_floor=EVIDENCE_FLOOR if config.frame_score == "evidence" else None,
        mask_reach=mask_reach_for(height) if config.mask_reach is None else config.mask_reach,
        residual_kernel=residual_kernel_for(height) if config.residual_kernel is None else config.residual_kernel,
        residual="newest" if config.predict_newest else "mean",
        region_quantile=None if memory else REGION_QUANTILE,
    )


@dataclass
class AvidData:
    spec: InputSpec
    train: SampleStore
    val: SampleStore
    description: str
    summary: dict[str, Any] = field(default_factory=dict)


def video_data(clips: list[Clip], config: AvidConfig, description: str, dataset: dict[str, Any] | None = None,
               validation: list[Clip] | None = None) -> AvidData:
    """Normal clips as averaged-frame sequences (the reference's :func:`normalized_averages`, which
    the triplets are cut from); ``validation`` clips (footage's validation part) are held out, or
    else the last ``val_fraction`` of every clip (its tail)."""
    check_config(config, "video")
    if validation:
        clips = [*clips, *validation]
    spec = InputSpec(height=config.height, width=config.width, channels=3, temporal="avid_triplet")
    sequences = [normalized_averages(clip.frames, spec) for clip in clips]
    rows = [(c, t) for c, sequence in enumerate(sequences) for t in range(len(sequence))]
    if validation:
        first_val = len(sequences) - len(validation)
        train_rows = [r for r in rows if r[0] < first_val]
        val_rows = [r for r in rows if r[0] >= first_val]
        val_names = [c.name for c in clips[first_val:]]
    else:
        lengths = [len(sequence) for sequence in sequences]
        cuts = validation_cuts(lengths, config.val_fraction)
        train_rows = [(c, t) for c, t in rows if t < cuts[c]]
        # a validation triplet reaches max(AVID_OFFSETS) frames back: none of them a training frame
        val_rows = [(c, t) for c, t in rows if t >= cuts[c] + max(AVID_OFFSETS)] or [(c, t) for c, t in rows if t >= cuts[c]]
        val_names = validation_names([c.name for c in clips], lengths, cuts)
    rng = np.random.default_rng(config.seed)
    if config.max_train_frames and len(train_rows) > config.max_train_frames:
        train_rows = [train_rows[i] for i in np.sort(rng.choice(len(train_rows), config.max_train_frames, replace=False))]
    return AvidData(spec=spec, train=SampleStore(sequences, np.array(train_rows)), val=SampleStore(sequences, np.array(val_rows)),
                    description=data_name(description),
                    summary={**footage_summary(clips, description, dataset, val_names), "train_frames": len(train_rows)})


def image_data(images: np.ndarray, config: AvidConfig, description: str, dataset: dict[str, Any] | None = None) -> AvidData:
    """Single-channel images (IR-MNIST grids), resized to ``height``×``width`` by the reference
    preprocessing; ``val_fraction`` held out."""
    check_config(config, "images")
    spec = InputSpec(height=config.height, width=config.width, channels=1, temporal="none")
    x = preprocess_clip(images, spec)
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_val = max(1, int(config.val_fraction * len(x)))
    return AvidData(spec=spec, train=SampleStore(None, order[n_val:, None], x), val=SampleStore(None, order[:n_val, None], x),
                    description=description,
                    summary={"data": description, "dataset": dataset or {"kind": "images"}, "train_images": int(len(x) - n_val),
                             "validation_images": n_val})


def mask_reach_for(height: int) -> int:
    """How far (pixels) the mask follows a residual object out of the blocks D flags: 1/8 of the height.

    Objects are about a tenth of the frame high; on the walkway (64 px, reach 8) every reach from
    4 to 32 px gave the same localization, so the rule only has to cover an object.
    """
    return max(1, int(round(height / 8)))


def residual_kernel_for(height: int) -> int:
    """Window of the residual average: an odd size near 0.13 × the input height.

    Chosen on the dev splits (docs/accuracy.md): per-pixel residuals are noise, objects are
    about a tenth of the frame high; 9 px at 64×96 (walkway) and 17 px at 128×192 (Ped2) gave
    the best frame-level results of the sizes tried (3 to 17).
    """
    size = max(3, int(round(0.13 * height)))
    return size if size % 2 else size + 1


def train_avid(data: AvidData, config: AvidConfig, out: str | Path, console: Console | None = None) -> Manifest | None:
    """Train I and D, calibrate α and ζ on held-out normal frames, write the checkpoint
    (:class:`~occ.train.loop.AdversarialTraining`).

    Returns:
        The manifest written into the checkpoint (None on torchrun ranks other than 0).
    """
    check_config(config, "video" if data.spec.temporal == "avid_triplet" else "images")
    return AvidTraining(config, data, console).fit(out)


class AvidTraining(AdversarialTraining):
    """AVID's hooks: I's and D's steps on inputs with synthetic irregularities, θ_I and θ_D chosen
    apart, the region memory, α and ζ."""

    method = "avid"
    losses = ("d_loss", "i_adv_loss", "train_reconstruction")

    def __init__(self, config: AvidConfig, data: AvidData, console: Console | None = None):
        self.optimizer = config.optimizer
        super().__init__(config, data, console)
        self.cell, self.scoring = 2**config.depth, avid_scoring(config, data.spec.height)
        self.input_mask = HideNewest() if config.predict_newest else nn.Identity()  # as the graph's
        self.maker = None
        if config.irregular_fraction > 0:
            self.maker = IrregularityMaker(data.train, self.cell, config.irregular_fraction, 2, np.random.default_rng(config.seed))
        self.selections = [Selection(("inpainter",), "val_reconstruction", "selected_epoch_inpainter", mark=" I*"),
                           Selection(("detector",), "irregular_cell_auc" if self.maker is not None else "d_accuracy",
                                     "selected_epoch_detector", lower_is_better=False, mark=" D*")]
        val_rows = evenly_spaced(len(data.val), 256)
        self.val_clean = data.val.inputs(val_rows)
        # a fixed validation set of synthetic irregularities (normal data only) for choosing θ_D
        self.val_pseudo, self.val_labels = IrregularityMaker(data.val, self.cell, 1.0, 2, np.random.default_rng(config.seed + 1))(
            val_rows, self.val_clean)

    def build(self) -> dict[str, nn.Module]:
        config = self.config
        return dict(zip(("inpainter", "detector"), create_avid(self.data.spec.channels, config.base_width, config.depth,
                                                               skip_connections=config.skip_connections,
                                                               code_channels=config.code_channels)))

    def step(self, index: torch.Tensor) -> tuple[dict[str, float], float]:
        config, ddp, bce = self.config, self.ddp, F.binary_cross_entropy_with_logits
        inpainter, detector = self.networks["inpainter"], self.networks["detector"]
        # the global batch (irregularities and noise drawn identically in every process), sharded
        rows = index.numpy()
        clean = self.data.train.inputs(rows)
        inputs, labels = clean, None
        if self.maker is not None:
            inputs, labels_np = self.maker(rows, clean)
            source, labels = ddp.shard(torch.from_numpy(inputs)), ddp.shard(torch.from_numpy(labels_np))
        batch = torch.from_numpy(clean)
        noisy = torch.from_numpy(inputs) + config.noise_sigma * torch.randn(batch.shape, generator=self.generator)
        x, noisy = ddp.shard(batch), self.input_mask(ddp.shard(noisy))
        weight = ddp.loss_weight(len(x), len(batch))
        with torch.no_grad(), ddp.autocast():
            fake = inpainter(noisy)
        with ddp.autocast():
            real_logits, fake_logits = detector(x), detector(fake)
            d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
            if labels is not None:
                d_irregular = bce(detector(source), labels)
        # the part whose collapse signature is 0 or 2·ln 2
        d_real_vs_inpainted = ddp.global_mean(d_loss.item(), len(x), len(batch))
        if labels is not None:
            d_loss = d_loss + d_irregular
        self.update("detector", d_loss, weight)
        with ddp.autocast():
            fake = inpainter(noisy)
            logits = detector(fake)
            adv = bce(logits, torch.ones_like(logits))
            # I restores the clean input: noise and synthetic irregularities both count as damage
            rec = squared_error(fake.float(), x) if config.lam > 0 else torch.zeros((), device=x.device)
            loss = adv + config.lam * rec
        self.update("inpainter", loss, weight, max_grad_norm=10.0)
        return self.global_means({"d_loss": d_loss, "i_adv_loss": adv, "train_reconstruction": rec}, len(x), len(batch)), d_real_vs_inpainted

    def validate(self) -> dict[str, float]:
        inpainter, detector = self.networks["inpainter"].eval(), self.networks["detector"].eval()
        device = next(inpainter.parameters()).device
        with torch.no_grad():
            val = torch.from_numpy(self.val_clean)
            noisy = (val + self.config.noise_sigma * torch.randn(val.shape, generator=self.generator)).to(device)
            val = val.to(device)
            rec = float(torch.mean((inpainter(self.input_mask(val)) - val) ** 2))
            real, fake = detector(val), detector(inpainter(self.input_mask(noisy)))
            accuracy = float(((real > 0).float().mean() + (fake < 0).float().mean()) / 2)
            logits = detector(torch.from_numpy(self.val_pseudo).to(device)).cpu().numpy()
        try:
            auc = roc_auc(self.val_labels.ravel() < 0.5, -logits.ravel())
        except MetricError:
            auc = float("nan")
        return {"val_reconstruction": rec, "d_accuracy": accuracy, "irregular_cell_auc": auc}

    def epoch_line(self, record: dict[str, Any]) -> str:
        return (f"epoch {record['epoch']:3d}  D {record['d_loss']:.3f}  I adv {record['i_adv_loss']:.3f}  "
                f"rec {record['train_reconstruction']:.1f}  val rec/px {record['val_reconstruction']:.4f}  "
                f"D acc {record['d_accuracy']:.2f}  irregular-cell AUC {record['irregular_cell_auc']:.3f}")

    def deploy(self, networks: dict[str, nn.Module]) -> Deployment:
        config, data, cell, scoring = self.config, self.data, self.cell, self.scoring
        inpainter, detector = networks["inpainter"], networks["detector"]
        val_all = data.val.inputs(np.arange(len(data.val)))
        memory, held_out = build_region_memory(data.train, val_all, cell, config.region_memory, np.random.default_rng(config.seed),
                                               config.region_alignment) if config.region_memory else (None, None)
        graph = create_avid_graph(inpainter, detector if memory is None else memory, scoring)
        residual = np.concatenate([r.numpy() for r in evaluate_in_batches(graph.residual, val_all, 64)])
        if memory is not None:
            # the region map from the distances the level was measured on: 1 − O = d / (d + level)
            regions = (held_out / (held_out + memory.level)).numpy()
        else:
            regions = np.concatenate([r.numpy() for r in evaluate_in_batches(graph.region_anomaly, val_all, 64)])
        thresholds = avid_thresholds(scoring, block_peaks(residual, cell), regions, config.false_alarm_rate, self.calibration_data)
        architecture = {"in_channels": data.spec.channels, "base_width": config.base_width, "depth": config.depth,
                        "skip_connections": config.skip_connections, "code_channels": config.code_channels,
                        "region_memory": 0 if memory is None else len(memory.bank), "region_alignment": memory is not None and memory.align}
        return Deployment({"regions": RegionSpec(cell=cell, rows=data.spec.height // cell, cols=data.spec.width // cell), "scoring": scoring},
                          thresholds, architecture, {**networks, **({} if memory is None else {"region_memory": memory})}, self.val_clean)


def build_graph(architecture: dict[str, Any], state_dicts: dict[str, dict], manifest: Manifest, where: str = "checkpoint") -> AvidGraph:
    """The deployed graph of a checkpoint: its networks, composed by its manifest's scoring contract."""
    inpainter, detector = checkpoint_networks(
        lambda: create_avid(architecture["in_channels"], architecture["base_width"], architecture["depth"],
                            skip_connections=architecture.get("skip_connections", True), code_channels=architecture.get("code_channels", 0)),
        ("inpainter", "detector"), state_dicts, "AVID", where)
    region_scorer: torch.nn.Module = detector
    if architecture.get("region_memory", 0):
        stored = state_dicts.get("region_memory")
        if not stored or "bank" not in stored or "level" not in stored:
            raise CheckpointError(f"{where}: the architecture has a region memory but the checkpoint holds none")
        region_scorer = RegionMemory(stored["bank"], detector.cell, float(stored["level"]),
                                     align=architecture.get("region_alignment", False))
        load_weights(region_scorer, stored, where)
    return create_avid_graph(inpainter, region_scorer, manifest.scoring)


def build_region_memory(train: SampleStore, val: np.ndarray, cell: int, size: int, rng: np.random.Generator,
                        align: bool = False) -> tuple[RegionMemory, torch.Tensor]:
    """A memory of up to ``size`` distinct normal training regions, its level from the held-out frames.

    The level is the median distance of held-out regions to their nearest bank region other than
    an identical one: IR-MNIST's held-out grids reuse the training digits, and a region's own copy
    says nothing about how far an unseen normal region lies. Returns the memory and those
    distances, ``(N, rows, cols)``, which calibration reuses.
    """
    shapes = []
    for start in range(0, len(train), 256):
        batch = torch.from_numpy(train.inputs(np.arange(start, min(start + 256, len(train)))))
        shapes.append(RegionMemory.describe(batch, cell, align).reshape(-1, batch.shape[1] * cell * cell).numpy())
    shapes = np.ascontiguousarray(np.concatenate(shapes))
    # the same region recurs (a digit in ten grids, a static background); one row each
    _, first = np.unique(shapes.view(np.dtype((np.void, shapes.shape[1] * shapes.itemsize))).ravel(), return_index=True)
    keep = np.sort(first) if len(first) <= size else np.sort(rng.choice(first, size, replace=False))
    memory = RegionMemory(torch.from_numpy(shapes[keep]), cell, level=1.0, align=align)
    with torch.no_grad(), memory.leaving_out_identical():
        distances = torch.cat([memory.distances(torch.from_numpy(val[i : i + 64])) for i in range(0, len(val), 64)])
    memory.level.fill_(float(torch.median(distances)))
    return memory, distances
