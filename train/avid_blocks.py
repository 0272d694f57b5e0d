"""The blocks AVID's networks (:mod:`occ.train.avid`) and its deployed graph (:mod:`occ.train.avid_graph`)
are composed of.

The graph's parts are chosen by the manifest's scoring contract
(:class:`~occ.runtime.manifest.AvidScoring`, see :func:`occ.train.avid_graph.create_avid_graph`); a part
that is switched off is ``nn.Identity``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from occ.runtime.scoring import LOG_MULTIPLE_CAP


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


# ---- the deployed graph's parts, chosen by the scoring contract (AvidScoring) -------------------------
class HideNewest(nn.Module):
    """Zero the newest temporal channel (the last one), which I then has to predict."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.cat([frames[:, :-1], torch.zeros_like(frames[:, -1:])], dim=1)


class NewestChannel(nn.Module):
    """The residual of the newest channel alone: I's prediction error."""

    def forward(self, error: torch.Tensor) -> torch.Tensor:
        # slicing keeps the channel axis, so the exported graph has the same shapes as ChannelMean's
        return error[:, -1:]


class ChannelMean(nn.Module):
    def forward(self, error: torch.Tensor) -> torch.Tensor:
        return torch.mean(error, dim=1, keepdim=True)


class WindowMean(nn.Module):
    """The k×k window mean with border windows cut to the image (count_include_pad=False).

    Computed as a column mean of row means: the same numbers (border windows are rectangles, so
    their pixel counts factor too) at 2k instead of k² reads per pixel, which matters on a GPU at
    the ~0.13 × height windows the video residual uses.
    """

    def __init__(self, kernel: int):
        super().__init__()
        self.kernel = kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel
        x = F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
        return F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)


class BinaryGate(nn.Module):
    """Eq. 4's intersection, in residual units: the residual inside the blocks with ``O <= ζ``.

    ``O <= ζ`` is compared as logits: a confident D puts normal regions at 1 − O ≈ 1e-7, where
    backends round probabilities differently by more than the gaps between regions.
    """

    def forward(self, residual: torch.Tensor, anomaly_logit: torch.Tensor, alpha: torch.Tensor, zeta: torch.Tensor) -> torch.Tensor:
        return torch.where(anomaly_logit >= torch.log((1.0 - zeta) / zeta), residual, torch.zeros_like(residual))


class SoftGate(nn.Module):
    """A soft intersection, in residual units: ``α · (r / α)^w · min(m, e^cap)^(1 − w)`` with
    ``m = odds(1 − O) / odds(1 − ζ)``. Both parts rank, and a surely irregular region lowers the
    residual's threshold, ``α · m^(−(1 − w) / w)``. Computed in logs, so a residual of 0 gives 0
    (log 0 = −inf) and nothing overflows FP16.

    Args:
        residual_weight: ``w``, the weight of the residual, in (0, 1).
    """

    def __init__(self, residual_weight: float):
        super().__init__()
        self.residual_weight = residual_weight

    def forward(self, residual: torch.Tensor, anomaly_logit: torch.Tensor, alpha: torch.Tensor, zeta: torch.Tensor) -> torch.Tensor:
        w = self.residual_weight
        log_multiple = torch.clamp(anomaly_logit - torch.log((1.0 - zeta) / zeta), max=LOG_MULTIPLE_CAP)
        return alpha * torch.exp(w * torch.log(residual / alpha) + (1.0 - w) * log_multiple)


class PeakScore(nn.Module):
    """Frame score: the intersection's largest value, so ``score >= 1`` exactly when the mask is not empty."""

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return torch.amax(values, dim=(1, 2))


class EvidenceScore(nn.Module):
    """Frame score for images where several regions can be irregular at once: what every block
    holds above ``floor``, summed, ``Σ_b max(0, v_b − f) / (1 − f)`` over the blocks' largest
    values. One block at the mask's level counts 1, so a non-empty mask always fires the frame.

    Args:
        cell: block side, pixels.
        floor: ``f``, in [0, 1).
    """

    def __init__(self, cell: int, floor: float):
        super().__init__()
        self.cell, self.floor = cell, floor

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        blocks = F.max_pool2d(values.unsqueeze(1), self.cell, stride=self.cell).flatten(1)
        return torch.sum(torch.clamp(blocks - self.floor, min=0.0), dim=1) / (1.0 - self.floor)


class ObjectReach(nn.Module):
    """The mask taken object by object: every connected part of ``{residual >= α}`` that meets the
    gated intersection within ``steps`` pixels is kept whole (D tells which objects, the residual
    where they end). A geodesic reconstruction of the intersection under the residual, ``steps``
    3×3 dilations each capped by it, so thresholding the result at any α gives the parts of
    ``{residual >= α}`` connected to a gated pixel above α: the ROC sweep and the mask agree at
    every α, and the largest value, the peak score, does not change. ``steps`` 0: Eq. 4's blocks.
    """

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def forward(self, values: torch.Tensor, residual_ratio: torch.Tensor) -> torch.Tensor:
        # a soft intersection can exceed the residual where the region is sure: those pixels keep their value
        bound = torch.maximum(residual_ratio, values).unsqueeze(1)
        grown = values.unsqueeze(1)
        for _ in range(self.steps):
            grown = torch.minimum(F.max_pool2d(grown, 3, stride=1, padding=1), bound)
        return grown.squeeze(1)
