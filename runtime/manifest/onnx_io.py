"""The manifest in an ONNX model's metadata (under :data:`METADATA_KEY`)."""
from __future__ import annotations

from pathlib import Path

from .errors import ManifestError
from .schema import METADATA_KEY, Manifest


def manifest_from_metadata(metadata: dict[str, str], source: str) -> Manifest:
    """Read the manifest from an ONNX model's custom metadata map."""
    if METADATA_KEY not in metadata:
        raise ManifestError(f"{source}: no occ manifest in the model metadata (was it exported by occ-export?)")
    return Manifest.from_json(metadata[METADATA_KEY], source)


def _import_onnx(path: Path):
    try:
        import onnx
    except ImportError:
        raise ManifestError(f"{path}: reading or rewriting an ONNX file needs the onnx package: pip install onnx") from None
    return onnx


def _from_onnx(path: Path) -> Manifest:
    onnx = _import_onnx(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a damaged file
        raise ManifestError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    return manifest_from_metadata({p.key: p.value for p in model.metadata_props}, str(path))
