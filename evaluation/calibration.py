"""New thresholds for a deployed model from new normal footage, the old ones kept in its history.

Footage is streamed: frames go through the detector in small batches and only what the
thresholds need is kept (ALOCC: one score per frame; AVID: the residual's block peaks and the
region map, ``rows × cols`` numbers per frame), so minutes of 1080p stay in bounded memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from occ.runtime.detector import Detector, open_detector
from occ.runtime.manifest import Manifest, write_manifest
from occ.runtime.scoring import alocc_patch_map, alocc_thresholds, avid_thresholds, block_peaks
from occ.runtime.sources import SourceError, open_source, resolve_source

from .datasets.common import Clip, DatasetError
from .datasets.spec import load_video_data
from .datasets.walkway_day import is_day, open_day

BATCH = 32


@dataclass
class CalibrationResult:
    manifest: Manifest
    frames: int
    written: Path | None = None


def _batches(detector: Detector, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Network inputs of a clip in batches, through the detector's own streaming preprocessor."""
    detector.reset()
    pending: list[np.ndarray] = []
    for frame in frames:
        pending.append(detector.preprocessor.push(frame))
        if len(pending) == BATCH:
            yield np.stack(pending)
            pending = []
    if pending:
        yield np.stack(pending)


def _alocc_statistics(detector: Detector, clips: Iterable[Iterable[np.ndarray]]) -> dict[str, np.ndarray]:
    scores = []
    for clip in clips:
        for inputs in _batches(detector, clip):
            outputs = detector.forward(detector.prepare(inputs))
            scores.append(alocc_patch_map(outputs, detector.manifest).max(axis=1))
    return {"frame_scores": np.concatenate(scores) if scores else np.zeros(0)}


def _avid_statistics(detector: Detector, clips: Iterable[Iterable[np.ndarray]]) -> dict[str, np.ndarray]:
    cell = detector.manifest.regions.cell
    peaks, regions = [], []
    for clip in clips:
        for inputs in _batches(detector, clip):
            outputs = detector.backend.infer(detector.prepare(inputs), ["residual", "region_anomaly"])
            peaks.append(block_peaks(outputs["residual"], cell).astype(np.float32))
            regions.append(np.asarray(outputs["region_anomaly"], np.float32))
    empty = np.zeros((0, detector.manifest.regions.rows, detector.manifest.regions.cols), np.float32)
    return {"peaks": np.concatenate(peaks) if peaks else empty, "regions": np.concatenate(regions) if regions else empty}


def thresholds_from_footage(detector: Detector, clips: Iterable[Iterable[np.ndarray]], false_alarm_rate: float,
                            data: str) -> CalibrationResult:
    """The detector's model with thresholds set so that ``false_alarm_rate`` of these normal frames
    fire (by its own scoring contract); every clip starts a fresh temporal context."""
    manifest = Manifest.from_dict(detector.manifest.to_dict())
    if manifest.method == "alocc":
        scores = _alocc_statistics(detector, clips)["frame_scores"]
        thresholds, frames = alocc_thresholds(scores, false_alarm_rate, data), len(scores)
    else:
        statistics = _avid_statistics(detector, clips)
        thresholds = avid_thresholds(manifest.scoring, statistics["peaks"], statistics["regions"], false_alarm_rate, data)
        frames = len(statistics["peaks"])
    for name, threshold in thresholds.items():
        manifest.set_threshold(name, threshold)
    return CalibrationResult(manifest.validate(), frames)


def _source_frames(spec: str, minutes: float, progress: Callable[[], None] | None) -> Iterator[np.ndarray]:
    deadline = time.monotonic() + minutes * 60
    with open_source(spec) as source:
        for frame in source:
            yield frame.image
            if progress is not None:
                progress()
            if source.live and time.monotonic() > deadline:
                break


def footage(data: str, minutes: float, progress: Callable[[], None] | None = None) -> tuple[list[Iterable[np.ndarray]], str]:
    """Normal footage named by ``data``: the training clips of a UCSD-layout folder or a
    ``walkway`` spec, the stretches of a walkway day with no event in view (each its own clip), or
    one video file, image folder or live source (``minutes`` of it)."""
    path = Path(data)
    if is_day(path):
        return open_day(path).normal_runs(), data
    ucsd_like = path.is_dir() and ((path / "Train").is_dir() or any(p.is_dir() for p in path.iterdir()))
    if data.startswith("walkway") or ucsd_like:
        clips: list[Clip] = load_video_data(data, splits=("train",)).train
        return [clip.frames for clip in clips], data
    try:
        resolve_source(data)
    except SourceError as exc:
        raise DatasetError(f"{exc} or a data set (UCSD-layout folder, walkway[:options])") from None
    return [_source_frames(data, minutes, progress)], data


def calibrate_model(model: str | Path, data: str, false_alarm_rate: float = 0.01, minutes: float = 5.0, backend: str = "ort-cpu",
                    progress: Callable[[], None] | None = None) -> CalibrationResult:
    """``occ calibrate``: new thresholds for ``model`` from the normal footage ``data``, stored
    with the model (the old values go to its threshold history)."""
    detector = open_detector(str(model), backend)
    try:
        clips, name = footage(data, minutes, progress)
        result = thresholds_from_footage(detector, clips, false_alarm_rate, f"{name} (normal)")
    finally:
        detector.close()
    if result.frames == 0:
        raise DatasetError(f"{data}: no frames to calibrate on")
    for threshold in result.manifest.thresholds.values():
        threshold.data = f"{name} (normal, {result.frames} frames)"
    result.written = write_manifest(model, result.manifest)
    return result
