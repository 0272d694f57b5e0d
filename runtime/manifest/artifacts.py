"""The manifest of any occ artifact, read and written: an ONNX model, an engine's sidecar, a Triton
configuration, a manifest file."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .errors import ManifestError
from .onnx_io import _from_onnx, _import_onnx
from .schema import METADATA_KEY, Manifest


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The manifest of any occ artifact: an ``.onnx`` model (embedded), an ``.engine`` (its
    ``.engine.json`` sidecar), a Triton model folder or its ``config.pbtxt``, or a manifest
    ``.json`` (a sidecar, or what ``occ-export --deepstream`` writes)."""
    path = Path(path)
    if path.is_dir() and (path / "config.pbtxt").is_file():
        path = path / "config.pbtxt"
    if not path.exists():
        raise ManifestError(f"{path}: model file not found")
    readers = {".onnx": _from_onnx, ".engine": _from_engine, ".pbtxt": _from_triton_config, ".json": _from_json_file}
    reader = readers.get(path.suffix)
    if reader is None or not path.is_file():
        raise ManifestError(f"{path}: not an occ model (expected .onnx, .engine, a Triton model folder or a manifest .json)")
    return reader(path)


def load_manifest_file(path: str | os.PathLike) -> Manifest:
    """A manifest ``.json`` file (or an engine sidecar, which holds one under ``manifest``)."""
    return _from_json_file(Path(path))


def engine_sidecar(engine: str | os.PathLike) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def write_manifest(path: str | os.PathLike, manifest: Manifest) -> Path:
    """Store a changed manifest (recalibrated thresholds) with its model, atomically: inside an
    ONNX file, or in an engine's sidecar. Returns the file that now holds it."""
    path = Path(path)
    manifest.validate()
    if path.suffix == ".engine":
        sidecar = engine_sidecar(path)
        data = _read_json(sidecar)
        data["manifest"] = manifest.to_dict()
        return write_atomic(sidecar, json.dumps(data, indent=2).encode())
    if path.suffix != ".onnx":
        raise ManifestError(f"{path}: thresholds are stored in .onnx models and .engine sidecars, not in {path.suffix or 'this file'}")
    onnx = _import_onnx(path)
    model = onnx.load(str(path))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = manifest.to_json()
    write_atomic(path, model.SerializeToString())
    return path


def _from_engine(path: Path) -> Manifest:
    sidecar = engine_sidecar(path)
    if not sidecar.is_file():
        raise ManifestError(f"{sidecar}: the engine's manifest sidecar is missing; rebuild with occ-export --engine")
    return _from_json_file(sidecar)


def _from_json_file(path: Path) -> Manifest:
    data = _read_json(path)
    if isinstance(data, dict) and "manifest" in data and "method" not in data:
        data = data["manifest"]  # an engine sidecar
    return Manifest.from_dict(data, str(path))


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


_TRITON_PARAMETER = re.compile(r'key:\s*"' + re.escape(METADATA_KEY) + r'"\s*value:\s*\{\s*string_value:\s*"((?:[^"\\]|\\.)*)"')


def _from_triton_config(path: Path) -> Manifest:
    text = path.read_text()
    match = _TRITON_PARAMETER.search(text)
    if match is None:
        raise ManifestError(f"{path}: the configuration carries no occ manifest (export the repository with occ-export --triton)")
    return Manifest.from_json(re.sub(r"\\(.)", r"\1", match.group(1)), str(path))
