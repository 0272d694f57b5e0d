"""One view of a model (what ``occ inspect`` shows): its manifest, the file, and which backends can
run it on this machine, and why the others cannot."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .backends import REGISTRY
from .files import file_sha256
from .fingerprint import Fingerprint
from .manifest import TEMPORAL_MEANINGS, Manifest, engine_sidecar, read_manifest
from .scoring import frame_threshold, sample_size_warning

ARTIFACTS = {".onnx": "ONNX model", ".engine": "TensorRT engine", ".pbtxt": "Triton model", ".json": "manifest file",
             ".pt": "training checkpoint"}


def model_info(path: str | Path, manifest: Manifest | None = None) -> dict[str, Any]:
    """Everything :func:`describe` says about the model at ``path`` (its manifest read from the
    file unless given: a checkpoint's comes from the training layer, which reads ``.pt``)."""
    path = Path(path)
    if path.is_dir() and (path / "config.pbtxt").is_file():
        path = path / "config.pbtxt"
    return describe(path, manifest if manifest is not None else read_manifest(path))


def describe(path: Path, manifest: Manifest) -> dict[str, Any]:
    spec = manifest.input
    info: dict[str, Any] = {
        "file": str(path),
        "artifact": ARTIFACTS.get(path.suffix, path.suffix),
        "bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "method": manifest.method,
        "recipe": (manifest.training.get("config") or {}).get("recipe"),
        "trained_on": manifest.training.get("data"),
        "occ_version": manifest.occ_version,
        "schema_version": manifest.schema_version,
        "input": {"height": spec.height, "width": spec.width, "channels": spec.channels, "color": spec.color,
                  "interpolation": spec.interpolation, "normalization": f"(pixel - {spec.norm_mean:g}) / {spec.norm_std:g}"},
        "temporal_rule": {"name": spec.temporal, "stacks": TEMPORAL_MEANINGS[spec.temporal]},
        "precision": manifest.export.get("precision", "fp32"),
        "thresholds": {name: {**dataclasses.asdict(t), "warning": sample_size_warning(name, t)}
                       for name, t in manifest.thresholds.items()},
        "threshold_history": manifest.threshold_history,
        "decision": _decision(manifest),
        "episodes": {**dataclasses.asdict(manifest.episodes), "described": manifest.episodes.describe()},
        "training_footage": _footage(manifest),
        "scene_reference": None if manifest.scene is None else {k: v for k, v in dataclasses.asdict(manifest.scene).items() if k != "png"},
        "drift_reference": None if manifest.drift is None else {k: v for k, v in dataclasses.asdict(manifest.drift).items()
                                                                if k not in ("light_edges", "score_quantiles")}
        | {"light_bins": len(manifest.drift.score_quantiles)},
        "scoring": _scoring(manifest),
        "training": {key: value for key, value in manifest.training.items() if key not in ("history", "footage")},
        "export": manifest.export,
        "backends": backends_for(path),
    }
    if path.suffix == ".engine":
        sidecar = json.loads(engine_sidecar(path).read_text())
        info["engine"] = {key: value for key, value in sidecar.items() if key != "manifest"}
    return info


def _footage(manifest: Manifest) -> str | None:
    """The training footage's fingerprint in words (its hashes say nothing at a glance)."""
    fingerprint = Fingerprint.from_dict(manifest.training.get("footage"))
    if fingerprint is None:
        return None
    return f"{fingerprint.frames} frames ({fingerprint.distinct} distinct), fingerprint of {len(fingerprint.hashes())} kept"


def _decision(manifest: Manifest) -> str:
    if manifest.method == "alocc":
        return f"fires when the largest patch score > tau ({frame_threshold(manifest):.6g})"
    return "fires when the frame score >= 1 (alpha and zeta scale the evidence)"


def _scoring(manifest: Manifest) -> dict[str, Any]:
    """The scoring contract without its per-location arrays (one value per patch), which say
    nothing at a glance."""
    scoring = dataclasses.asdict(manifest.scoring)
    if "location_stats" in scoring:
        scoring["location_stats"] = sorted(scoring["location_stats"])
    return scoring


def backends_for(path: Path) -> list[dict[str, Any]]:
    """Each registered backend: can it run this file here, and if not, why not."""
    rows = []
    for kind in REGISTRY.values():
        reason = _artifact_problem(kind.capabilities.artifact, path) or kind.unavailable()
        rows.append({"backend": kind.name, "usable": reason is None, "why_not": reason})
    return rows


def _artifact_problem(artifact: str, path: Path) -> str | None:
    if artifact == "server":
        return None if path.suffix == ".pbtxt" else "serves a Triton model repository (occ-export MODEL --triton DIR)"
    if path.suffix == artifact:
        return None
    if artifact == ".engine" and path.suffix == ".onnx":
        return "needs an engine built from this model (occ-export MODEL --engine)"
    if artifact == ".onnx" and path.suffix == ".pt":
        return "needs the exported model (occ-export MODEL)"
    return f"runs {artifact} files"
