"""How graph outputs become a frame score, a decision, a mask and boxes: the one home of that rule.

Every consumer calls :func:`decide`: the CPU and GPU detectors, calibration, evaluation, the
Triton client and the DeepStream probe. The rule itself is the manifest's scoring contract
(:class:`~occ.runtime.manifest.AloccScoring`, :class:`~occ.runtime.manifest.AvidScoring`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..manifest import Manifest
from ..preprocess.reference import PatchGrid
from .statistics import alocc_frame_scores, patch_scores
from .zones import ZoneMaps


@dataclass
class FrameResult:
    """What the scoring contract says about one frame.

    Attributes:
        index: frame number in the stream (0-based).
        score: frame anomaly score (higher = more anomalous).
        decision: True when the frame is anomalous.
        location_scores: per-patch (ALOCC) or per-region (AVID) scores as a ``rows × cols`` map.
        mask: the flagged pixels at the network size: AVID's mask M; for ALOCC the union of the
            patches over τ.
        boxes: ``[x1, y1, x2, y2]`` of each anomalous region (one per connected part of ``mask``) (``x2``, ``y2`` exclusive): in source-frame
            pixels once a detector has placed the result on its frame (:func:`on_frame`), in network
            pixels as :func:`decide` gives them.
        timestamp: capture time in seconds, when the source gives one.
        pixel_map: AVID's intersection map (``>= 1`` on the mask), when the graph output was fetched.
        frame_size: ``(height, width)`` of the source frame, once placed on it.
    """

    index: int
    score: float
    decision: bool
    location_scores: np.ndarray
    mask: np.ndarray | None = None
    boxes: list[list[int]] = field(default_factory=list)
    timestamp: float | None = None
    pixel_map: np.ndarray | None = None
    frame_size: tuple[int, int] | None = None

    @property
    def mask_area(self) -> int:
        """Flagged pixels: in source-frame pixels once the result is placed on its frame (as
        ``boxes``), in network pixels before."""
        if self.mask is None:
            return 0
        area = int(self.mask.sum())
        if self.frame_size is None:
            return area
        return int(round(area * (self.frame_size[0] * self.frame_size[1]) / (self.mask.shape[0] * self.mask.shape[1])))


def decide(outputs: dict[str, np.ndarray], manifest: Manifest, zones: ZoneMaps | None = None) -> list[FrameResult]:
    """Graph outputs of a batch of frames → one :class:`FrameResult` per frame, by the manifest's
    scoring contract and thresholds; ``zones`` (:func:`~occ.runtime.scoring.zones.rasterise`) take
    their ignored pixels or patches out of the score, decision, mask and boxes, and scale the
    thresholds of their sensitivity zones."""
    return _RULES[manifest.method](outputs, manifest, zones)


def scoring_outputs(manifest: Manifest) -> list[str]:
    """The graph outputs :func:`decide` reads."""
    return manifest.scoring.outputs


def frame_threshold(manifest: Manifest) -> float:
    """The value a frame score is compared with: τ for ALOCC (fires above it), 1 for AVID (fires
    at it), for plots and overlays that draw the threshold next to the score."""
    return manifest.threshold("tau") if manifest.method == "alocc" else 1.0


def thresholds_in_force(manifest: Manifest) -> dict[str, float]:
    """The thresholds a model decides with, by name (the manifest's, or the overrides it was given),
    as events, metrics and reports name them."""
    return {name: manifest.threshold(name) for name in sorted(manifest.thresholds)}


def alocc_fires(scores: np.ndarray, tau: float) -> np.ndarray:
    """ALOCC's threshold rule, for frames and for patches alike."""
    return np.asarray(scores) > tau


def avid_fires(scores: np.ndarray) -> np.ndarray:
    """AVID's decision: the graph's frame score reaches 1 (with ``peak``: the mask is not empty)."""
    return np.asarray(scores) >= 1.0


def alocc_patch_map(outputs: dict[str, np.ndarray], manifest: Manifest) -> np.ndarray:
    """ALOCC's patch scores ``(frames, patches)`` from the graph outputs of a batch."""
    count = manifest.patches.count(manifest.input)
    terms = manifest.scoring.terms
    frames = np.asarray(outputs[next(iter(terms))]).size // count
    return patch_scores({name: np.asarray(outputs[name]).reshape(frames, count) for name in terms}, manifest.scoring)


def on_frame(result: FrameResult, manifest: Manifest, frame_size: tuple[int, int]) -> FrameResult:
    """Place a result on its source frame: boxes from network to source-frame pixels."""
    scale_y, scale_x = frame_size[0] / manifest.input.height, frame_size[1] / manifest.input.width
    result.boxes = [[int(np.floor(x1 * scale_x)), int(np.floor(y1 * scale_y)), int(np.ceil(x2 * scale_x)), int(np.ceil(y2 * scale_y))]
                    for x1, y1, x2, y2 in result.boxes]
    result.frame_size = (int(frame_size[0]), int(frame_size[1]))
    return result


def _decide_alocc(outputs: dict[str, np.ndarray], manifest: Manifest, zones: ZoneMaps | None) -> list[FrameResult]:
    grid = PatchGrid.from_spec(manifest.patches, manifest.input)
    patch_boxes = grid.boxes()  # [top, left, bottom, right]
    tau = manifest.threshold("tau")
    results = []
    for patches in alocc_patch_map(outputs, manifest):
        if zones is not None:  # a sensitivity zone's patch is held against factor·τ: its score in units of τ
            patches = np.where(zones.patch_ignored, -np.inf, patches / zones.patch_factor)
        # a frame whose every patch is ignored has nothing to score: the lowest score, never a decision
        kept = np.isfinite(patches)
        score = float(alocc_frame_scores(patches)) if kept.any() else float(np.finfo(np.float32).min)
        # overlapping patches over τ are one object: one box around their union, not one per patch
        mask = np.zeros((manifest.input.height, manifest.input.width), bool)
        for top, left, bottom, right in patch_boxes[alocc_fires(patches, tau)]:
            mask[top:bottom, left:right] = True
        if zones is not None:  # a kept patch that reaches into a zone flags only its pixels outside it
            mask &= ~zones.ignored
        shown = grid.to_map(_shown(patches, kept if zones is not None else None))
        results.append(FrameResult(index=0, score=score, decision=bool(alocc_fires(score, tau)),
                                   location_scores=shown, mask=mask, boxes=mask_boxes(mask)))
    return results


def _decide_avid(outputs: dict[str, np.ndarray], manifest: Manifest, zones: ZoneMaps | None) -> list[FrameResult]:
    scores = np.asarray(outputs["score"], np.float32).reshape(-1)
    masks = np.asarray(outputs["mask"]).astype(bool)
    regions = np.asarray(outputs["region_anomaly"])
    pixel_maps = outputs.get("intersection")
    if zones is not None:
        masks = masks & ~zones.ignored
        # a frame whose flagged pixels all lie in ignore zones scores just below 1: it does not fire
        scores = np.where(masks.reshape(len(scores), -1).any(axis=1), scores,
                          np.minimum(scores, np.nextafter(np.float32(1), np.float32(0))))
    fires = avid_fires(scores)
    return [FrameResult(index=0, score=float(scores[i]), decision=bool(fires[i]), location_scores=regions[i], mask=masks[i],
                        boxes=mask_boxes(masks[i]), pixel_map=None if pixel_maps is None else pixel_maps[i])
            for i in range(len(scores))]


def _shown(patches: np.ndarray, kept: np.ndarray | None) -> np.ndarray:
    """Patch scores as logs and overlays show them: an ignored patch at the lowest kept score
    (JSON has no infinity)."""
    if kept is None or kept.all():
        return patches
    return np.where(kept, patches, float(patches[kept].min()) if kept.any() else 0.0)


_RULES = {"alocc": _decide_alocc, "avid": _decide_avid}


def mask_boxes(mask: np.ndarray, min_area: int = 1) -> list[list[int]]:
    """``[x1, y1, x2, y2]`` of each 8-connected component of a mask (``x2``, ``y2`` exclusive)."""
    if not mask.any():
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for label in range(1, count):
        left, top, width, height, area = (int(v) for v in stats[label])
        if area >= min_area:
            boxes.append([left, top, left + width, top + height])
    return boxes
