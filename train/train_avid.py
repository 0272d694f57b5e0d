"""Adversarial training of AVID's inpainter I and detector D on normal frames only.

I sees ``X + γ·N(0, 1)`` (γ = 0.4, 'hard' noise) and is trained to make D call every region of
its output normal (Eq. 3), plus the optional ``λ‖X − I(X̃)‖²`` term; D learns to score regions
of X as normal and regions of I(X̃) as inpainted. With ``irregularities`` (default on, see
:mod:`train.irregularities`) some inputs also carry synthetic irregular regions made from the
normal data: D learns to score those cells irregular and I to inpaint them back to the clean
input. On a normal-only validation split θ_I is kept where ``‖X − I(X)‖²`` is lowest and θ_D
where D best separates normal from irregular (real vs inpainted without irregularities).
"""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from occ import __version__
from occ.runtime.datasets.common import Clip
from occ.runtime.manifest import InputSpec, Manifest, RegionSpec
from occ.runtime.scoring import (EVIDENCE_FLOOR, LOG_MULTIPLE_CAP, REGION_QUANTILE, calibrate_avid_thresholds,
                                 calibrate_graded_thresholds, check_frame_score)
from occ.runtime.preprocess import normalize

from .avid import AvidGraph, RegionMemory, create_avid, hide_newest
from .irregularities import IrregularityMaker, SampleStore
from .distributed import Distributed, plain_state_dict
from .common import CollapseMonitor, batches, evaluate_in_batches, make_optimizer, progress_bar, save_checkpoint, seed_everything, squared_error


@dataclass
class AvidConfig:
    """Every knob of AVID training, with the defaults used by ``occ train avid``."""

    height: int = 64
    width: int = 96
    base_width: int = 16
    depth: int = 3
    skip_connections: bool = True  # I's U-Net skips (False with code_channels: I cannot copy; images)
    code_channels: int = 0  # 1×1 bottleneck at I's deepest level (0: none)
    epochs: int = 6
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 0.001
    momentum: float = 0.5
    gamma: float = 0.4
    lam: float = 0.4
    residual_kernel: int | None = None  # None: odd size near 0.13 × height (see residual_kernel_for)
    mask_reach: int | None = None  # None: height / 8 (see mask_reach_for); 0: Eq. 4 block by block
    val_fraction: float = 0.2
    max_train_frames: int | None = 4000
    false_alarm_rate: float = 0.01
    region_quantile: float = REGION_QUANTILE  # see occ.runtime.scoring.REGION_QUANTILE
    irregularities: bool = True
    irregular_fraction: float = 0.5
    irregular_kinds: list[str] | None = None  # None: the data's default kinds (train.irregularities)
    predict_newest: bool = True
    # > 0 (single images only): the deployed gate scores regions by their distance to the nearest of
    # up to this many normal training regions (RegionMemory) instead of by D, with a graded gate;
    # D is still trained, as I's adversary. 0: D, as published.
    region_memory: int = 0
    # with region_memory: compare regions in a standard pose (train.avid.moment_aligned: centred on
    # their ink, unslanted); for bright strokes on a dark background, such as digits
    region_alignment: bool = False
    # with region_memory: None, the graded intersection is min(residual / α, odds(1 − O) / odds(1 − ζ))
    # (Eq. 4's mask exactly); w in (0, 1), their weighted geometric mean with weight w on the
    # residual, a soft intersection where both parts rank (train.avid.AvidGraph)
    residual_weight: float | None = None
    # how a frame's score is reduced from its blocks (occ.runtime.scoring.FRAME_SCORES): "peak", the
    # largest value (fires exactly when the mask is not empty; one irregular object per frame, as
    # in video), or "evidence", summed over blocks (several irregular regions per image)
    frame_score: str = "peak"
    seed: int = 0


def irmnist_config(**fields: Any) -> AvidConfig:
    """The recipe for IR-MNIST's digit grids (``occ train avid --data irmnist:...``, the benchmark),
    measured in docs/accuracy.md; ``fields`` override it.

    176 = 11 × 16 px, so with depth 4 every region cell is exactly one digit; I without skips and
    with a 16-channel code (one code per digit) cannot copy an unseen digit through; a 5-px
    residual window, a stroke's width (the video rule would blur over neighbouring digits); the
    region memory of up to 60,000 normal training digits, compared centred and unslanted, scores
    cells (D, as published, is at chance on a clean unseen digit), and the intersection is soft
    (weight 0.2 on the residual: with the minimum, the residual never ranked a cell); a digit is
    one block, so the mask is Eq. 4's block by block (extended over objects at the evidence
    score's ζ, a 3's value leaked into the normal digits touching it: localization EER 8.3 →
    9.9 %, seed 0); a grid may hold several irregular digits, so its score is the evidence summed
    over cells.
    """
    recipe = dict(height=176, width=176, depth=4, base_width=16, epochs=5, batch_size=16, skip_connections=False,
                  code_channels=16, residual_kernel=5, region_memory=60000, region_alignment=True, mask_reach=0,
                  residual_weight=0.2, frame_score="evidence")
    return AvidConfig(**{**recipe, **fields})


@dataclass
class AvidData:
    spec: InputSpec
    train: SampleStore
    val: SampleStore
    description: str
    summary: dict[str, Any] = field(default_factory=dict)


def _averaged_sequence(clip: Clip, spec: InputSpec) -> np.ndarray:
    """Normalized ``I'_t = (I_t + I_{t-1}) / 2`` of a clip, the frames the triplets are cut from."""
    from occ.runtime.preprocess import resize_frame

    resized = np.stack([resize_frame(f, spec) for f in clip.frames])
    previous = np.concatenate([resized[:1], resized[:-1]])
    return ((resized + previous) * np.float32(0.5) - np.float32(spec.norm_mean)) / np.float32(spec.norm_std)


def video_data(clips: list[Clip], config: AvidConfig, description: str) -> AvidData:
    """Normal clips as averaged-frame sequences; the last clips (``val_fraction``) are held out."""
    spec = InputSpec(height=config.height, width=config.width, channels=3, temporal="avid_triplet")
    sequences = [_averaged_sequence(clip, spec) for clip in clips]
    rows = [(c, t) for c, sequence in enumerate(sequences) for t in range(len(sequence))]
    if len(sequences) >= 2:
        n_val = max(1, round(config.val_fraction * len(sequences)))
        first_val = len(sequences) - n_val
        train_rows = [r for r in rows if r[0] < first_val]
        val_rows = [r for r in rows if r[0] >= first_val]
        val_names = [c.name for c in clips[first_val:]]
    else:
        cut = int(len(sequences[0]) * (1 - config.val_fraction))
        train_rows, val_rows = rows[:cut], rows[cut:]
        val_names = [f"{clips[0].name}[{cut}:]"]
    rng = np.random.default_rng(config.seed)
    if config.max_train_frames and len(train_rows) > config.max_train_frames:
        train_rows = [train_rows[i] for i in np.sort(rng.choice(len(train_rows), config.max_train_frames, replace=False))]
    return AvidData(spec=spec, train=SampleStore(sequences, np.array(train_rows)), val=SampleStore(sequences, np.array(val_rows)),
                    description=description,
                    summary={"data": description, "clips": [c.name for c in clips], "validation_clips": val_names,
                             "train_frames": len(train_rows)})


def image_data(images: np.ndarray, config: AvidConfig, description: str) -> AvidData:
    """Single-channel images (IR-MNIST grids), resized to ``height``×``width`` by the reference
    preprocessing; ``val_fraction`` held out."""
    from occ.runtime.preprocess import resize_frame

    spec = InputSpec(height=config.height, width=config.width, channels=1, temporal="none")
    x = normalize(np.stack([resize_frame(image, spec) for image in images])[:, None], spec)
    order = np.random.default_rng(config.seed).permutation(len(x))
    n_val = max(1, int(config.val_fraction * len(x)))
    return AvidData(spec=spec, train=SampleStore(None, order[n_val:, None], x), val=SampleStore(None, order[:n_val, None], x),
                    description=description,
                    summary={"data": description, "train_images": int(len(x) - n_val), "validation_images": n_val})


def graph_maps(graph: AvidGraph, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residual ``(N, H, W)`` and region anomaly ``(N, rows, cols)`` maps."""
    results = evaluate_in_batches(lambda x: (graph.residual(x), graph.region_anomaly(x)), frames, 64)
    return (np.concatenate([r[0].numpy() for r in results]), np.concatenate([r[1].numpy() for r in results]))


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
    """Train I and D, calibrate α and ζ on held-out normal frames, write the checkpoint.

    Under ``torchrun`` every process trains on its shard of each batch (see
    :mod:`occ.train.distributed`); rank 0 calibrates and writes the checkpoint.

    Returns:
        The manifest written into the checkpoint (None on ranks other than 0).
    """
    console = console or Console()
    if config.predict_newest and data.spec.temporal != "avid_triplet":
        config = replace(config, predict_newest=False)  # single images have no newest frame to predict
    if config.residual_kernel is None:
        config = replace(config, residual_kernel=residual_kernel_for(data.spec.height))
    if config.mask_reach is None:
        config = replace(config, mask_reach=mask_reach_for(data.spec.height))
    cell = 2**config.depth
    if data.spec.height % cell or data.spec.width % cell:
        raise ValueError(f"input {data.spec.height}x{data.spec.width} must be a multiple of the {cell}px region cell")
    check_frame_score(config.frame_score)
    if config.residual_weight is not None and not (config.region_memory and 0 < config.residual_weight < 1):
        raise ValueError(f"residual_weight {config.residual_weight} needs region_memory and a value in (0, 1)")
    if config.region_memory and data.spec.temporal != "none":
        raise ValueError("region_memory is for single images: on video it tied the residual (docs/accuracy.md)")
    ddp = Distributed.from_env()
    if not ddp.is_main:
        console = Console(file=io.StringIO())
    generator = seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    channels = data.spec.channels
    inpainter, detector = create_avid(channels, config.base_width, config.depth,
                                      skip_connections=config.skip_connections, code_channels=config.code_channels)
    inpainter, detector = ddp.prepare(inpainter), ddp.prepare(detector)
    opt_i = make_optimizer(config.optimizer, inpainter.parameters(), config.lr, config.momentum)
    opt_d = make_optimizer(config.optimizer, detector.parameters(), config.lr, config.momentum)
    maker = IrregularityMaker(data.train, cell, config.irregular_fraction, 2, rng, kinds=config.irregular_kinds) \
        if config.irregularities else None
    val_rows = np.linspace(0, len(data.val) - 1, min(256, len(data.val))).astype(int)
    val_clean = data.val.inputs(val_rows)
    # a fixed validation set of synthetic irregularities (normal data only) for choosing θ_D
    val_pseudo, val_labels = IrregularityMaker(data.val, cell, 1.0, 2, np.random.default_rng(config.seed + 1),
                                             kinds=config.irregular_kinds)(val_rows, val_clean)
    monitor = CollapseMonitor()
    history: list[dict[str, Any]] = []
    best_i: dict[str, Any] | None = None
    best_d: dict[str, Any] | None = None
    started = time.monotonic()
    bce = F.binary_cross_entropy_with_logits

    with progress_bar(console) as progress:
        for epoch in range(1, config.epochs + 1):
            inpainter.train()
            detector.train()
            order = batches(len(data.train), config.batch_size, generator)
            task = progress.add_task(f"epoch {epoch}/{config.epochs}", total=len(order))
            d_losses, d_real_vs_inpainted, i_adv, i_rec = [], [], [], []
            for index in order:
                if len(index) < 2 * ddp.world:
                    continue
                # the global batch (irregularities and noise drawn identically in every process), sharded
                rows = index.numpy()
                clean_np = data.train.inputs(rows)
                batch = torch.from_numpy(clean_np)
                if maker is not None:
                    pseudo_np, labels_np = maker(rows, clean_np)
                    source, labels = ddp.shard(torch.from_numpy(pseudo_np)), ddp.shard(torch.from_numpy(labels_np))
                noisy = (torch.from_numpy(pseudo_np) if maker is not None else batch) + \
                    config.gamma * torch.randn(batch.shape, generator=generator)
                x, noisy = ddp.shard(batch), ddp.shard(noisy)
                if maker is None:
                    source = x
                weight = ddp.loss_weight(len(x), len(batch))
                if config.predict_newest:
                    noisy = hide_newest(noisy)
                with torch.no_grad(), ddp.autocast():
                    fake = inpainter(noisy)
                with ddp.autocast():
                    real_logits, fake_logits = detector(x), detector(fake)
                    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
                    if maker is not None:
                        d_irregular = bce(detector(source), labels)
                d_real_vs_inpainted.append(ddp.global_mean(d_loss.item(), len(x), len(batch)))  # the part whose collapse signature is 0 or 2·ln 2
                if maker is not None:
                    d_loss = d_loss + d_irregular
                opt_d.zero_grad(set_to_none=True)
                (d_loss * weight).backward()
                ddp.average_gradients(detector)
                opt_d.step()
                with ddp.autocast():
                    fake = inpainter(noisy)
                    logits = detector(fake)
                    adv = bce(logits, torch.ones_like(logits))
                    # I restores the clean input: noise and synthetic irregularities both count as damage
                    rec = squared_error(fake.float(), x) if config.lam > 0 else torch.zeros((), device=x.device)
                    loss = adv + config.lam * rec
                opt_i.zero_grad(set_to_none=True)
                (loss * weight).backward()
                ddp.average_gradients(inpainter)
                torch.nn.utils.clip_grad_norm_(inpainter.parameters(), 10.0)
                opt_i.step()
                d_losses.append(ddp.global_mean(d_loss.item(), len(x), len(batch)))
                i_adv.append(ddp.global_mean(adv.item(), len(x), len(batch)))
                i_rec.append(ddp.global_mean(rec.item(), len(x), len(batch)))
                progress.advance(task)
            progress.remove_task(task)
            val = _validate(inpainter, detector, val_clean, val_pseudo, val_labels, config, generator)
            record = {"epoch": epoch, "d_loss": float(np.mean(d_losses)), "i_adv_loss": float(np.mean(i_adv)),
                      "train_reconstruction": float(np.mean(i_rec)), **val, "seconds": round(time.monotonic() - started, 1)}
            marks = ""
            if best_i is None or val["val_reconstruction"] < best_i["value"]:
                best_i = {"epoch": epoch, "value": val["val_reconstruction"], "state": plain_state_dict(inpainter)}
                marks += " I*"
            d_score = val["irregular_cell_auc"] if maker is not None else val["d_accuracy"]
            if best_d is None or d_score > best_d["value"]:
                best_d = {"epoch": epoch, "value": d_score, "state": plain_state_dict(detector)}
                marks += " D*"
            history.append(record)
            console.print(f"epoch {epoch:3d}  D {record['d_loss']:.3f}  I adv {record['i_adv_loss']:.3f}  "
                          f"rec {record['train_reconstruction']:.1f}  val rec/px {val['val_reconstruction']:.4f}  "
                          f"D acc {val['d_accuracy']:.2f}  irregular-cell AUC {val['irregular_cell_auc']:.3f}{marks}",
                          highlight=False)
            collapse = monitor.update(epoch, float(np.mean(d_real_vs_inpainted)), float(np.std(d_real_vs_inpainted)))
            if collapse:
                console.print(f"[yellow]warning:[/yellow] {collapse}", highlight=False)

    if not ddp.is_main:  # rank 0 calibrates and writes the checkpoint
        return None
    # the rest runs on the CPU with plain networks (no synchronised batch norm)
    inpainter, detector = create_avid(channels, config.base_width, config.depth,
                                      skip_connections=config.skip_connections, code_channels=config.code_channels)
    inpainter.load_state_dict(best_i["state"])
    detector.load_state_dict(best_d["state"])
    val_all = data.val.inputs(np.arange(len(data.val)))
    calibration_data = f"{data.description} (held-out normal frames)"
    memory, held_out = build_region_memory(data.train, val_all, cell, config.region_memory, np.random.default_rng(config.seed),
                                           config.region_alignment) if config.region_memory else (None, None)
    if memory is not None:
        graph = AvidGraph(inpainter, memory, config.residual_kernel, config.predict_newest, config.mask_reach, graded_gate=True).eval()
        residual = np.concatenate([r.numpy() for r in evaluate_in_batches(graph.residual, val_all, 64)])
        # the region map from the distances the level was measured on: 1 − O = d / (d + level)
        regions = (held_out / (held_out + memory.level)).numpy()
        thresholds = calibrate_graded_thresholds(residual, regions, cell, config.false_alarm_rate, calibration_data,
                                                 config.frame_score, config.residual_weight)
    else:
        graph = AvidGraph(inpainter, detector, config.residual_kernel, config.predict_newest, config.mask_reach).eval()
        residual, regions = graph_maps(graph, val_all)
        thresholds = calibrate_avid_thresholds(residual, regions, cell, config.false_alarm_rate, calibration_data,
                                               region_quantile=config.region_quantile, frame_score=config.frame_score)
    manifest = Manifest(
        method="avid",
        input=data.spec,
        regions=RegionSpec(cell=cell, rows=data.spec.height // cell, cols=data.spec.width // cell),
        scoring=avid_scoring(config, memory),
        training={**data.summary, "config": asdict(config), "selected_epoch_inpainter": best_i["epoch"],
                  "selected_epoch_detector": best_d["epoch"], "collapse_events": monitor.events,
                  "seconds": round(time.monotonic() - started, 1)},
        occ_version=__version__,
    )
    for name, threshold in thresholds.items():
        manifest.set_threshold(name, threshold)
    manifest.validate()
    architecture = {"in_channels": channels, "base_width": config.base_width, "depth": config.depth,
                    "skip_connections": config.skip_connections, "code_channels": config.code_channels,
                    "residual_kernel": config.residual_kernel, "predict_newest": config.predict_newest,
                    "mask_reach": config.mask_reach, "region_memory": 0 if memory is None else len(memory.bank),
                    "region_alignment": memory is not None and memory.align, "frame_score": config.frame_score,
                    "evidence_floor": EVIDENCE_FLOOR, "residual_weight": config.residual_weight if memory is not None else None}
    networks = {"inpainter": inpainter, "detector": detector, **({} if memory is None else {"region_memory": memory})}
    verification = val_clean[np.linspace(0, len(val_clean) - 1, min(8, len(val_clean))).astype(int)]
    save_checkpoint(out, manifest, architecture, networks, history,
                    verification_inputs=verification)
    return manifest


def _validate(inpainter, detector, clean: np.ndarray, pseudo: np.ndarray, labels: np.ndarray, config: AvidConfig,
              generator) -> dict[str, float]:
    from occ.runtime.metrics import MetricError, roc_auc

    inpainter.eval()
    detector.eval()
    device = next(inpainter.parameters()).device
    with torch.no_grad():
        val = torch.from_numpy(clean)
        noisy = (val + config.gamma * torch.randn(val.shape, generator=generator)).to(device)
        val = val.to(device)
        hide = hide_newest if config.predict_newest else (lambda v: v)
        rec = float(torch.mean((inpainter(hide(val)) - val) ** 2))
        real, fake = detector(val), detector(inpainter(hide(noisy)))
        accuracy = float(((real > 0).float().mean() + (fake < 0).float().mean()) / 2)
        logits = detector(torch.from_numpy(pseudo).to(device)).cpu().numpy()
    try:
        auc = roc_auc(labels.ravel() < 0.5, -logits.ravel())
    except MetricError:
        auc = float("nan")
    return {"val_reconstruction": rec, "d_accuracy": accuracy, "irregular_cell_auc": auc}


def avid_scoring(config: AvidConfig, memory: RegionMemory | None) -> dict[str, Any]:
    """The manifest's description of how an AVID model scores, in words and the numbers it needs."""
    if memory is None:
        peak = "max over pixels of residual / alpha inside the regions with O <= zeta"
    elif config.residual_weight is None:
        peak = "max over pixels of min(residual / alpha, odds(1 - O) / odds(1 - zeta))"
    else:
        w = config.residual_weight
        peak = f"max over pixels of (residual / alpha)^{w:g} * min(odds(1 - O) / odds(1 - zeta), e^{LOG_MULTIPLE_CAP:g})^{1 - w:g}"
    if config.frame_score == "peak":
        frame_score = peak + "; decision: score >= 1 (mask not empty)"
    else:
        frame_score = (f"evidence: sum over blocks of max(0, v - {EVIDENCE_FLOOR:g}) / {1 - EVIDENCE_FLOOR:g}, v the block's "
                       + peak.replace("max over pixels", "max over its pixels") + "; decision: score >= 1 (a non-empty mask always fires)")
    if memory is not None and config.residual_weight is not None:
        w = config.residual_weight
        mask = f"pixels where the soft intersection is >= 1: residual >= alpha * (odds(1 - zeta) / odds(1 - O))^{(1 - w) / w:g}"
    else:
        mask = "{residual >= alpha} inside the blocks with O <= zeta (Eq. 4)"
    if config.mask_reach:
        mask += ", and the parts of {residual >= alpha} connected to it within mask_reach pixels"
    return {
        "frame_score": frame_score,
        "evidence_floor": EVIDENCE_FLOOR if config.frame_score == "evidence" else None,
        "regions": (f"O from the distance to the nearest of {len(memory.bank)} normal training regions "
                    f"(unit-length shapes{', centred on their ink and unslanted' if memory.align else ''}): "
                    "1 - O = d / (d + level)") if memory is not None else "O from D",
        "residual_kernel": config.residual_kernel,
        "mask": mask,
        "mask_reach": config.mask_reach,
        "residual": "newest channel, predicted by I from the older two" if config.predict_newest else "all channels",
    }


def build_graph(architecture: dict[str, Any], state_dicts: dict[str, dict], manifest: Manifest) -> AvidGraph:
    inpainter, detector = create_avid(architecture["in_channels"], architecture["base_width"], architecture["depth"],
                                      skip_connections=architecture.get("skip_connections", True),
                                      code_channels=architecture.get("code_channels", 0))
    inpainter.load_state_dict(state_dicts["inpainter"])
    detector.load_state_dict(state_dicts["detector"])
    memory = architecture.get("region_memory", 0)
    if memory:
        stored = state_dicts["region_memory"]
        detector = RegionMemory(stored["bank"], detector.cell, float(stored["level"]),
                                align=architecture.get("region_alignment", False))
        detector.load_state_dict(stored)
    # checkpoints from before mask_reach existed keep the block-wise mask of Eq. 4 (reach 0)
    return AvidGraph(inpainter, detector, architecture["residual_kernel"], architecture.get("predict_newest", False),
                     architecture.get("mask_reach", 0), graded_gate=bool(memory),
                     frame_score=architecture.get("frame_score", "peak"),
                     evidence_floor=architecture.get("evidence_floor", EVIDENCE_FLOOR),
                     residual_weight=architecture.get("residual_weight")).eval()


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
