"""Recompute a deployed model's thresholds on new normal data, keeping the old ones in its history."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets.common import Clip
from .detector import AloccDetector, AvidDetector, Detector
from .manifest import METADATA_KEY, Manifest, write_atomic
from .preprocess import preprocess_clip
from .scoring import (REGION_QUANTILE, calibrate_avid_thresholds, calibrate_graded_thresholds, frame_score_of, has_graded_gate,
                      quantile_threshold, residual_weight_of)


def calibrate(detector: Detector, clips: list[Clip], false_alarm_rate: float, data: str) -> Manifest:
    """New thresholds for ``detector``'s model from normal ``clips``; returns the updated manifest."""
    manifest = Manifest.from_dict(detector.manifest.to_dict())
    if isinstance(detector, AloccDetector):
        scores = []
        for clip in clips:
            detector.reset()
            scores += [r.score for r in detector.process_clip(clip.frames)]
        manifest.set_threshold("tau", quantile_threshold(np.array(scores), false_alarm_rate, data))
        return manifest
    assert isinstance(detector, AvidDetector)
    residuals, regions = [], []
    for clip in clips:
        inputs = preprocess_clip(clip.frames, manifest.input)
        for start in range(0, len(inputs), 64):
            out = detector.backend.infer({"frames": np.ascontiguousarray(inputs[start : start + 64])}, ["residual", "region_anomaly"])
            residuals.append(out["residual"])
            regions.append(out["region_anomaly"])
    # the rule the model's thresholds were first set by (recorded in its training configuration),
    # so recalibration on site moves α and ζ the same way
    residual, region = np.concatenate(residuals), np.concatenate(regions)
    if has_graded_gate(manifest):
        thresholds = calibrate_graded_thresholds(residual, region, manifest.regions.cell, false_alarm_rate, data,
                                                 frame_score_of(manifest), residual_weight_of(manifest))
    else:
        quantile = (manifest.training.get("config") or {}).get("region_quantile", REGION_QUANTILE)
        thresholds = calibrate_avid_thresholds(residual, region, manifest.regions.cell, false_alarm_rate, data,
                                               region_quantile=quantile, frame_score=frame_score_of(manifest))
    for name, threshold in thresholds.items():
        manifest.set_threshold(name, threshold)
    return manifest


def write_manifest(model_path: str | Path, manifest: Manifest) -> Path:
    """Store recalibrated thresholds with the model: in an engine's ``<name>.engine.json`` sidecar,
    or inside an ONNX file (see :func:`write_manifest_into_onnx`)."""
    import json

    model_path = Path(model_path)
    if model_path.suffix == ".engine":
        sidecar = model_path.with_name(model_path.name + ".json")
        data = json.loads(sidecar.read_text())
        data["manifest"] = manifest.to_dict()
        write_atomic(sidecar, json.dumps(data, indent=2).encode())
        return sidecar
    return write_manifest_into_onnx(model_path, manifest)


def write_manifest_into_onnx(model_path: str | Path, manifest: Manifest) -> Path:
    """Replace the embedded manifest (and AVID's α/ζ defaults) of an ONNX file, atomically.

    Needs the ``onnx`` package; a sidecar ``<model>.json`` is written as well, as beside engines.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise RuntimeError("rewriting an ONNX file needs the onnx package: pip install onnx") from None
    model_path = Path(model_path)
    model = onnx.load(str(model_path))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = manifest.to_json()
    for initializer in model.graph.initializer:
        if initializer.name in ("alpha", "zeta"):
            initializer.CopyFrom(numpy_helper.from_array(np.array([manifest.threshold(initializer.name)], np.float32), initializer.name))
    write_atomic(model_path, model.SerializeToString())
    manifest.write(model_path.with_suffix(model_path.suffix + ".json"))
    return model_path
