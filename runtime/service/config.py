"""The camera service's configuration, checked whole before anything starts.

Example (every key but ``model.path`` and a source's ``spec`` has a default)::

    [model]
    path = "ped2.onnx"
    backend = "ort-cpu"          # ort-cpu | ort-cuda | tensorrt | triton (see occ.runtime.backends)
    preprocess = "cpu"           # cpu | gpu (CUDA kernels; with ort-cuda or tensorrt the frame stays on the GPU)
    # triton_url = "triton-host:8000"   # backend "triton": path is then the model's name on the server

    [thresholds]                 # optional overrides of the manifest's values
    # tau = 3.0                  # ALOCC
    # alpha = 0.2                # AVID
    # zeta = 0.4

    [source]                     # one camera; or several [[cameras]] tables with the same keys
    spec = "rtsp://camera.local/stream"   # any form occ.runtime.sources accepts (SOURCE_FORMS)
    name = "gate"                # the camera's name in events, logs and metrics (default: from spec)
    buffer = 2                   # live sources: newest frames kept; older ones are dropped
    backoff = 0.5                # first reconnect delay, s (doubles up to max_backoff); a live source and a
    max_backoff = 8.0            # Triton server lost mid-stream reconnect by these rules
    give_up_after = 0            # s without a frame before giving up (exit code 3); 0: never

    [events]
    log = "events.jsonl"         # JSON lines: opened / closed events of every camera
    open_after = 3               # K anomalous frames in a row open an episode
    close_after = 5              # J quiet frames in a row close it
    max_mb = 100                 # rotate the log at this size (events.jsonl.1, .2, …)
    backups = 5
    max_pending = 10000          # event lines held in memory while the log cannot be written

    [snapshots]
    folder = "snapshots"         # JPEG of each event's peak frame with the overlay ("": none)
    max_files = 200
    max_mb = 200

    [overlay]
    video = ""                   # overlay video (.avi) or PNG folder; "{camera}" in it with several cameras

    [frames]
    log = ""                     # per-frame JSON lines; "{camera}" in it with several cameras
    max_mb = 100
    backups = 5

    [metrics]
    port = 9100                  # /healthz and /metrics (Prometheus); 0: off
    host = "127.0.0.1"

    [guard]
    enabled = true               # the scene guard: a change of the whole view holds anomaly events
    drift = true                 # the drift watch: the score distribution against the stream's first 20 minutes

An unknown key is an error that names the nearest known one; values are checked for type and
range, output folders for being writable, the metrics port for being free, and no output may be
an input (the model or a source file).
"""
from __future__ import annotations

import difflib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from ..backends import REGISTRY
from ..detector import PREPROCESS
from ..events import camera_slug, port_problem
from ..files import same_file
from ..sources import SOURCE_FORMS, SourceError, is_live, resolve_source


class ConfigError(ValueError):
    """A configuration that cannot be used; one line naming the file, the key and the problem."""


@dataclass
class CameraConfig:
    """One source and how it is read."""

    spec: str
    name: str = ""
    buffer: int = 2
    backoff: float = 0.5
    max_backoff: float = 8.0
    give_up_after: float | None = None  # seconds without a frame; None: never


@dataclass
class ServiceConfig:
    """Everything the service runs with (see the module docstring for the TOML form)."""

    model: str
    cameras: list[CameraConfig]
    backend: str = "ort-cpu"
    preprocess: str = "cpu"
    triton_url: str = ""
    thresholds: dict[str, float] = field(default_factory=dict)
    events_log: str = "events.jsonl"
    open_after: int = 3
    close_after: int = 5
    events_max_mb: float = 100.0
    events_backups: int = 5
    max_pending: int = 10000
    snapshots: str = ""
    snapshot_max_files: int = 200
    snapshot_max_mb: float = 200.0
    overlay_video: str = ""
    frames_log: str = ""
    frames_max_mb: float = 100.0
    frames_backups: int = 5
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    scene_guard: bool = True
    drift_watch: bool = True

    def __post_init__(self) -> None:
        for camera in self.cameras:
            camera.name = camera.name or default_camera_name(camera.spec)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ServiceConfig":
        return parse_toml(Path(path))

    def check(self, where: str = "configuration") -> "ServiceConfig":
        """Every value in range, outputs writable and distinct from the inputs, the port free."""
        problems = _problems(self)
        if problems:
            raise ConfigError(f"{where}: {problems[0]}")
        return self

    def per_camera(self, template: str, camera: CameraConfig) -> str:
        """An output path for one camera: ``{camera}`` in ``template`` becomes its name."""
        return template.replace("{camera}", camera_slug(camera.name)) if template else ""


def default_camera_name(spec: str) -> str:
    """A camera name from its spec: the file or device name, or the URL's host and path."""
    if is_live(spec) and "://" in spec:
        return camera_slug(spec.split("://", 1)[1].split("@")[-1].replace("/", "_"))
    return camera_slug(Path(spec.split("!")[0].strip()).stem or spec)


# ---- the TOML form: every key, its type and its check --------------------------------------------
def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


KEY = tuple[type, Callable[[Any], bool] | None, Union[str, Callable[[], str]]]  # type, check, what the check wants
SCHEMA: dict[str, dict[str, KEY]] = {
    "model": {"path": (str, bool, "a model file (or a model name with triton)"),
              "backend": (str, lambda v: v in REGISTRY, lambda: f"one of {', '.join(REGISTRY)}"),
              "preprocess": (str, lambda v: v in PREPROCESS, f"one of {', '.join(PREPROCESS)}"),
              "triton_url": (str, None, "")},
    "thresholds": {"tau": (float, math.isfinite, "a finite number"), "alpha": (float, _positive, "> 0"),
                   "zeta": (float, lambda v: 0 < v < 1, "between 0 and 1")},
    "source": {"spec": (str, bool, SOURCE_FORMS), "name": (str, None, ""),
               "buffer": (int, lambda v: v >= 1, ">= 1"), "backoff": (float, _positive, "> 0"),
               "max_backoff": (float, _positive, "> 0"), "give_up_after": (float, _non_negative, ">= 0 (0: never)")},
    "events": {"log": (str, bool, "a file"), "open_after": (int, lambda v: v >= 1, ">= 1"), "close_after": (int, lambda v: v >= 1, ">= 1"),
               "max_mb": (float, _non_negative, ">= 0 (0: never rotate)"), "backups": (int, lambda v: v >= 1, ">= 1"),
               "max_pending": (int, lambda v: v >= 1, ">= 1")},
    "snapshots": {"folder": (str, None, ""), "max_files": (int, lambda v: v >= 1, ">= 1"), "max_mb": (float, _positive, "> 0")},
    "overlay": {"video": (str, None, "")},
    "frames": {"log": (str, None, ""), "max_mb": (float, _non_negative, ">= 0 (0: never rotate)"),
               "backups": (int, lambda v: v >= 1, ">= 1")},
    "metrics": {"port": (int, lambda v: 0 <= v <= 65535, "0..65535"), "host": (str, bool, "an address")},
    "guard": {"enabled": (bool, None, ""), "drift": (bool, None, "")},
}
SCHEMA["cameras"] = SCHEMA["source"]


def _nearest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"


def _value(path: Path, where: str, key: str, value: Any, kind: type, check, wants: str) -> Any:
    ok_type = isinstance(value, kind) and not isinstance(value, bool) if kind in (int, float) else isinstance(value, kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok_type = float(value), True
    if not ok_type:
        raise ConfigError(f"{path}: [{where}] {key} must be {dict(str='a string', int='a whole number', float='a number', bool='true or false')[kind.__name__]}, "
                          f"got {type(value).__name__} {value!r}")
    if check is not None and not check(value):
        raise ConfigError(f"{path}: [{where}] {key} = {value!r} must be {wants() if callable(wants) else wants}")
    return value


def _table(path: Path, data: dict, section: str) -> dict[str, Any]:
    table = data.get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{section}] must be a table")
    out = {}
    for key, value in table.items():
        if key not in SCHEMA[section]:
            raise ConfigError(f"{path}: unknown key '{key}' in [{section}]{_nearest(key, SCHEMA[section])}")
        out[key] = _value(path, section, key, value, *SCHEMA[section][key])
    return out


def _camera(path: Path, raw: dict[str, Any], where: str) -> CameraConfig:
    if "spec" not in raw:
        raise ConfigError(f"{path}: [{where}] needs spec ({SOURCE_FORMS})")
    give_up = raw.get("give_up_after", 0.0)
    return CameraConfig(spec=raw["spec"], name=raw.get("name", ""), buffer=raw.get("buffer", 2), backoff=raw.get("backoff", 0.5),
                        max_backoff=raw.get("max_backoff", 8.0), give_up_after=give_up or None)


def parse_toml(path: Path) -> ServiceConfig:
    try:
        import tomllib  # novermin (3.11+; the fallback below is for 3.10)
    except ImportError:  # Python 3.10 (JetPack 6)
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for section in data:
        if section not in SCHEMA:
            raise ConfigError(f"{path}: unknown section [{section}]{_nearest(section, SCHEMA)}")
    tables = {section: _table(path, data, section) for section in SCHEMA if section != "cameras"}
    raw_cameras = data.get("cameras", [])
    if not isinstance(raw_cameras, list) or not all(isinstance(c, dict) for c in raw_cameras):
        raise ConfigError(f"{path}: cameras must be [[cameras]] tables")
    if raw_cameras and "source" in data:
        raise ConfigError(f"{path}: give one [source] or several [[cameras]], not both")
    cameras = [_camera(path, _table(path, {"cameras": raw}, "cameras"), f"cameras {i + 1}") for i, raw in enumerate(raw_cameras)] \
        or [_camera(path, tables["source"], "source")]
    model = tables["model"]
    if "path" not in model:
        raise ConfigError(f"{path}: [model] needs path (the exported model)")
    backend = model.get("backend", "ort-cpu")
    if backend == "triton" and not model.get("triton_url"):
        raise ConfigError(f"{path}: [model] backend = \"triton\" needs triton_url (and path = the model's name on the server)")

    def relative(value: str) -> str:  # paths in the file are relative to the file
        return value if not value or Path(value).is_absolute() else str(path.parent / value)

    for camera in cameras:  # a file:// URI, like a device, URL or pipeline, is taken as written
        camera.spec = camera.spec if is_live(camera.spec) or "://" in camera.spec else relative(camera.spec)
    events, snapshots, frames, metrics = tables["events"], tables["snapshots"], tables["frames"], tables["metrics"]
    config = ServiceConfig(
        model=model["path"] if backend == "triton" else relative(model["path"]), cameras=cameras, backend=backend,
        preprocess=model.get("preprocess", "cpu"), triton_url=model.get("triton_url", ""), thresholds=tables["thresholds"],
        events_log=relative(events.get("log", "events.jsonl")), open_after=events.get("open_after", 3),
        close_after=events.get("close_after", 5), events_max_mb=events.get("max_mb", 100.0), events_backups=events.get("backups", 5),
        max_pending=events.get("max_pending", 10000), snapshots=relative(snapshots.get("folder", "")),
        snapshot_max_files=snapshots.get("max_files", 200), snapshot_max_mb=snapshots.get("max_mb", 200.0),
        overlay_video=relative(tables["overlay"].get("video", "")), frames_log=relative(frames.get("log", "")),
        frames_max_mb=frames.get("max_mb", 100.0), frames_backups=frames.get("backups", 5), metrics_port=metrics.get("port", 0),
        metrics_host=metrics.get("host", "127.0.0.1"), scene_guard=tables["guard"].get("enabled", True),
        drift_watch=tables["guard"].get("drift", True))
    return config.check(str(path))


# ---- checks on the whole configuration --------------------------------------------------------------
def _writable(target: str) -> bool:
    """An existing file (or /dev/stdout) that opens for appending, or a path whose nearest existing
    folder takes a new entry (the rest is created on start). Tried, not asked: ``os.access`` says
    yes to root everywhere, even on /proc."""
    path = Path(target)
    try:
        if path.exists() and not path.is_dir():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            return True
        folder = path if path.is_dir() else path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        with tempfile.TemporaryDirectory(prefix=".occ-check.", dir=folder):
            return True
    except OSError:
        return False


def _problems(config: ServiceConfig) -> list[str]:
    problems = []
    if config.backend != "triton" and not Path(config.model).is_file():
        problems.append(f"{config.model}: model file not found")
    names = [camera.name for camera in config.cameras]
    if not config.cameras:
        problems.append("no camera: give a [source] or [[cameras]]")
    if len(set(names)) != len(names):
        problems.append(f"camera names must differ, got {names}")
    recorded = []  # the files and folders read (file:// URIs resolved), which no output may overwrite
    for camera in config.cameras:
        if camera.buffer < 1 or not camera.backoff > 0 or camera.max_backoff < camera.backoff:
            problems.append(f"camera {camera.name}: needs buffer >= 1, backoff > 0 and max_backoff >= backoff")
        if is_live(camera.spec):
            continue
        try:
            recorded.append(resolve_source(camera.spec).target)
        except SourceError as exc:
            problems.append(str(exc))
    if config.backend not in REGISTRY:
        problems.append(f"backend {config.backend!r} is unknown; available: {', '.join(REGISTRY)}")
    if config.preprocess not in PREPROCESS:
        problems.append(f"preprocess {config.preprocess!r} is unknown; one of {', '.join(PREPROCESS)}")
    if config.open_after < 1 or config.close_after < 1:
        problems.append("open_after and close_after must be >= 1")
    several = len(config.cameras) > 1
    outputs = {"events log": config.events_log, "snapshots folder": config.snapshots, "overlay": config.overlay_video,
               "frames log": config.frames_log}
    for what in ("overlay", "frames log"):
        if several and outputs[what] and "{camera}" not in outputs[what]:
            problems.append(f"the {what} {outputs[what]} needs '{{camera}}' in its name with several cameras")
    inputs = [config.model, *recorded]
    for what, target in outputs.items():
        if not target:
            continue
        for camera in config.cameras if "{camera}" in target else config.cameras[:1]:
            concrete = config.per_camera(target, camera)
            if any(same_file(concrete, source) for source in inputs if source):
                problems.append(f"the {what} {concrete} is an input of the service; choose another path")
            elif not _writable(concrete):
                problems.append(f"the {what} {concrete} cannot be written (its folder is missing or not writable)")
    if config.metrics_port:
        busy = port_problem(config.metrics_host, config.metrics_port)
        if busy:
            problems.append(f"metrics port {busy}")
    return problems
