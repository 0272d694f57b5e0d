"""AVID networks (Sabokrou et al., ACCV 2018): U-Net inpainter I and fully convolutional detector D.

D's output cell ``(i, j)`` scores the pixel block rows ``[i·cell, (i+1)·cell)`` and columns
``[j·cell, (j+1)·cell)`` with ``cell = 2**depth`` (its total stride); inputs must be multiples of
``cell`` on both sides, which the manifest checks. :class:`RegionMemory` can take D's place in the
deployed gate: a region scorer built from the normal training regions, without training.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from occ.runtime.scoring import EVIDENCE_FLOOR, FRAME_SCORES, LOG_MULTIPLE_CAP

from .init import dcgan_init


class DoubleConv(nn.Sequential):
    """Two 3×3 convolutions, each with batch norm and ReLU (the U-Net block)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class AvidInpainter(nn.Module):
    """I: a U-Net that maps (noisy) frames to normal-looking ones, in the input's value range.

    Args:
        in_channels: input channels (3 for the temporal triplet, 1 for images); output matches.
        base_width: channels at full resolution; doubled at every level down.
        depth: number of 2× down-sampling steps (input sides must be multiples of ``2**depth``).
        skip_connections: U-Net skips from encoder to decoder (True: the paper's I). Without them,
            and with a narrow ``code_channels``, I cannot copy what it is shown and must draw on
            what it learned of normal data (images; see docs/accuracy.md).
        code_channels: 0, or the channels of a 1×1 bottleneck at the deepest level.
    """

    def __init__(self, in_channels: int = 3, base_width: int = 32, depth: int = 3, skip_connections: bool = True,
                 code_channels: int = 0):
        super().__init__()
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = DoubleConv(in_channels, widths[0])
        self.down = nn.ModuleList(DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.code = nn.Identity()
        if code_channels:
            self.code = nn.Sequential(nn.Conv2d(widths[-1], code_channels, 1), nn.Conv2d(code_channels, widths[-1], 1),
                                      nn.ReLU(inplace=True))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        merge_in = 2 if skip_connections else 1
        self.merge = nn.ModuleList(DoubleConv(merge_in * widths[i], widths[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], in_channels, 1)
        self.depth = depth
        self.skip_connections = skip_connections

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(self.pool(skips[-1])))
        y = self.code(skips.pop())
        for up, merge in zip(self.up, self.merge):
            skip = skips.pop()
            y = merge(torch.cat([up(y), skip], dim=1) if self.skip_connections else up(y))
        # tanh keeps the output in the normalized input range (−1..1)
        return torch.tanh(self.head(y))


class AvidDetector(nn.Module):
    """D: a fully convolutional network without pooling or fully connected layers.

    ``depth`` stride-2 4×4 convolutions (batch norm from the second on, LeakyReLU), then 1×1
    convolutions that enrich features per location, then one 1×1 convolution to a logit per region
    (positive = normal).

    Args:
        in_channels: input channels.
        base_width: channels of the first layer; doubled per stride-2 layer (capped at 8×).
        depth: stride-2 layers; the region cell is ``2**depth`` pixels.
        pointwise_layers: 1×1 convolution layers before the output layer.
    """

    def __init__(self, in_channels: int = 3, base_width: int = 32, depth: int = 3, pointwise_layers: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            width = base_width * min(2**i, 8)
            layers += [
                nn.Conv2d(channels, width, 4, stride=2, padding=1, bias=i == 0),
                nn.BatchNorm2d(width) if i > 0 else nn.Identity(),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = width
        for _ in range(pointwise_layers):
            layers += [nn.Conv2d(channels, channels, 1), nn.LeakyReLU(0.2, inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, 1)
        self.cell = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → region logits ``(N, H / cell, W / cell)``."""
        return self.head(self.features(x)).squeeze(1)


class RegionMemory(nn.Module):
    """A region scorer that knows the normal classes: each region's distance to the nearest normal region.

    The trained D learns "unlike what I draws" and "like the synthetic irregularities", and is at
    chance on a clean unseen digit; a nearest-neighbour memory of the training regions is not
    (IR-MNIST: per-cell AUC 0.96 against D's 0.53, 0.97 with ``align``; docs/accuracy.md). A
    region is its block of ``cell``×``cell`` pixels over all channels, centred and scaled to unit
    length (its shape, not its brightness; a flat region, whose spread is under ``MIN_CONTRAST``,
    is scaled as if it were that contrasty, so sensor noise stays a short vector near other flat
    regions). Distances come from ``‖q‖² + ‖b‖² − 2 q·b``: one matrix product with the bank, then
    a minimum.

    Same interface as :class:`AvidDetector`: ``forward`` gives a normality logit per region,
    ``log(level / d)``, so ``1 − O = d / (d + level)`` and the gate compares ``d`` with a distance.

    Args:
        bank: ``(K, C·cell²)`` unit-length normal regions (see :meth:`describe`).
        cell: region side, pixels.
        level: typical distance of an unseen normal region (the median, from held-out data).
        floor: distances below it count as it: below ~0.05 the expansion is float rounding (its
            square root turns 1e-6 into 1e-3, backend-dependent), and a region that close is normal.
        align: compare regions in a standard pose, centred on their ink and unslanted
            (:func:`moment_aligned`; the bank must have been described the same way).
    """

    MIN_CONTRAST = 0.1  # standard deviation in normalized units (−1..1), about 13 grey levels

    def __init__(self, bank: torch.Tensor, cell: int, level: float, floor: float = 0.05, align: bool = False):
        super().__init__()
        self.register_buffer("bank", bank.float())
        self.register_buffer("bank_squared", (bank.float() ** 2).sum(dim=1))
        self.register_buffer("level", torch.tensor(float(level)))
        self.cell = cell
        self.floor = floor
        self.align = align
        self.skip_identical = False  # see leaving_out_identical

    @staticmethod
    def describe(frames: torch.Tensor, cell: int, align: bool = False) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, H/cell · W/cell, C·cell²)`` unit-length region shapes, row by row;
        with ``align`` each region is first brought to a standard pose (:func:`moment_aligned`)."""
        _, c, h, w = frames.shape
        regions = (h // cell) * (w // cell)
        # −1 for the batch: the exported shapes stay constants (only the batch is dynamic)
        blocks = frames.reshape(-1, c, h // cell, cell, w // cell, cell).permute(0, 2, 4, 1, 3, 5)
        if align:
            blocks = moment_aligned(blocks.reshape(-1, regions, c, cell, cell))
        blocks = blocks.reshape(-1, regions, c * cell * cell)
        centred = blocks - blocks.mean(dim=2, keepdim=True)
        least = RegionMemory.MIN_CONTRAST * float(c * cell * cell) ** 0.5  # the norm of a region at MIN_CONTRAST
        return centred / torch.clamp(torch.linalg.vector_norm(centred, dim=2, keepdim=True), min=least)

    @contextmanager
    def leaving_out_identical(self):
        """Within: a region's own copy in the bank is not its nearest neighbour. For calibration on
        held-out data that repeats training regions (IR-MNIST's grids reuse the training digits):
        the distance that matters is to the nearest *other* normal region. Never exported."""
        self.skip_identical = True
        try:
            yield self
        finally:
            self.skip_identical = False

    def distances(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` → ``(N, H/cell, W/cell)`` distance of each region to its nearest bank region."""
        _, _, h, w = frames.shape
        shapes = self.describe(frames, self.cell, self.align)
        squared = (shapes**2).sum(dim=2, keepdim=True) + self.bank_squared - 2.0 * torch.matmul(shapes, self.bank.t())
        if self.skip_identical:
            squared = torch.where(squared < 1e-4, torch.full_like(squared, 4.0), squared)
        nearest = torch.sqrt(torch.clamp(torch.amin(squared, dim=2), min=self.floor**2))
        return nearest.reshape(-1, h // self.cell, w // self.cell)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.log(self.level / self.distances(frames))


def moment_aligned(regions: torch.Tensor) -> torch.Tensor:
    """``(N, R, C, h, w)`` regions, each resampled so that its ink's centroid is the centre and its
    slant is removed: the moment normalization of handwritten-digit matching (deskewing), under
    which one writer's 3 and another's differ less than a 3 and a 5 do.

    Ink is brightness above the region's darkest value (bright strokes on a dark background).
    With ink mass m, centroid (ȳ, x̄) and slant a = cov(x, y) / var(y), output pixel (y, x) reads
    the input at (y + ȳ − c, x + x̄ − c + a·(y − c)), c the middle pixel, by bilinear
    interpolation written as two small matrix products (a hat-function weight matrix per region
    for the rows, one per region and row for the columns): no gather or grid-sample op, so every
    backend runs it, and outside the region counts as background. An empty region (no ink) keeps
    its place: the centroid is regularized toward the middle by ``1e-3`` of a full region's mass.
    """
    n, r, c, h, w = regions.shape
    ink = regions - torch.amin(regions, dim=(2, 3, 4), keepdim=True)
    weight = ink.mean(dim=2)  # (N, R, h, w)
    ys = torch.arange(h, dtype=regions.dtype, device=regions.device).reshape(h, 1)  # output and input rows
    xs = torch.arange(w, dtype=regions.dtype, device=regions.device).reshape(1, w)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    prior = 1e-3 * h * w
    mass = weight.sum(dim=(2, 3)) + prior
    centre_y = ((weight * ys).sum(dim=(2, 3)) + prior * cy) / mass  # (N, R)
    centre_x = ((weight * xs).sum(dim=(2, 3)) + prior * cx) / mass
    dy = ys - centre_y[..., None, None]
    dx = xs - centre_x[..., None, None]
    var_y = (weight * dy * dy).sum(dim=(2, 3)) / mass + 1e-2
    slant = torch.clamp((weight * dy * dx).sum(dim=(2, 3)) / mass / var_y, -1.0, 1.0)
    # rows: out[y] = Σ_y' relu(1 − |y' − (y + ȳ − c)|) in[y']
    source_y = ys + (centre_y - cy)[..., None, None]  # (N, R, h_out, 1)
    rows = torch.relu(1.0 - torch.abs(ys.reshape(1, 1, 1, h) - source_y))  # (N, R, h_out, h_in)
    moved = torch.matmul(rows.unsqueeze(2), ink)  # (N, R, C, h, w)
    # columns, per output row y: shift x̄ − c + a·(y − c)
    shift = (centre_x - cx)[..., None] + slant[..., None] * (ys.reshape(h) - cy)
    source_x = xs.reshape(1, 1, 1, w, 1) + shift[..., None, None]  # (N, R, h, w_out, 1)
    columns = torch.relu(1.0 - torch.abs(xs.reshape(1, 1, 1, 1, w) - source_x))  # (N, R, h, w_out, w_in)
    return torch.matmul(moved.unsqueeze(-2), columns.transpose(-1, -2).unsqueeze(2)).squeeze(-2)


class AvidGraph(nn.Module):
    """The deployed graph: residual, region map, intersection mask, frame score and decision.

    Inputs: ``frames`` ``(N, C, H, W)``, ``alpha`` and ``zeta`` ``(1,)`` (graph inputs with the
    calibrated values as defaults). Outputs, in order:

    - ``score`` ``(N,)``: with ``frame_score="peak"`` the maximum of ``intersection``, so that
      ``score >= 1`` exactly when the mask is not empty (the paper's frame-level rule); with
      ``"evidence"`` (images where several regions can be irregular at once) the blocks' evidence
      summed, ``Σ_b max(0, v_b − f) / (1 − f)``, ``v_b`` the block's largest intersection value
      before the mask is extended over objects and ``f`` the ``evidence_floor``: one block at the
      mask's level counts 1, so a non-empty mask always makes ``score >= 1``
      (:func:`occ.runtime.scoring.frame_evidence`);
    - ``decision`` ``(N,)``: ``score >= 1``;
    - ``mask`` ``(N, H, W)``: ``{residual >= α} ∩ {B_i : O_i <= ζ}`` (Eq. 4), taken object by object
      when ``mask_reach`` > 0: every connected part of ``{residual >= α}`` that meets a flagged block
      within ``mask_reach`` pixels of it is kept whole (D tells which objects, the residual where
      they end; D flags only some cells of a large object); with a ``residual_weight``, where the
      soft intersection below is ``>= 1`` (the residual's threshold moved by the region's evidence);
    - ``residual`` ``(N, H, W)``: ``|X − I(X)|`` averaged over channels and over a
      ``residual_kernel``² window (pixel noise suppression); with ``predict_newest`` the newest
      channel is hidden from I (zeroed) and the residual is that channel's alone, so I(X) predicts
      ``I'_t`` from ``I'_{t−4}, I'_{t−2}`` (see ``AvidConfig.predict_newest``);
    - ``region_anomaly`` ``(N, rows, cols)``: ``1 − O`` with ``O = sigmoid(D(X))``;
    - ``intersection`` ``(N, H, W)``: ``residual / α`` inside the regions D flags (``O <= ζ``),
      0 elsewhere; ``>= 1`` exactly on the mask. With ``graded_gate`` (the region memory's models)
      it is ``min(residual / α, odds(1 − O) / odds(1 − ζ))`` instead: the same mask at ``>= 1``;
      with a ``residual_weight`` w as well, the weighted geometric mean
      ``(residual / α)^w · (odds(1 − O) / odds(1 − ζ))^(1 − w)`` (the region's multiple capped at
      e^10), a soft intersection: in each block the residual's threshold is lowered by the
      region's evidence, ``α · (odds(1 − ζ) / odds(1 − O))^((1 − w) / w)``, and both parts rank
      (:func:`occ.runtime.scoring.block_values`).
      Sweeping α with ζ fixed traces the ROC (with ``graded_gate``, α and ζ together). With
      ``mask_reach`` it is the grayscale geodesic reconstruction of the gated residual under the
      residual (``mask_reach`` steps of a 3×3 dilation, each capped by the residual): thresholding
      it at any α gives the parts of ``{residual >= α}`` connected to a flagged pixel above α, so
      the ROC sweep and the mask agree at every α. Its maximum, the frame score, is unchanged.
    """

    def __init__(self, inpainter: AvidInpainter, detector: AvidDetector | RegionMemory, residual_kernel: int = 3,
                 predict_newest: bool = False, mask_reach: int = 0, graded_gate: bool = False,
                 frame_score: str = "peak", evidence_floor: float = EVIDENCE_FLOOR, residual_weight: float | None = None):
        super().__init__()
        if residual_weight is not None and not (graded_gate and 0 < residual_weight < 1):
            raise ValueError(f"residual_weight {residual_weight} needs a graded gate and a value in (0, 1)")
        if frame_score not in FRAME_SCORES:
            raise ValueError(f"frame_score must be one of {', '.join(FRAME_SCORES)}, got {frame_score!r}")
        self.inpainter = inpainter
        self.detector = detector
        self.residual_kernel = residual_kernel
        self.predict_newest = predict_newest
        self.mask_reach = mask_reach
        self.graded_gate = graded_gate
        self.frame_score = frame_score
        self.evidence_floor = evidence_floor
        self.residual_weight = residual_weight

    @staticmethod
    def output_names() -> list[str]:
        return ["score", "decision", "mask", "residual", "region_anomaly", "intersection"]

    def inpaint(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inpainter(hide_newest(frames) if self.predict_newest else frames)

    def residual(self, frames: torch.Tensor) -> torch.Tensor:
        error = torch.abs(frames - self.inpaint(frames))
        # slicing keeps the channel axis, so the exported graph has the same shapes either way
        error = error[:, -1:] if self.predict_newest else torch.mean(error, dim=1, keepdim=True)
        k = self.residual_kernel
        if k > 1:
            # the k×k window mean as a column mean of row means: the same numbers (border windows
            # are rectangles, so their pixel counts factor too) at 2k instead of k² reads per pixel,
            # which matters on a GPU at the ~0.13 × height windows the residual uses
            error = F.avg_pool2d(error, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
            error = F.avg_pool2d(error, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
        return error.squeeze(1)

    def region_anomaly(self, frames: torch.Tensor) -> torch.Tensor:
        # sigmoid(−logit) = 1 − O, computed from the logit so it stays accurate near 0 and 1
        return torch.sigmoid(-self.detector(frames))

    def forward(self, frames: torch.Tensor, alpha: torch.Tensor, zeta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        residual = self.residual(frames)
        anomaly_logit = -self.detector(frames)
        regions = torch.sigmoid(anomaly_logit)  # 1 − O, as region_anomaly, without running D twice
        # nearest upsampling by the cell size maps each O cell onto exactly its pixel block B_i
        logit_up = F.interpolate(anomaly_logit.unsqueeze(1), scale_factor=float(self.detector.cell), mode="nearest").squeeze(1)
        # B_i with O_i <= ζ, compared as logits: a confident D puts normal regions at 1 − O ≈ 1e-7,
        # where backends round differently by more than the gaps between regions (seen on IR-MNIST)
        threshold = torch.log((1.0 - zeta) / zeta)
        if self.graded_gate:
            # the region's evidence as a multiple of its threshold, odds(1 − O) / odds(1 − ζ): the
            # intersection is then min(residual / α, that multiple), ≥ 1 exactly on Eq. 4's mask,
            # and its maximum ranks frames by both parts at once (both thresholds scaled together)
            if self.residual_weight is None:
                multiple = torch.exp(torch.clamp(logit_up - threshold, max=30.0))
                gated = torch.minimum(residual, alpha * multiple)
            else:
                # in logs, so a residual of 0 gives 0 (log 0 = −inf) and nothing overflows
                w = self.residual_weight
                log_multiple = torch.clamp(logit_up - threshold, max=LOG_MULTIPLE_CAP)
                gated = alpha * torch.exp(w * torch.log(residual / alpha) + (1.0 - w) * log_multiple)
        else:
            gated = torch.where(logit_up >= threshold, residual, torch.zeros_like(residual))
        if self.frame_score == "evidence":
            cell = self.detector.cell
            blocks = F.max_pool2d((gated / alpha).unsqueeze(1), cell, stride=cell).flatten(1)
            floor = self.evidence_floor
            score = torch.sum(torch.clamp(blocks - floor, min=0.0), dim=1) / (1.0 - floor)
        if self.mask_reach > 0:
            # a soft intersection can exceed the residual where the region is sure: those pixels keep their value
            bound = residual if self.residual_weight is None else torch.maximum(residual, gated)
            bound, gated = bound.unsqueeze(1), gated.unsqueeze(1)
            for _ in range(self.mask_reach):
                gated = torch.minimum(F.max_pool2d(gated, 3, stride=1, padding=1), bound)
            gated = gated.squeeze(1)
        intersection = gated / alpha
        mask = intersection >= 1.0
        if self.frame_score == "peak":
            score = torch.amax(intersection, dim=(1, 2))
        return score, score >= 1.0, mask, residual, regions, intersection


def hide_newest(frames: torch.Tensor) -> torch.Tensor:
    """Zero the newest temporal channel (the last one), which I then has to predict."""
    return torch.cat([frames[:, :-1], torch.zeros_like(frames[:, -1:])], dim=1)


def create_avid(in_channels: int, base_width: int = 32, depth: int = 3, detector_width: int | None = None,
                skip_connections: bool = True, code_channels: int = 0) -> tuple[AvidInpainter, AvidDetector]:
    """Build I (DCGAN initialisation) and D.

    D keeps PyTorch's default (Kaiming-uniform) initialisation: with N(0, 0.02) through its six
    layers the logits start near zero with vanishing gradients, and plain SGD at the paper's
    learning rate never moved D off 2·ln 2 (seen on the walkway).
    """
    inpainter = AvidInpainter(in_channels, base_width, depth, skip_connections, code_channels)
    detector = AvidDetector(in_channels, detector_width or base_width, depth)
    inpainter.apply(dcgan_init)
    return inpainter, detector
