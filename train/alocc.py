"""ALOCC networks (Sabokrou et al., CVPR 2018): reconstructor R and discriminator D.

Both work on square patches of ``patch_size`` pixels. Paper widths are 64-128-256-512 with 5×5
stride-2 convolutions, batch norm and LeakyReLU, no pooling.
"""
from __future__ import annotations

import torch
from torch import nn

from .init import dcgan_init

PAPER_WIDTHS = (64, 128, 256, 512)


def spatial_sizes(patch_size: int, depth: int) -> list[int]:
    """Feature-map side after each stride-2 'same' convolution: ``ceil(n / 2)`` per level."""
    sizes = [patch_size]
    for _ in range(depth):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _widths(base_width: int, depth: int) -> list[int]:
    return [base_width * 2**i for i in range(depth)]


class ConvBlock(nn.Sequential):
    """5×5 stride-2 convolution, optional batch norm, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True, bn_eps: float = 1e-5):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2, bias=not norm),
            nn.BatchNorm2d(out_channels, eps=bn_eps) if norm else nn.Identity(),
            nn.LeakyReLU(0.2),
        )


class UpBlock(nn.Sequential):
    """5×5 stride-2 transposed convolution back to an exact size, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, output_padding: int, bn_eps: float = 1e-5):
        super().__init__(
            # output_padding is fixed at construction so the exported graph has static spatial shapes
            nn.ConvTranspose2d(in_channels, out_channels, 5, stride=2, padding=2, output_padding=output_padding, bias=False),
            nn.BatchNorm2d(out_channels, eps=bn_eps),
            nn.ReLU(),
        )


class AloccReconstructor(nn.Module):
    """R: a convolutional encoder-decoder that maps (noisy) patches to clean normal-looking ones.

    Args:
        in_channels: channels of the input patch (output has the same).
        patch_size: side of the square input patch in pixels.
        base_width: channels of the first encoder layer; each next layer doubles it.
        depth: number of stride-2 encoder layers (the decoder mirrors them).
        bn_eps: batch-norm epsilon.
        bottleneck: 0 (the paper's R: convolutions only), or the size of a linear code between
            encoder and decoder, which stops R from reconstructing whatever it is shown.
    """

    def __init__(self, in_channels: int = 1, patch_size: int = 28, base_width: int = 64, depth: int = 4, bn_eps: float = 1e-5,
                 bottleneck: int = 0):
        super().__init__()
        if depth < 1 or patch_size < 2**depth // 2:
            raise ValueError(f"patch_size {patch_size} is too small for depth {depth}")
        widths = _widths(base_width, depth)
        sizes = spatial_sizes(patch_size, depth)
        self.encoder = nn.Sequential(*(ConvBlock(c, w, norm=True, bn_eps=bn_eps) for c, w in zip([in_channels, *widths], widths)))
        self.code = nn.Identity()
        if bottleneck:
            deepest = (widths[-1], sizes[depth], sizes[depth])
            flat = deepest[0] * deepest[1] * deepest[2]
            self.code = nn.Sequential(nn.Flatten(), nn.Linear(flat, bottleneck), nn.Linear(bottleneck, flat),
                                      nn.LeakyReLU(0.2, inplace=True), nn.Unflatten(1, deepest))
        # output_padding: each level back to its exact encoder size
        self.decoder = nn.Sequential(*(UpBlock(widths[level], widths[level - 1], sizes[level] - 2 * sizes[level + 1] + 1, bn_eps)
                                       for level in range(depth - 1, 0, -1)))
        self.head = nn.ConvTranspose2d(widths[0], in_channels, 5, stride=2, padding=2,
                                       output_padding=sizes[0] - 2 * sizes[1] + 1)
        self.output_activation = nn.Tanh()
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_activation(self.head(self.decoder(self.code(self.encoder(x)))))


class AloccDiscriminator(nn.Module):
    """D: stride-2 convolutions (no batch norm on the first), then one linear layer to a logit.

    The logit is positive for patches that look like the target (normal) class. The sigmoid is
    applied only where a probability is needed (numerically safer in FP16).

    Args:
        in_channels: channels of the input patch.
        patch_size: side of the square input patch in pixels.
        base_width: channels of the first layer; each next layer doubles it.
        depth: number of stride-2 convolution layers.
        bn_eps: batch-norm epsilon.
    """

    def __init__(self, in_channels: int = 1, patch_size: int = 28, base_width: int = 64, depth: int = 4, bn_eps: float = 1e-5):
        super().__init__()
        widths = _widths(base_width, depth)
        self.features = nn.Sequential(*(ConvBlock(c, w, norm=i > 0, bn_eps=bn_eps)
                                        for i, (c, w) in enumerate(zip([in_channels, *widths], widths))))
        final = spatial_sizes(patch_size, depth)[-1]
        self.classifier = nn.Linear([in_channels, *widths][-1] * final * final, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # flatten from dim 1 keeps the batch dimension dynamic in the exported graph
        return torch.flatten(self.features(x), 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class AloccScorer(nn.Module):
    """The deployed graph: per patch, ``score`` = −logit D(R(X)) (higher = more anomalous) and
    ``reconstruction_error`` = mean ``(X − R(X))²``. How they become a frame score is the
    manifest's :class:`~occ.runtime.manifest.AloccScoring`."""

    def __init__(self, reconstructor: AloccReconstructor, discriminator: AloccDiscriminator):
        super().__init__()
        self.reconstructor = reconstructor
        self.discriminator = discriminator

    @staticmethod
    def output_names() -> list[str]:
        return ["score", "reconstruction_error"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.reconstructor(x)
        return -self.discriminator(r), torch.mean((x - r) ** 2, dim=(1, 2, 3))


def create_alocc(in_channels: int, patch_size: int, base_width: int = 64, depth: int = 4,
                 bottleneck: int = 0) -> tuple[AloccReconstructor, AloccDiscriminator]:
    """Build R and D with matching geometry and DCGAN initialisation."""
    reconstructor = AloccReconstructor(in_channels, patch_size, base_width, depth, bottleneck=bottleneck)
    discriminator = AloccDiscriminator(in_channels, patch_size, base_width, depth)
    reconstructor.apply(dcgan_init)
    discriminator.apply(dcgan_init)
    return reconstructor, discriminator

