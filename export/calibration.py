"""A checkpoint's export over a model that ``occ calibrate`` changed: the calibration is never lost.

The rule: exporting ``model.pt`` to an ``.onnx`` that holds a calibration **of the same checkpoint**
(its ``export.source_checkpoint_sha256`` is the checkpoint's SHA-256) carries that model's
thresholds, threshold history and episode rule over to the new file: the weights are the same, so
the calibration still holds (a re-export for another opset or a fixed exporter must not undo a
site's thresholds). Over a calibration of **another** checkpoint (the model was retrained), the
calibration no longer fits the weights and there is nothing to carry: the export is refused
unless ``--force`` says to replace it.
"""
from __future__ import annotations

from pathlib import Path

from occ.runtime.files import file_sha256
from occ.runtime.manifest import Manifest, ManifestError, read_manifest


class CalibrationWouldBeLost(ValueError):
    """An export would replace a calibrated model of another checkpoint; one line."""


def is_calibrated(manifest: Manifest) -> bool:
    """True when ``occ calibrate`` changed the model's thresholds (training leaves no history)."""
    return bool(manifest.threshold_history) or any(t.by for t in manifest.thresholds.values())


def calibration_to_keep(target: Path, checkpoint: Path, force: bool = False) -> Manifest | None:
    """The calibrated manifest a checkpoint's export to ``target`` must carry over, or None when
    there is none to keep (see the module docstring).

    Raises:
        CalibrationWouldBeLost: ``target`` holds a calibration of another checkpoint and ``force`` is off.
    """
    if not target.is_file():
        return None
    try:
        existing = read_manifest(target)
    except ManifestError:
        return None  # not an occ model: nothing of ours to keep
    if not is_calibrated(existing):
        return None
    if existing.export.get("source_checkpoint_sha256") == file_sha256(checkpoint):
        return existing
    if force:
        return None
    raise CalibrationWouldBeLost(f"{target}: holds a calibration of another checkpoint, which exporting {checkpoint.name} over it would "
                                 "lose; choose another --out, or --force to replace it")


def carry_calibration(manifest: Manifest, calibrated: Manifest) -> Manifest:
    """``manifest`` (a fresh export's) with the thresholds, their history and the episode rule of
    ``calibrated``."""
    carried = Manifest.from_dict(manifest.to_dict())
    kept = Manifest.from_dict(calibrated.to_dict())
    carried.thresholds, carried.threshold_history, carried.episodes = kept.thresholds, kept.threshold_history, kept.episodes
    return carried.validate()
