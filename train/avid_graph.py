"""AVID's deployed graph (Sabokrou et al., ACCV 2018, Eq. 4 and the contract's variants):
residual, region map, intersection, mask and frame score, composed from the networks of
:mod:`occ.train.avid` and the parts in :mod:`occ.train.avid_blocks` by a manifest's scoring
contract (:func:`create_avid_graph`). Exported as is; the runtime mirrors its rule in numpy
(:mod:`occ.runtime.scoring.thresholds`, checked by tests/test_scoring_parity.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from occ.runtime.manifest import AvidScoring

from .avid import AvidInpainter
from .avid_blocks import BinaryGate, ChannelMean, EvidenceScore, HideNewest, NewestChannel, ObjectReach, PeakScore, SoftGate, WindowMean


class AvidGraph(nn.Module):
    """The deployed graph: residual, region map, intersection, mask and frame score.

    Inputs: ``frames`` ``(N, C, H, W)``, ``alpha`` and ``zeta`` ``(1,)`` (graph inputs with the
    calibrated values as defaults). Outputs (:meth:`output_names`): ``score`` ``(N,)``, ``mask``
    ``(N, H, W)`` (intersection ``>= 1``), ``residual`` ``(N, H, W)``, ``region_anomaly`` ``(N,
    rows, cols)`` (``1 − O``) and ``intersection`` ``(N, H, W)`` in units of α. What each part does
    is the manifest's :class:`~occ.runtime.manifest.AvidScoring`; :func:`create_avid_graph` builds
    the parts from it. The decision, ``score >= 1``, is the runtime's (:func:`occ.runtime.scoring.decide`).

    Args:
        inpainter: I.
        region_scorer: D, or a :class:`RegionMemory` in its place; logits per region, positive = normal.
        input_mask: what I sees of the frames (:class:`HideNewest` or ``nn.Identity``).
        residual_channels: :class:`NewestChannel` or :class:`ChannelMean`.
        residual_window: :class:`WindowMean` or ``nn.Identity``.
        gate: :class:`BinaryGate` or :class:`SoftGate`.
        frame_score: :class:`PeakScore` or :class:`EvidenceScore`.
        mask_extension: :class:`ObjectReach`.
    """

    def __init__(self, inpainter: AvidInpainter, region_scorer: nn.Module, input_mask: nn.Module, residual_channels: nn.Module,
                 residual_window: nn.Module, gate: nn.Module, frame_score: nn.Module, mask_extension: nn.Module):
        super().__init__()
        self.inpainter = inpainter
        self.detector = region_scorer  # the state-dict name checkpoints use
        self.input_mask = input_mask
        self.residual_channels = residual_channels
        self.residual_window = residual_window
        self.gate = gate
        self.frame_score = frame_score
        self.mask_extension = mask_extension

    @staticmethod
    def output_names() -> list[str]:
        return ["score", "mask", "residual", "region_anomaly", "intersection"]

    def inpaint(self, frames: torch.Tensor) -> torch.Tensor:
        return self.inpainter(self.input_mask(frames))

    def residual(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, H, W)``: |X − I(X)| of the residual channels, window-averaged."""
        return self.residual_window(self.residual_channels(torch.abs(frames - self.inpaint(frames)))).squeeze(1)

    def region_anomaly(self, frames: torch.Tensor) -> torch.Tensor:
        # sigmoid(−logit) = 1 − O, computed from the logit so it stays accurate near 0 and 1
        return torch.sigmoid(-self.detector(frames))

    def forward(self, frames: torch.Tensor, alpha: torch.Tensor, zeta: torch.Tensor) -> tuple[torch.Tensor, ...]:
        residual = self.residual(frames)
        anomaly_logit = -self.detector(frames)
        regions = torch.sigmoid(anomaly_logit)  # 1 − O, as region_anomaly, without running D twice
        # nearest upsampling by the cell size maps each O cell onto exactly its pixel block B_i
        logit_up = F.interpolate(anomaly_logit.unsqueeze(1), scale_factor=float(self.detector.cell), mode="nearest").squeeze(1)
        values = self.gate(residual, logit_up, alpha, zeta) / alpha
        score = self.frame_score(values)
        intersection = self.mask_extension(values, residual / alpha)
        return score, intersection >= 1.0, residual, regions, intersection


_RESIDUALS = {"newest": (HideNewest, NewestChannel), "mean": (nn.Identity, ChannelMean)}
_GATES = {"binary": lambda scoring: BinaryGate(), "soft": lambda scoring: SoftGate(scoring.residual_weight)}
_FRAME_SCORES = {"peak": lambda scoring, cell: PeakScore(), "evidence": lambda scoring, cell: EvidenceScore(cell, scoring.evidence_floor)}


def create_avid_graph(inpainter: AvidInpainter, region_scorer: nn.Module, scoring: AvidScoring) -> AvidGraph:
    """The deployed graph whose parts are the scoring contract's choices."""
    scoring.validate()
    input_mask, channels = _RESIDUALS[scoring.residual]
    window = WindowMean(scoring.residual_kernel) if scoring.residual_kernel > 1 else nn.Identity()
    return AvidGraph(inpainter, region_scorer, input_mask(), channels(), window, _GATES[scoring.gate](scoring),
                     _FRAME_SCORES[scoring.frame_score](scoring, region_scorer.cell), ObjectReach(scoring.mask_reach)).eval()
