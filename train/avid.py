"""AVID networks (Sabokrou et al., ACCV 2018): U-Net inpainter I and fully convolutional detector D.

D's output cell ``(i, j)`` scores the pixel block rows ``[i·cell, (i+1)·cell)`` and columns
``[j·cell, (j+1)·cell)`` with ``cell = 2**depth`` (its total stride); inputs must be multiples of
``cell`` on both sides, which the manifest checks. :class:`RegionMemory` can take D's place in the
deployed gate: a region scorer built from the normal training regions, without training.

The networks are composed of the blocks in :mod:`occ.train.avid_blocks`; :func:`create_avid`
builds I and D, and :func:`occ.train.avid_graph.create_avid_graph` composes the deployed graph
from them by a manifest's scoring contract.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .avid_blocks import DoubleConv, moment_aligned
from .init import dcgan_init


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
