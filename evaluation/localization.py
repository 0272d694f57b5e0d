"""Localization measured the field's way: the region-based and track-based detection criteria
(RBDC, TBDC) of Ramachandra & Jones, "Street Scene: A new dataset and evaluation protocol for video
anomaly detection", WACV 2020. Written from the paper's definitions (numpy and OpenCV only).

- A ground-truth region is one connected anomalous part of a frame; a track is one anomalous event
  (the same object's regions over its frames).
- A detected region is a true positive for every ground-truth region of its frame it overlaps with
  intersection over union (IoU) >= ``overlap`` (0.1); it is a false positive if it overlaps none.
- At one threshold: the region detection rate is the share of ground-truth regions detected; a track
  is detected if at least ``track_share`` (0.1) of its regions are; the false-positive rate is the
  number of false-positive regions per frame over all frames (normal and anomalous).
- RBDC and TBDC are the areas under the region and track detection rate against false positives per
  frame, for false-positive rates from 0 to ``max_false_positives`` (1): both lie in [0, 1].

Curve conventions (the paper leaves them open): the curve starts at (0, 0) (a threshold above every
score detects nothing); points are taken in order of false-positive rate, each rate is the best any
threshold reaches at or below that false-positive rate (a lower threshold that merges a region with
its surroundings finds less at more false positives: nobody would choose it), and points are joined
by straight lines; past the largest false-positive rate any threshold reaches, the last rate holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from occ.runtime.manifest import Manifest
from occ.runtime.preprocess import PatchGrid
from occ.runtime.scoring.decide import FrameResult, mask_boxes

from .metrics import MetricError

Box = Sequence[float]  # [x1, y1, x2, y2], x2 and y2 exclusive
OVERLAP = 0.1
TRACK_SHARE = 0.1


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes ``[x1, y1, x2, y2]`` (``x2``, ``y2`` exclusive)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def match_regions(detected: Sequence[Box], truth: Sequence[Box], overlap: float = OVERLAP) -> tuple[np.ndarray, int]:
    """One frame: which ground-truth regions are detected, and how many detected regions are false positives."""
    if not len(truth):
        return np.zeros(0, bool), len(detected)
    if not len(detected):
        return np.zeros(len(truth), bool), 0
    ious = np.array([[box_iou(d, t) for t in truth] for d in detected])
    hits = ious >= overlap
    return hits.any(axis=0), int((~hits.any(axis=1)).sum())


@dataclass(frozen=True)
class TruthRegion:
    """A ground-truth region: its frame, its track (event) and its box."""

    frame: int
    track: int
    box: tuple[int, int, int, int]


def truth_regions(masks: Sequence[np.ndarray | None], tracks: Sequence[int]) -> list[TruthRegion]:
    """Ground-truth regions from exact pixel masks: one region per 8-connected part of each frame's
    mask, in the track given for that frame (``masks[i]`` None or empty: no region in frame ``i``)."""
    regions = []
    for frame, (mask, track) in enumerate(zip(masks, tracks)):
        if mask is not None and mask.any():
            regions += [TruthRegion(frame, int(track), tuple(box)) for box in mask_boxes(mask)]
    return regions


def _area(rates: np.ndarray, false_positives: np.ndarray, limit: float) -> float:
    order = np.lexsort((rates, false_positives))
    x = np.r_[0.0, false_positives[order], max(limit, float(false_positives.max(initial=0.0)))]
    best = np.maximum.accumulate(rates[order]) if rates.size else rates
    y = np.r_[0.0, best, best[-1] if best.size else 0.0]
    inside = x <= limit
    if not inside.all():  # cut the curve at the limit, interpolating the segment that crosses it
        first_out = int(np.argmin(inside))
        x0, x1, y0, y1 = x[first_out - 1], x[first_out], y[first_out - 1], y[first_out]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0) if x1 > x0 else y1
        x, y = np.r_[x[:first_out], limit], np.r_[y[:first_out], y_limit]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2) / limit)


@dataclass
class CurvePoint:
    """One threshold's point of the RBDC and TBDC curves."""

    threshold: float | None
    false_positives_per_frame: float
    region_rate: float
    track_rate: float


@dataclass
class DetectionCriteria:
    """RBDC and TBDC (:func:`detection_criteria`), what they were counted on, and their curve."""

    rbdc: float
    tbdc: float
    regions: int
    tracks: int
    frames: int
    overlap: float
    track_share: float
    max_false_positives_per_frame: float
    curve: list[CurvePoint]
    criterion: str  # the criterion in words, with its parameters


def detection_criteria(truth: Sequence[TruthRegion], detections: Sequence[Sequence[Sequence[Box]]], frames: int,
                       thresholds: Sequence[float] | None = None, overlap: float = OVERLAP, track_share: float = TRACK_SHARE,
                       max_false_positives: float = 1.0) -> DetectionCriteria:
    """RBDC and TBDC from detections at a series of thresholds.

    Args:
        truth: every ground-truth region of the footage (:func:`truth_regions`).
        detections: per threshold, per frame (``frames`` of them), the detected boxes.
        frames: number of frames in the footage (normal ones included).
        thresholds: the threshold of each entry of ``detections``, reported beside its point.
        overlap: IoU a detected region needs with a ground-truth region to detect it.
        track_share: share of a track's regions that must be detected for the track to count.
        max_false_positives: upper end of the false-positive-per-frame range integrated over.
    """
    if not truth:
        raise MetricError("RBDC/TBDC need at least one ground-truth region")
    if frames < 1:
        raise MetricError("RBDC/TBDC need at least one frame")
    by_frame: dict[int, list[int]] = {}
    for i, region in enumerate(truth):
        by_frame.setdefault(region.frame, []).append(i)
    track_ids = np.array([r.track for r in truth])
    tracks = np.unique(track_ids)
    points = []
    for level, per_frame in enumerate(detections):
        if len(per_frame) != frames:
            raise MetricError(f"detections at threshold {level} cover {len(per_frame)} frames, not {frames}")
        detected = np.zeros(len(truth), bool)
        false_positives = 0
        for frame, boxes in enumerate(per_frame):
            indices = by_frame.get(frame, [])
            hits, wrong = match_regions(boxes, [truth[i].box for i in indices], overlap)
            detected[indices] = hits
            false_positives += wrong
        track_hits = sum(detected[track_ids == track].mean() >= track_share for track in tracks)
        points.append(CurvePoint(threshold=None if thresholds is None else float(thresholds[level]),
                                 false_positives_per_frame=false_positives / frames,
                                 region_rate=float(detected.mean()), track_rate=float(track_hits / len(tracks))))
    fp = np.array([p.false_positives_per_frame for p in points])
    criterion = (f"RBDC/TBDC (Ramachandra & Jones 2020): IoU >= {overlap:g}, a track at >= {track_share * 100:g} % of its regions, "
                 f"false positives per frame in [0, {max_false_positives:g}]")
    return DetectionCriteria(rbdc=_area(np.array([p.region_rate for p in points]), fp, max_false_positives),
                             tbdc=_area(np.array([p.track_rate for p in points]), fp, max_false_positives),
                             regions=len(truth), tracks=int(len(tracks)), frames=frames, overlap=overlap, track_share=track_share,
                             max_false_positives_per_frame=max_false_positives, curve=points, criterion=criterion)


def map_detections(maps: Sequence[np.ndarray], thresholds: Sequence[float], frame_size: tuple[int, int]) -> list[list[list[list[int]]]]:
    """Detected regions of per-pixel score maps: at each threshold, one box per 8-connected part of
    ``map >= threshold`` (NaN never detects), placed from the map's pixels on the ``frame_size`` frame."""
    height, width = frame_size
    out = []
    for threshold in thresholds:
        per_frame = []
        for score_map in maps:
            scale_y, scale_x = height / score_map.shape[0], width / score_map.shape[1]
            with np.errstate(invalid="ignore"):
                mask = score_map >= threshold
            per_frame.append([[int(np.floor(x1 * scale_x)), int(np.floor(y1 * scale_y)), int(np.ceil(x2 * scale_x)), int(np.ceil(y2 * scale_y))]
                              for x1, y1, x2, y2 in mask_boxes(mask)])
        out.append(per_frame)
    return out


def sweep_thresholds(maps: Sequence[np.ndarray], levels: int = 40) -> np.ndarray:
    """Thresholds for the curve: quantiles of the frames' map maxima, from every frame detecting
    something to only the highest frame, highest first."""
    peaks = np.array([np.nanmax(m) for m in maps if np.isfinite(m).any()])
    if peaks.size == 0:
        raise MetricError("the score maps hold no finite value")
    return np.unique(np.quantile(peaks, np.linspace(0, 1, levels)))[::-1]


def maps_criteria(maps: Sequence[np.ndarray], truth: Sequence[TruthRegion], frame_size: tuple[int, int],
                  levels: int = 40) -> DetectionCriteria:
    """RBDC and TBDC of per-pixel score maps (one per frame: AVID's intersection map, ALOCC's patch
    scores painted on the pixels each patch covers, :func:`location_map`) against ground-truth
    regions at the source ``frame_size``, over thresholds from :func:`sweep_thresholds`."""
    thresholds = sweep_thresholds(maps, levels)
    return detection_criteria(truth, map_detections(maps, thresholds, frame_size), len(maps), thresholds)


def location_map(result: FrameResult, manifest: Manifest) -> np.ndarray | None:
    """A frame's per-pixel localization scores at the network size, whose connected parts over a
    threshold are the regions the runtime would report at that threshold: AVID's intersection map
    (fetched with ``pixel_maps``; None without it), ALOCC's patch scores painted on the pixels each
    patch covers (a pixel holds its highest patch; NaN where no patch reaches)."""
    if manifest.method == "avid":
        return result.pixel_map
    grid = PatchGrid.from_spec(manifest.patches, manifest.input)
    return grid.paint(np.asarray(result.location_scores).ravel(), manifest.input.height, manifest.input.width)
