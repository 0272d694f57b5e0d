"""The papers' evaluation protocols, run on an exported model through the runtime's detector."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from occ.runtime.detector import Detector, StreamDetector
from occ.runtime.events.episodes import EpisodeTracker
from occ.runtime.preprocess import preprocess_clip
from occ.runtime.scoring import avid_fires, block_peaks, block_values, frame_evidence, frame_peak, frame_scores, solve_for_false_alarms
from occ.runtime.scoring.decide import FrameResult

from .datasets.common import Clip, DatasetError
from .datasets.irmnist import POSITIVES, IrMnistSpec
from .localization import location_map, truth_regions
from .metrics import (DetectionDelay, FalseAlarmRate, detection_delays, equal_error_rate, f1_score, false_alarms_per_hour,
                      pixel_level_scores, roc_auc)
from .report import ClipScores, Unavailable, record_json


def score_clips(detector: StreamDetector, clips: list[Clip], progress: Callable[[], None] | None = None) -> list[ClipScores]:
    """Run every clip through the detector (temporal context reset per clip)."""
    out = []
    for clip in clips:
        detector.reset()
        results = detector.process_clip(clip.frames)
        scores = np.array([r.score for r in results])
        decisions = np.array([r.decision for r in results])
        entry = ClipScores(clip.name, np.asarray(clip.labels, bool), scores, decisions, fps=clip.fps)
        if clip.masks is not None and results and results[0].pixel_map is not None:
            maps = np.stack([r.pixel_map for r in results])
            masks = _resize_masks(clip.masks, maps.shape[1:])
            entry.pixel_labels, entry.pixel_scores = pixel_level_scores(maps, masks)
        if clip.masks is not None and results:
            maps = [location_map(r, detector.manifest) for r in results]
            if all(m is not None for m in maps):
                runs = np.cumsum(np.diff(np.r_[0, entry.labels.astype(np.int8)]) == 1)  # anomalous run number per frame
                entry.location_maps, entry.frame_size = maps, tuple(clip.masks.shape[1:])
                entry.truth = truth_regions(list(clip.masks), runs)
        out.append(entry)
        if progress is not None:
            progress()
    return out


def _resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if masks.shape[1:] == tuple(size):
        return masks
    import cv2

    return np.stack([cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for m in masks])


def episode_spans(decisions: np.ndarray, tracker: EpisodeTracker, scores: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """The service's episodes over one clip's frames, the clip being one stream (an episode still
    open at its end closes there), by ``tracker``'s rule (a CUSUM rule reads ``scores``): per
    episode its first frame, the frame it opened on (when an operator is alerted) and its last
    frame decided anomalous."""
    decisions = np.asarray(decisions, bool)
    scores = np.zeros(len(decisions)) if scores is None else np.asarray(scores, np.float64)
    tracker.flush("end of stream")
    spans, opened_on = [], -1
    no_locations = np.zeros((0, 0), np.float32)
    for index, (score, decision) in enumerate(zip(scores.tolist(), decisions.tolist())):
        opened, closed, _ = tracker.update(FrameResult(index, score, decision, no_locations))
        if opened is not None:
            opened_on = index
        if closed is not None:
            spans.append((closed.start_frame, opened_on, closed.end_frame))
    last = tracker.flush("end of stream")
    if last is not None:
        spans.append((last.start_frame, opened_on, last.end_frame))
    return spans


def _flags(length: int, spans: list[tuple[int, int]]) -> np.ndarray:
    flags = np.zeros(length, bool)
    for first, last in spans:
        flags[first:last + 1] = True
    return flags


def alarm_counts(clips: list[ClipScores], fps: float, tracker: EpisodeTracker) -> dict[str, Any]:
    """False alarms per hour of the clips' normal frames and the detection of their events, counted
    two ways at the stored threshold.

    ``raw``: an alarm is a run of frames decided anomalous (:func:`~occ.evaluation.metrics.false_alarms_per_hour`).
    ``episodes``: an alarm is an episode of ``tracker``'s rule (:func:`episode_spans`; the service
    builds it from the model's manifest), what an operator is shown: it is false when none of its
    frames, first to last, is labelled anomalous; an event is caught from the frame an episode is
    open on (its delay counts the frames an episode waits to open).
    """
    labels = [c.labels for c in clips]
    episodes = [episode_spans(c.decisions, tracker, c.scores) for c in clips]
    covered = [_flags(len(c.labels), [(first, last) for first, _, last in spans]) for c, spans in zip(clips, episodes)]
    shown = [_flags(len(c.labels), [(opened, last) for _, opened, last in spans]) for c, spans in zip(clips, episodes)]
    return record_json({
        "raw": {"false_alarms_per_hour": false_alarms_per_hour(labels, [c.decisions for c in clips], fps),
                "detection_delay": detection_delays(labels, [c.decisions for c in clips])},
        "episodes": {"rule": tracker.rule.describe(),
                     "false_alarms_per_hour": false_alarms_per_hour(labels, covered, fps),
                     "detection_delay": detection_delays(labels, shown)},
    })


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if seconds < 7200 else f"{seconds / 3600:.3g} h"


def false_alarms_text(entry: FalseAlarmRate | Unavailable | None) -> str:
    """One cell for a report's ``false_alarms_per_hour``: the rate, with the count and the normal
    footage it is measured on (a rate from seconds of footage is a coarse one)."""
    if entry is None:
        return "n/a (frame rate unknown)"
    if isinstance(entry, Unavailable):
        return f"n/a ({entry.error})"
    interval = f"; 95 %: {entry.per_hour_low:,.0f}–{entry.per_hour_high:,.0f}"
    return f"{entry.per_hour:,.0f} ({entry.false_alarms} in {_duration(entry.normal_hours * 3600)}{interval})"


def delay_text(entry: DetectionDelay) -> str:
    """One cell for a report's ``detection_delay``: the median delay in frames, and how many events were caught."""
    if not entry.events:
        return "n/a (no anomalous events)"
    caught = f"{entry.detected}/{entry.events} events caught"
    return f"{entry.median_frames:g} ({caught})" if entry.detected else f"none ({caught})"


def mnist_protocol(detector: StreamDetector, images: np.ndarray, labels: np.ndarray, digit: int,
                   fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5), seed: int = 0) -> dict[str, Any]:
    """The ALOCC paper's MNIST protocol on an exported model: the target digit's test images plus
    other digits drawn to make up ``fraction`` of the set; F1 with the target class positive (the
    paper's convention) and with the outliers positive, at the stored threshold, and AUC."""
    results = detector.process_clip(images)
    scores = np.array([r.score for r in results])
    decisions = np.array([r.decision for r in results])
    rng = np.random.default_rng(seed)
    inliers, pool = np.nonzero(labels == digit)[0], np.nonzero(labels != digit)[0]
    rows = {}
    for fraction in fractions:
        n_out = int(round(len(inliers) * fraction / (1 - fraction)))
        chosen = np.r_[inliers, rng.choice(pool, n_out, replace=False)]
        outlier = np.r_[np.zeros(len(inliers), bool), np.ones(n_out, bool)]
        rows[f"{fraction:.0%}"] = {"f1_target": f1_score(~outlier, ~decisions[chosen]),
                                   "f1_outlier": f1_score(outlier, decisions[chosen]),
                                   "auc": roc_auc(outlier, scores[chosen]), "images": int(len(chosen))}
    return {"digit": digit, "by_outlier_fraction": rows}


# ---- AVID on digit grids (IR-MNIST) --------------------------------------------------------------
RESIDUAL_LABEL = "residual |X−I(X)|"


def region_label(manifest) -> str:
    """The region map's name in reports: D's, or the region memory's."""
    return "region map, memory" if manifest.scoring.region_scorer == "memory" else "region map D"


def avid_maps(detector: Detector, frames: np.ndarray, batch_frames: int = 32) -> dict[str, np.ndarray]:
    """Per-pixel maps of an AVID model's deployed intersection and of its two parts alone, from one
    run of the exported graph: ``intersection``, the residual, and the region map (1 − O per cell,
    repeated over its pixel block). Frames are independent images (no temporal buffer)."""
    x = preprocess_clip(frames, detector.manifest.input)
    cell = detector.manifest.regions.cell
    region = region_label(detector.manifest)
    out: dict[str, list[np.ndarray]] = {"intersection": [], RESIDUAL_LABEL: [], region: []}
    for start in range(0, len(x), batch_frames):
        y = detector.backend.infer(detector.prepare(x[start : start + batch_frames]), ["intersection", "residual", "region_anomaly"])
        out["intersection"].append(y["intersection"])
        out[RESIDUAL_LABEL].append(y["residual"])
        out[region].append(np.repeat(np.repeat(y["region_anomaly"], cell, axis=1), cell, axis=2))
    return {k: np.concatenate(v) for k, v in out.items()}


def cell_peaks(maps: dict[str, np.ndarray], cell: int) -> dict[str, np.ndarray]:
    """Per map of :func:`avid_maps`, the largest value in each ``cell``×``cell`` block: ``(N, H / cell, W / cell)``."""
    return {name: block_peaks(values, cell) for name, values in maps.items()}


def part_block_values(peaks: dict[str, np.ndarray], manifest, normal: np.ndarray) -> dict[str, np.ndarray]:
    """Each block's value in units of its threshold, per map of :func:`cell_peaks` over the
    model's blocks. The intersection's is the deployed one, before the mask is extended over
    objects (:func:`occ.runtime.scoring.block_values`, what the ``evidence`` frame score sums),
    at the stored thresholds. The residual alone (``peak``) and the region map alone
    (``odds(1 − O)``) have no threshold of their own: each is scaled so that the model's
    false-alarm rate of the ``normal`` grids (a boolean row mask) reach evidence 1, which favours
    the parts (their scale is set on the grids they are scored on; M's on held-out grids)."""
    alpha, zeta = manifest.threshold("alpha"), manifest.threshold("zeta")
    region = region_label(manifest)
    regions = np.clip(peaks[region].astype(np.float64), 1e-12, 1 - 1e-12)
    rate = manifest.thresholds["zeta"].target_false_alarm_rate or 0.01
    floor = manifest.scoring.evidence_floor or 0.0

    def own_scale(values: np.ndarray) -> np.ndarray:
        reference = values[normal]
        scale = solve_for_false_alarms(lambda s: float((frame_evidence(reference / s, floor) >= 1).mean()), rate, 1e-30, 1e30)
        return values / scale

    return {"intersection": block_values(peaks[RESIDUAL_LABEL], regions, alpha, zeta, manifest.scoring),
            RESIDUAL_LABEL: own_scale(peaks[RESIDUAL_LABEL].astype(np.float64)), region: own_scale(regions / (1 - regions))}


def grid_metrics(truth: np.ndarray, cells: np.ndarray, values: np.ndarray, floor: float) -> dict[str, float]:
    """The AVID paper's two IR-MNIST measures from boolean ``(N, grid, grid)`` truth: detection (does
    the image hold an irregular cell), scored by both frame reductions (``peak``: the largest of
    ``cells``; ``evidence``: :func:`occ.runtime.scoring.frame_evidence` of the block ``values``), and
    localization (every cell of every image ranked by ``cells``)."""
    labels = truth.reshape(len(truth), -1).any(axis=1)
    out = {}
    for reduction, scores in (("peak", frame_peak(cells)), ("evidence", frame_evidence(values, floor))):
        out[f"detection_eer_{reduction}"] = equal_error_rate(labels, scores)[0]
        out[f"detection_auc_{reduction}"] = roc_auc(labels, scores)
    return {**out, "localization_eer": equal_error_rate(truth.ravel(), cells.ravel())[0],
            "localization_auc": roc_auc(truth.ravel(), cells.ravel())}


def irmnist_protocol(detector: Detector, spec: IrMnistSpec, seed: int) -> dict[str, Any]:
    """IR-MNIST on an exported single-image AVID model: both constructions of the positive test
    grids (one to five irregular digits; every cell from all of MNIST, as the paper), the deployed
    intersection and each part alone, detection by both frame reductions (``frame_score`` names
    the model's), and the stored thresholds' decisions. ``seed`` and ``spec.grids``
    fix the test grids (drawn after the training grids); with the model's training seed and grid
    count they are the benchmark's."""
    manifest = detector.manifest
    expected = manifest.input
    if expected.channels != 1 or expected.temporal != "none" or manifest.method != "avid":
        raise DatasetError(f"{spec.folder}: IR-MNIST needs a single-image AVID model, this one is "
                           f"{manifest.method} with {expected.channels}-channel '{expected.temporal}' input")
    spec.check_size(expected.height, expected.width)
    scoring = manifest.scoring
    floor = scoring.evidence_floor if scoring.evidence_floor is not None else 0.25
    result: dict[str, Any] = {"digit": spec.digit, "test_grids": spec.test_grids, "training_grids": spec.grids, "seed": seed,
                              "frame_score": scoring.frame_score}
    for positives in POSITIVES:
        data = spec.build(seed, positives, with_train=False)
        maps = avid_maps(detector, data.test)
        digit_cell = expected.height // data.grid
        peaks = cell_peaks(maps, digit_cell)  # one cell per digit
        blocks = peaks if manifest.regions.cell == digit_cell else cell_peaks(maps, manifest.regions.cell)
        values = part_block_values(blocks, manifest, ~data.test_labels)
        # the graph's frame score, from its block values (tests/test_scoring_parity.py: the two agree)
        deployed = frame_scores(values["intersection"], scoring)
        decisions = avid_fires(deployed)
        labels = data.test_labels
        result[positives] = {
            "irregular_per_positive_grid": float(data.test_cells[labels].sum(axis=(1, 2)).mean()),
            "parts": {name: grid_metrics(data.test_cells, cells, values[name], floor) for name, cells in peaks.items()},
            "at_stored_thresholds": {"true_positive_rate": float(decisions[labels].mean()),
                                     "false_positive_rate": float(decisions[~labels].mean())},
        }
    return result
