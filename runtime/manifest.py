"""The model manifest: every setting a deployed model needs, in one versioned JSON document.

It travels with the model from training to the camera: inside the checkpoint, in the ONNX file's
``metadata_props`` under :data:`METADATA_KEY`, and beside every engine as ``<name>.json``. The
runtime refuses a model whose manifest is missing, invalid, or from a newer major schema.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.0"
METADATA_KEY = "occ.manifest"

METHODS = ("alocc", "avid")
COLORS = ("gray",)
INTERPOLATIONS = ("bilinear", "area", "nearest")
# none: one frame; avid_triplet: <I'(t-4), I'(t-2), I'(t)> with I'(t) = (I(t) + I(t-1)) / 2;
# frame_diff: [I(t), I(t) - I(t-1)] (appearance plus signed motion for ALOCC patches).
TEMPORAL_RULES = ("none", "avid_triplet", "frame_diff")
PRECISIONS = ("fp32", "fp16")
THRESHOLD_NAMES = {"alocc": ("tau",), "avid": ("alpha", "zeta", "tau")}


class ManifestError(ValueError):
    """A manifest is missing, malformed or incompatible; the message is one line."""


@dataclass
class InputSpec:
    """How a raw camera frame becomes the network input.

    Args:
        height: frame height after resize, in pixels.
        width: frame width after resize, in pixels.
        channels: channels of the network input (1 for gray, 3 for the AVID triplet).
        color: colour handling of the raw frame; only ``gray`` (luma, BT.601) is supported.
        interpolation: resize interpolation (``bilinear`` = OpenCV INTER_LINEAR).
        norm_mean: value subtracted from 0..255 pixels.
        norm_std: divisor applied after subtracting ``norm_mean``.
        temporal: temporal stacking rule, one of :data:`TEMPORAL_RULES`.
    """

    height: int
    width: int
    channels: int
    color: str = "gray"
    interpolation: str = "bilinear"
    norm_mean: float = 127.5
    norm_std: float = 127.5
    temporal: str = "none"

    def validate(self) -> None:
        _positive_int("input.height", self.height)
        _positive_int("input.width", self.width)
        _positive_int("input.channels", self.channels)
        _choice("input.color", self.color, COLORS)
        _choice("input.interpolation", self.interpolation, INTERPOLATIONS)
        _choice("input.temporal", self.temporal, TEMPORAL_RULES)
        if not self.norm_std > 0:
            raise ManifestError(f"input.norm_std must be > 0, got {self.norm_std}")
        expected = {"none": 1, "avid_triplet": 3, "frame_diff": 2}[self.temporal]
        if self.channels != expected:
            raise ManifestError(
                f"input.channels is {self.channels} but temporal rule '{self.temporal}' makes {expected}"
            )


@dataclass
class PatchSpec:
    """ALOCC patch geometry on the resized frame.

    Args:
        size: patch side in pixels.
        stride: step between patch origins in pixels.
        roi: optional ``[top, bottom, left, right]`` pixel box of the resized frame to cut from.
    """

    size: int
    stride: int
    roi: list[int] | None = None

    def validate(self, spec: InputSpec) -> None:
        _positive_int("patches.size", self.size)
        _positive_int("patches.stride", self.stride)
        top, bottom, left, right = self.roi or (0, spec.height, 0, spec.width)
        if not (0 <= top < bottom <= spec.height and 0 <= left < right <= spec.width):
            raise ManifestError(f"patches.roi {self.roi} lies outside the {spec.height}x{spec.width} frame")
        if self.size > bottom - top or self.size > right - left:
            raise ManifestError(f"patches.size {self.size} is larger than the region {bottom - top}x{right - left}")


@dataclass
class RegionSpec:
    """AVID region geometry: detector cell (i, j) scores the pixel block rows
    ``[i*cell, (i+1)*cell)`` and columns ``[j*cell, (j+1)*cell)``.

    Args:
        cell: block side in pixels (the detector's total stride).
        rows: number of cell rows (height / cell).
        cols: number of cell columns (width / cell).
    """

    cell: int
    rows: int
    cols: int

    def validate(self, spec: InputSpec) -> None:
        _positive_int("regions.cell", self.cell)
        if self.rows * self.cell != spec.height or self.cols * self.cell != spec.width:
            raise ManifestError(
                f"regions {self.rows}x{self.cols} of {self.cell}px do not tile the "
                f"{spec.height}x{spec.width} input"
            )


@dataclass
class Threshold:
    """A decision threshold with where it came from.

    Args:
        value: the threshold.
        data: the normal data it was computed on.
        target_false_alarm_rate: the false-alarm rate it was set for, on that data.
        n_samples: how many normal scores it was computed from.
        date: ISO date-time of the calibration.
        method: how it was computed (e.g. ``quantile``).
    """

    value: float
    data: str = ""
    target_false_alarm_rate: float | None = None
    n_samples: int | None = None
    date: str = ""
    method: str = "quantile"


@dataclass
class Manifest:
    """Everything a deployed model needs. See the module docstring."""

    method: str
    input: InputSpec
    patches: PatchSpec | None = None
    regions: RegionSpec | None = None
    scoring: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    threshold_history: list[dict[str, Any]] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    occ_version: str = ""
    schema_version: str = SCHEMA_VERSION

    def validate(self) -> "Manifest":
        _choice("method", self.method, METHODS)
        self.input.validate()
        if self.method == "alocc":
            if self.patches is None:
                raise ManifestError("an alocc manifest needs 'patches'")
            self.patches.validate(self.input)
        if self.method == "avid":
            if self.regions is None:
                raise ManifestError("an avid manifest needs 'regions'")
            self.regions.validate(self.input)
        allowed = THRESHOLD_NAMES[self.method]
        for name, threshold in self.thresholds.items():
            _choice(f"threshold name for {self.method}", name, allowed)
            if not isinstance(threshold.value, (int, float)) or threshold.value != threshold.value:
                raise ManifestError(f"threshold '{name}' has no numeric value: {threshold.value!r}")
        precision = self.export.get("precision", "fp32")
        _choice("export.precision", precision, PRECISIONS)
        return self

    def threshold(self, name: str) -> float:
        if name not in self.thresholds:
            raise ManifestError(f"the manifest has no '{name}' threshold; run `occ calibrate` first")
        return float(self.thresholds[name].value)

    def set_threshold(self, name: str, threshold: Threshold) -> None:
        """Set a threshold, keeping the value it replaces in ``threshold_history``."""
        if name in self.thresholds:
            old = dataclasses.asdict(self.thresholds[name])
            self.threshold_history.append({"name": name, "replaced_on": _now(), **old})
        self.thresholds[name] = threshold

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> "Manifest":
        try:
            if not isinstance(data, dict):
                raise ManifestError("is not a JSON object")
            _check_schema(data.get("schema_version"))
            data = dict(data)
            data["input"] = _build(InputSpec, data.get("input"), "input")
            if data.get("patches") is not None:
                data["patches"] = _build(PatchSpec, data["patches"], "patches")
            if data.get("regions") is not None:
                data["regions"] = _build(RegionSpec, data["regions"], "regions")
            data["thresholds"] = {
                k: _build(Threshold, v, f"thresholds.{k}") for k, v in (data.get("thresholds") or {}).items()
            }
            manifest = _build(cls, data, "manifest", nested_ok=True)
            return manifest.validate()
        except ManifestError as exc:
            raise ManifestError(f"{source}: invalid manifest: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> "Manifest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{source}: manifest is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, source)

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``<path>`` atomically (temp file, then rename)."""
        return write_atomic(Path(path), self.to_json().encode())


def load_manifest_file(path: str | os.PathLike) -> Manifest:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    return Manifest.from_json(path.read_text(), str(path))


def manifest_from_metadata(metadata: dict[str, str], source: str) -> Manifest:
    """Read the manifest from an ONNX model's custom metadata map."""
    if METADATA_KEY not in metadata:
        raise ManifestError(f"{source}: no occ manifest in the model metadata (was it exported by occ-export?)")
    return Manifest.from_json(metadata[METADATA_KEY], source)


def write_atomic(path: Path, payload: bytes) -> Path:
    """Write bytes to ``path`` through a temp file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def now_iso() -> str:
    """The current UTC time as an ISO string (used for provenance fields)."""
    return _now()


def _check_schema(version: Any) -> None:
    if not isinstance(version, str) or not version.count(".") == 1:
        raise ManifestError(f"schema_version missing or malformed: {version!r}")
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ManifestError(f"schema_version malformed: {version!r}") from None
    ours = int(SCHEMA_VERSION.split(".")[0])
    if major > ours:
        raise ManifestError(
            f"schema {version} is newer than this occ understands ({SCHEMA_VERSION}); upgrade occ"
        )


def _build(cls: type, data: Any, where: str, nested_ok: bool = False):
    if not isinstance(data, dict):
        raise ManifestError(f"'{where}' must be an object, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ManifestError(f"unknown field(s) in '{where}': {', '.join(unknown)}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    missing = [n for n in required if n not in data]
    if missing:
        raise ManifestError(f"missing field(s) in '{where}': {', '.join(missing)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ManifestError(f"'{where}': {exc}") from None


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ManifestError(f"{name} must be a positive integer, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ManifestError(f"{name} is {value!r}; allowed: {', '.join(allowed)}")
