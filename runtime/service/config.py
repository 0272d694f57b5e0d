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

    [[source.zones]]             # optional, repeatable (with cameras: [[cameras.zones]] after its [[cameras]])
    name = "road"                # the zone's name in errors (default: its number, 1, 2, …)
    points = [[0, 0], [360, 0], [360, 60], [0, 60]]   # polygon corners [x, y] in source-frame pixels, >= 3
    # threshold_factor = 2.0     # absent: an ignore zone (never flagged); present: the threshold times this inside
    # profile = "night"          # only in this profile (day | night); absent: always

    [profiles]                   # optional: day and night profiles (see occ.runtime.service.profiles)
    switch = "schedule"          # schedule (local clock) | brightness (the frame's mean gray level)
    day_from = "07:00"           # schedule: local times HH:MM
    night_from = "19:00"
    night_below = 40.0           # brightness: mean gray level (0–255) under which night starts
    day_above = 50.0             # ... and over which day comes back
    [profiles.night]             # threshold overrides at night (on top of [thresholds]); [profiles.day] likewise
    # tau = 4.0

    [events]
    log = "events.jsonl"         # JSON lines: opened / closed events of every camera
                                 # (and cameras/<camera>.json beside it: each camera's state, for occ inspect)
    # open_after = 3             # overrides the model's episode rule (occ inspect shows it):
    # close_after = 20           # K anomalous frames in a row open an episode, J quiet ones close it
    max_mb = 100                 # rotate the log at this size (events.jsonl.1, .2, …)
    backups = 5
    max_pending = 10000          # event lines held in memory while the log cannot be written

    [snapshots]
    folder = "snapshots"         # JPEG of each event's peak frame with the overlay ("": none), and event clips
    max_files = 200
    max_mb = 200
    clip_before = 2.0            # event clips (.avi, next to the snapshots): s of frames before the event
    clip_after = 2.0             # ... and after it closes; both 0: no clips
    clip_max_s = 30.0            # longest clip, s
    clip_max_files = 50          # clips kept (oldest removed first)
    clip_max_mb = 500
    clip_buffer_mb = 64          # most memory for the frames held before an event (cuts clip_before short)

    [feedback]
    hard_normal = "hard-normal"  # the hard-normal set: occ feedback EVENT_ID --not-anomaly copies the event's clip to
                                 # <hard_normal>/<camera>/; occ calibrate MODEL --data ... --config <this file> adds them

    [overlay]
    video = ""                   # overlay video (.avi) or PNG folder; "{camera}" in it with several cameras

    [frames]
    log = ""                     # per-frame JSON lines; "{camera}" in it with several cameras
    lines = "all"                # all | events: only the frames while an event is open
    max_mb = 100
    backups = 5

    [metrics]
    port = 9100                  # /healthz and /metrics (Prometheus); 0: off
    host = "127.0.0.1"

    [sinks.mqtt]                 # optional: events to an MQTT broker (pip install 'occ[mqtt]'); see occ.runtime.events.mqtt
    host = "broker.local"
    port = 1883
    topic_prefix = "occ"         # <prefix>/<camera>/events, …/state (retained), …/availability (online/offline, last will)
    qos = 1
    keepalive = 30               # s; the broker says offline after 1.5 times this without a ping
    username = ""
    password_env = ""            # environment variable holding the password
    tls = false
    timeout = 5.0                # s the broker may take to acknowledge an event
    backoff = 0.5                # first wait after a failed delivery, s (doubles up to max_backoff)
    max_backoff = 30.0
    spool = "spool/mqtt"         # events wait here (a subfolder per camera) while the broker is away
    max_spooled = 10000          # events per camera's spool; later ones are dropped (counted)

    [sinks.webhook]              # optional: HTTP POST of each event's JSON; see occ.runtime.events.webhook
    url = "https://vms.local/occ-events"
    timeout = 5.0                # s per POST
    backoff = 1.0
    max_backoff = 60.0
    secret_env = ""              # environment variable holding the HMAC-SHA256 key ("": unsigned)
    spool = "spool/webhook"
    max_spooled = 10000

    [guard]
    enabled = true               # the scene guard: a change of the whole view holds anomaly events
    drift = true                 # the drift watch: the scores against the calibration footage's at the same light

An unknown key is an error that names the nearest known one; values are checked for type and
range, output folders for being writable, the metrics port for being free, and no output may be
an input (the model or a source file). Relative paths (the model, a source file or folder, in
either form ``clip.mp4`` or ``file://clip.mp4``, and every output) are relative to the
configuration file.
"""
from __future__ import annotations

import difflib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union
from urllib.parse import unquote

import cv2

from ..backends import REGISTRY
from ..detector import PREPROCESS, refuse_checkpoint
from ..events import MqttConfig, WebhookConfig, camera_slug, port_problem
from ..events.mqtt import paho_missing
from ..files import same_file
from ..scoring.zones import Zone
from ..sources import SOURCE_FORMS, SourceError, is_live, list_images, resolve_source
from .profiles import PROFILES, SWITCHES, ProfileConfig, clock_minutes


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
    zones: list[Zone] = field(default_factory=list)  # ignore and sensitivity zones, in source-frame pixels


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
    open_after: int | None = None  # None: the model's episode rule
    close_after: int | None = None
    events_max_mb: float = 100.0
    events_backups: int = 5
    max_pending: int = 10000
    snapshots: str = ""
    snapshot_max_files: int = 200
    snapshot_max_mb: float = 200.0
    clip_before: float = 2.0
    clip_after: float = 2.0
    clip_max_s: float = 30.0
    clip_max_files: int = 50
    clip_max_mb: float = 500.0
    clip_buffer_mb: float = 64.0
    hard_normal: str = "hard-normal"  # the hard-normal set's folder, a subfolder per camera (occ feedback)
    overlay_video: str = ""
    frames_log: str = ""
    frame_lines: str = "all"
    frames_max_mb: float = 100.0
    frames_backups: int = 5
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    mqtt: MqttConfig | None = None
    webhook: WebhookConfig | None = None
    profiles: ProfileConfig | None = None  # day and night profiles; None: one profile, unnamed
    scene_guard: bool = True
    drift_watch: bool = True

    def __post_init__(self) -> None:
        for camera in self.cameras:
            camera.name = camera.name or default_camera_name(camera.spec)

    @classmethod
    def from_toml(cls, path: str | Path, check: bool = True) -> "ServiceConfig":
        """The configuration in ``path``; ``check=False`` only parses it (a command beside the
        running service reads its paths, while the service holds the port and the outputs)."""
        return parse_toml(Path(path), check)

    def check(self, where: str = "configuration") -> "ServiceConfig":
        """Every value in range, outputs writable and distinct from the inputs, the port free.

        Raises:
            BackendError: the model is a training checkpoint (one line: export it first).
            ConfigError: the first problem found.
        """
        if not model_on_server(self.backend):
            refuse_checkpoint(self.model)
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


FRAME_LINES = ("all", "events")  # per-frame lines: every frame, or the frames while an event is open

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
               "max_backoff": (float, _positive, "> 0"), "give_up_after": (float, _non_negative, ">= 0 (0: never)"),
               "zones": (list, None, "")},
    "events": {"log": (str, bool, "a file"), "open_after": (int, lambda v: v >= 1, ">= 1"), "close_after": (int, lambda v: v >= 1, ">= 1"),
               "max_mb": (float, _non_negative, ">= 0 (0: never rotate)"), "backups": (int, lambda v: v >= 1, ">= 1"),
               "max_pending": (int, lambda v: v >= 1, ">= 1")},
    "snapshots": {"folder": (str, None, ""), "max_files": (int, lambda v: v >= 1, ">= 1"), "max_mb": (float, _positive, "> 0"),
                  "clip_before": (float, _non_negative, ">= 0"), "clip_after": (float, _non_negative, ">= 0"),
                  "clip_max_s": (float, _positive, "> 0"), "clip_max_files": (int, lambda v: v >= 1, ">= 1"),
                  "clip_max_mb": (float, _positive, "> 0"), "clip_buffer_mb": (float, _positive, "> 0")},
    "feedback": {"hard_normal": (str, bool, "a folder")},
    "overlay": {"video": (str, None, "")},
    "frames": {"log": (str, None, ""), "lines": (str, lambda v: v in FRAME_LINES, f"one of {', '.join(FRAME_LINES)}"),
               "max_mb": (float, _non_negative, ">= 0 (0: never rotate)"), "backups": (int, lambda v: v >= 1, ">= 1")},
    "metrics": {"port": (int, lambda v: 0 <= v <= 65535, "0..65535"), "host": (str, bool, "an address")},
    "guard": {"enabled": (bool, None, ""), "drift": (bool, None, "")},
}
SCHEMA["cameras"] = SCHEMA["source"]


def _polygon(points: list) -> bool:
    return len(points) >= 3 and all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                             and math.isfinite(v) and v >= 0 for v in p) for p in points)


ZONE_KEYS: dict[str, KEY] = {"name": (str, bool, "a name"),
                             "points": (list, _polygon, "at least 3 [x, y] corners with x, y >= 0 (source-frame pixels)"),
                             "threshold_factor": (float, _positive, "> 0"),
                             "profile": (str, lambda v: v in PROFILES, f"one of {', '.join(PROFILES)}")}
SCHEMA["profiles"] = {"switch": (str, lambda v: v in SWITCHES, f"one of {', '.join(SWITCHES)}"),
                      "day_from": (str, lambda v: clock_minutes(v) is not None, "a local time HH:MM"),
                      "night_from": (str, lambda v: clock_minutes(v) is not None, "a local time HH:MM"),
                      "night_below": (float, lambda v: 0 <= v <= 255, "a gray level 0..255"),
                      "day_above": (float, lambda v: 0 <= v <= 255, "a gray level 0..255")}
for _profile in PROFILES:
    SCHEMA[f"profiles.{_profile}"] = SCHEMA["thresholds"]
_SPOOLED: dict[str, KEY] = {"timeout": (float, _positive, "> 0"), "backoff": (float, _positive, "> 0"),
                            "max_backoff": (float, _positive, "> 0"), "spool": (str, bool, "a folder"),
                            "max_spooled": (int, lambda v: v >= 1, ">= 1")}
SCHEMA["sinks.mqtt"] = {"host": (str, bool, "the broker's address"), "port": (int, lambda v: 1 <= v <= 65535, "1..65535"),
                        "topic_prefix": (str, lambda v: bool(v) and not set(v) & set("+#"), "a topic without + or #"),
                        "qos": (int, lambda v: v in (0, 1, 2), "0, 1 or 2"), "keepalive": (int, lambda v: v >= 5, ">= 5"),
                        "username": (str, None, ""), "password_env": (str, None, ""), "tls": (bool, None, ""), **_SPOOLED}
SCHEMA["sinks.webhook"] = {"url": (str, lambda v: v.startswith(("http://", "https://")), "an http:// or https:// URL"),
                           "secret_env": (str, None, ""), **_SPOOLED}


def parse_threshold(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` (``--threshold``) → ``(name, value)``, checked as the ``[thresholds]`` keys are.

    Raises:
        ConfigError: an unknown name, a value that is not a number, or one out of range.
    """
    name, equals, raw = (part.strip() for part in text.partition("="))
    known = SCHEMA["thresholds"]
    if not equals or name not in known:
        raise ConfigError(f"--threshold {text}: give NAME=VALUE with NAME one of {', '.join(known)}")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"--threshold {text}: {raw!r} is not a number") from None
    _, check, wants = known[name]
    if not check(value):
        raise ConfigError(f"--threshold {text}: {name} must be {wants}")
    return name, value


def _nearest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(known)}"


def _value(path: Path, where: str, key: str, value: Any, kind: type, check, wants: str) -> Any:
    ok_type = isinstance(value, kind) and not isinstance(value, bool) if kind in (int, float) else isinstance(value, kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok_type = float(value), True
    if not ok_type:
        wanted = dict(str='a string', int='a whole number', float='a number', bool='true or false', list='an array')[kind.__name__]
        raise ConfigError(f"{path}: [{where}] {key} must be {wanted}, "
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
                        max_backoff=raw.get("max_backoff", 8.0), give_up_after=give_up or None,
                        zones=[_zone(path, zone, f"{where} zones {i + 1}") for i, zone in enumerate(raw.get("zones", []))])


def _zone(path: Path, raw: Any, where: str) -> Zone:
    """One ``[[...zones]]`` table → a :class:`Zone`, every key checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: zones must be [[zones]] tables")
    for key, value in raw.items():
        if key not in ZONE_KEYS:
            raise ConfigError(f"{path}: unknown key '{key}' in [{where}]{_nearest(key, ZONE_KEYS)}")
        raw = {**raw, key: _value(path, where, key, value, *ZONE_KEYS[key])}
    if "points" not in raw:
        raise ConfigError(f"{path}: [{where}] needs points (polygon corners [x, y] in source-frame pixels)")
    factor = raw.get("threshold_factor")
    return Zone(name=raw.get("name", where.rsplit(' ', 1)[-1]),
                points=tuple((float(x), float(y)) for x, y in raw["points"]), ignore=factor is None,
                factor=1.0 if factor is None else factor, profile=raw.get("profile", ""))


def parse_toml(path: Path, check: bool = True) -> ServiceConfig:
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
    data = _profile_sections(path, _sink_sections(path, data))
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
    if model_on_server(backend) and not model.get("triton_url"):
        raise ConfigError(f"{path}: [model] backend = \"{backend}\" needs triton_url (and path = the model's name on the server)")

    def relative(value: str) -> str:  # paths in the file are relative to the file
        return value if not value or Path(value).is_absolute() else str(path.parent / value)

    for camera in cameras:  # a file or folder, as a path or a file:// URI; a device, URL or pipeline is taken as written
        if camera.spec.startswith("file://"):
            camera.spec = relative(unquote(camera.spec[len("file://"):]))
        elif not (is_live(camera.spec) or "://" in camera.spec):
            camera.spec = relative(camera.spec)
    events, snapshots, frames, metrics = tables["events"], tables["snapshots"], tables["frames"], tables["metrics"]
    config = ServiceConfig(
        model=model["path"] if model_on_server(backend) else relative(model["path"]), cameras=cameras, backend=backend,
        preprocess=model.get("preprocess", "cpu"), triton_url=model.get("triton_url", ""), thresholds=tables["thresholds"],
        events_log=relative(events.get("log", "events.jsonl")), open_after=events.get("open_after"),
        close_after=events.get("close_after"), events_max_mb=events.get("max_mb", 100.0), events_backups=events.get("backups", 5),
        max_pending=events.get("max_pending", 10000), snapshots=relative(snapshots.get("folder", "")),
        snapshot_max_files=snapshots.get("max_files", 200), snapshot_max_mb=snapshots.get("max_mb", 200.0),
        clip_before=snapshots.get("clip_before", 2.0), clip_after=snapshots.get("clip_after", 2.0),
        clip_max_s=snapshots.get("clip_max_s", 30.0), clip_max_files=snapshots.get("clip_max_files", 50),
        clip_max_mb=snapshots.get("clip_max_mb", 500.0), clip_buffer_mb=snapshots.get("clip_buffer_mb", 64.0),
        hard_normal=relative(tables["feedback"].get("hard_normal", "hard-normal")),
        overlay_video=relative(tables["overlay"].get("video", "")), frames_log=relative(frames.get("log", "")),
        frame_lines=frames.get("lines", "all"),
        frames_max_mb=frames.get("max_mb", 100.0), frames_backups=frames.get("backups", 5), metrics_port=metrics.get("port", 0),
        metrics_host=metrics.get("host", "127.0.0.1"),
        mqtt=_sink(path, data, tables, "mqtt", MqttConfig, "host", "the broker's address", relative),
        webhook=_sink(path, data, tables, "webhook", WebhookConfig, "url", "the receiver's URL", relative),
        profiles=None if "profiles" not in data else ProfileConfig(
            **tables["profiles"], thresholds={name: tables[f"profiles.{name}"] for name in PROFILES}),
        scene_guard=tables["guard"].get("enabled", True), drift_watch=tables["guard"].get("drift", True))
    return config.check(str(path)) if check else config


def _profile_sections(path: Path, data: dict) -> dict:
    """``[profiles.day]`` and ``[profiles.night]`` as sections of their own; ``[profiles]`` keeps
    its own keys."""
    if "profiles" not in data:
        return data
    if not isinstance(data["profiles"], dict):
        raise ConfigError(f"{path}: profiles must be a [profiles] table")
    own = {key: value for key, value in data["profiles"].items() if not isinstance(value, dict)}
    nested = {f"profiles.{name}": table for name, table in data["profiles"].items() if isinstance(table, dict)}
    return {**data, "profiles": own, **nested}


def _sink_sections(path: Path, data: dict) -> dict:
    """``[sinks.mqtt]`` and ``[sinks.webhook]`` as sections of their own (``sinks.mqtt``)."""
    if "sinks" not in data:
        return data
    if not isinstance(data["sinks"], dict):
        raise ConfigError(f"{path}: sinks must hold [sinks.mqtt] and [sinks.webhook] tables")
    return {**{k: v for k, v in data.items() if k != "sinks"}, **{f"sinks.{name}": table for name, table in data["sinks"].items()}}


def _sink(path: Path, data: dict, tables: dict, name: str, kind: type, required: str, meaning: str, relative: Callable[[str], str]):
    """One remote sink's settings, or None when its table is absent; its spool is relative to the file."""
    section = f"sinks.{name}"
    if section not in data:
        return None
    table = tables[section]
    if required not in table:
        raise ConfigError(f"{path}: [{section}] needs {required} ({meaning})")
    return kind(**{**table, "spool": relative(table.get("spool", f"spool/{name}"))})


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


def _recorded_frame_size(target: str) -> tuple[int, int] | None:
    """``(height, width)`` of a video file's or image folder's first frame; None when unreadable
    (the source's own check reports that)."""
    path = Path(target)
    if path.is_dir():
        files = list_images(path)
        image = cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED) if files else None
    else:
        capture = cv2.VideoCapture(str(path))
        image = capture.read()[1] if capture.isOpened() else None
        capture.release()
    return None if image is None else (int(image.shape[0]), int(image.shape[1]))


def model_on_server(backend: str) -> bool:
    """The backend's model is a name on a server, not a file (its capabilities say; an unknown
    backend is refused elsewhere)."""
    kind = REGISTRY.get(backend)
    return kind is not None and kind.capabilities.on_server


def _problems(config: ServiceConfig) -> list[str]:
    problems = []
    if not model_on_server(config.backend) and not Path(config.model).is_file():
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
            continue
        size = _recorded_frame_size(recorded[-1]) if camera.zones else None
        for zone in camera.zones if size else []:
            problem = zone.outside_problem(size)
            if problem:
                problems.append(f"camera {camera.name}: {problem} of {camera.spec}")
    if config.backend not in REGISTRY:
        problems.append(f"backend {config.backend!r} is unknown; available: {', '.join(REGISTRY)}")
    if config.preprocess not in PREPROCESS:
        problems.append(f"preprocess {config.preprocess!r} is unknown; one of {', '.join(PREPROCESS)}")
    if any(value is not None and value < 1 for value in (config.open_after, config.close_after)):
        problems.append("open_after and close_after must be >= 1")
    profiles = config.profiles
    if profiles is not None and profiles.switch == "brightness" and profiles.day_above < profiles.night_below:
        problems.append("[profiles] day_above must be >= night_below")
    if profiles is not None and profiles.switch == "schedule" and profiles.day_from == profiles.night_from:
        problems.append("[profiles] day_from and night_from must differ")
    if profiles is None and any(zone.profile for camera in config.cameras for zone in camera.zones):
        problems.append("a zone names a profile, but there is no [profiles] table")
    if config.frame_lines not in FRAME_LINES:
        problems.append(f"frame lines {config.frame_lines!r} is unknown; one of {', '.join(FRAME_LINES)}")
    several = len(config.cameras) > 1
    outputs = {"events log": config.events_log, "snapshots folder": config.snapshots, "overlay": config.overlay_video,
               "frames log": config.frames_log}
    for what in ("overlay", "frames log"):
        if several and outputs[what] and "{camera}" not in outputs[what]:
            problems.append(f"the {what} {outputs[what]} needs '{{camera}}' in its name with several cameras")
    for name, sink in (("mqtt", config.mqtt), ("webhook", config.webhook)):
        if sink is None:
            continue
        outputs[f"{name} spool"] = sink.spool
        if sink.max_backoff < sink.backoff:
            problems.append(f"[sinks.{name}] max_backoff must be >= backoff")
        variable = getattr(sink, "secret_env", "") or getattr(sink, "password_env", "")
        if variable and variable not in os.environ:
            problems.append(f"[sinks.{name}] the environment variable {variable} is not set")
    missing = paho_missing() if config.mqtt is not None else None
    if missing:
        problems.append(f"[sinks.mqtt] {missing}")
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
