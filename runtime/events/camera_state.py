"""Each camera's present state on disk: whether it needs ``occ calibrate``, why and since when.

The service rewrites ``cameras/<camera>.json`` beside its events log (written then renamed, so a
reader never sees half a file) when a camera's loop starts, when the scene guard or the drift watch
starts or ends a change, and when the loop stops. The events log holds the history; it cannot say
the present after a restart (a change seen before the stop gets no ending line when the new start
finds the view normal), and rotation drops its old lines. ``occ inspect cameras/`` (or the events
log, or one camera's file) reads these files: :func:`read_camera_states`. Schema ``occ.camera_state.v1``,
docs/events.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ..files import write_atomic
from .episodes import camera_slug, iso_time
from .sinks import SinkHealth

CAMERA_STATE_SCHEMA = "occ.camera_state.v1"
STATE_FOLDER = "cameras"  # beside the events log
CAUSES = ("scene_changed", "drift")  # the camera lines that start a need for calibration, in the order they are listed
_CAUSE_FIELDS = ("type", "reason", "frame", "wall_time", "clip_s", "statistic", "threshold")


class CameraStateError(ValueError):
    """A path that holds no camera state, or a file that is not one; one line naming it."""


def state_folder(events_log: str | Path) -> Path:
    """Where the service keeps its cameras' state files: ``cameras/`` beside the events log."""
    return Path(events_log).parent / STATE_FOLDER


class CameraState:
    """One camera's state file, rewritten whole on every change (a few times a day, not per frame).

    Args:
        folder: the state folder (:func:`state_folder`).
        camera: the camera's name.
        model: the model's file name, and ``model_sha256`` its hash (None on a server).
        on_error: called with the file's path on every failed write (for metrics); the service goes on.
    """

    def __init__(self, folder: str | Path, camera: str, model: str, model_sha256: str | None,
                 on_error: Callable[[str], None] | None = None):
        self.path = Path(folder) / f"{camera_slug(camera)}.json"
        self.health = SinkHealth(str(self.path), on_error)
        self.record: dict[str, Any] = {"schema": CAMERA_STATE_SCHEMA, "camera": camera, "model": model, "model_sha256": model_sha256,
                                       "service": "running", "updated": None, "needs_calibration": False, "causes": []}
        self._causes: dict[str, dict[str, Any]] = {}

    def started(self) -> None:
        """The loop starts: nothing is known to need calibration until the guard or the watch says so."""
        self._causes.clear()
        self.record["service"] = "running"
        self._write()

    def update(self, line: dict[str, Any]) -> None:
        """An ``occ.camera.v1`` line the loop logged: ``scene_changed`` and ``drift`` start a cause,
        ``scene_restored`` and ``drift_ended`` end it."""
        kind = line["type"]
        if kind in CAUSES:
            self._causes[kind] = {**{key: line.get(key) for key in _CAUSE_FIELDS}, "reason": line.get("reason") or kind,
                                  "noticed": iso_time(time.time())}
        else:
            self._causes.pop({"scene_restored": "scene_changed", "drift_ended": "drift"}[kind], None)
        self._write()

    def stopped(self) -> None:
        """The loop stopped: the causes stay, as last known."""
        self.record["service"] = "stopped"
        self._write()

    def _write(self) -> None:
        causes = [self._causes[kind] for kind in CAUSES if kind in self._causes]
        self.record.update(updated=iso_time(time.time()), needs_calibration=bool(causes), causes=causes)
        try:
            write_atomic(self.path, (json.dumps(self.record, indent=1) + "\n").encode(), sync=False)
        except OSError as exc:
            self.health.failed(exc)
        else:
            self.health.recovered()


def is_camera_state_path(path: str | Path) -> bool:
    """Whether ``occ inspect`` reads ``path`` as camera state rather than a model: an events log
    (``.jsonl``), a ``.json`` file that is not a model's manifest copy, or a folder that is not a
    Triton model folder and holds ``.json`` files or is named ``cameras``."""
    path = Path(path)
    if path.is_dir():
        return not (path / "config.pbtxt").exists() and (path.name == STATE_FOLDER or any(path.glob("*.json")))
    return path.suffix == ".jsonl" or (path.suffix == ".json" and Path(path.stem).suffix not in (".onnx", ".engine", ".plan"))


def read_camera_states(path: str | Path) -> list[dict[str, Any]]:
    """The state of every camera under ``path``: a state folder, one camera's file, or the events
    log (the folder beside it), sorted by camera.

    Raises:
        CameraStateError: nothing there, or a file that is not valid ``occ.camera_state.v1`` JSON.
    """
    path = Path(path)
    folder = state_folder(path) if path.suffix == ".jsonl" and path.is_file() else path
    if not folder.exists():
        raise CameraStateError(f"{folder}: not found" + (" (the service writes it on its next start)" if folder != path else ""))
    files = sorted(folder.glob("*.json")) if folder.is_dir() else [folder]
    if not files:
        raise CameraStateError(f"{folder}: no camera state files (<camera>.json, written by occ run)")
    states = [_read_state(file) for file in files]
    return sorted(states, key=lambda state: state["camera"])


def _read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except OSError as exc:
        raise CameraStateError(f"{path}: cannot read ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CameraStateError(f"{path}: not JSON ({exc})") from None
    if not isinstance(state, dict) or state.get("schema") != CAMERA_STATE_SCHEMA:
        found = state.get("schema") if isinstance(state, dict) else None
        raise CameraStateError(f"{path}: not a camera state (schema {found!r}, expected {CAMERA_STATE_SCHEMA!r})")
    missing = [key for key in ("camera", "service", "updated", "needs_calibration", "causes") if key not in state]
    if missing:
        raise CameraStateError(f"{path}: camera state without {', '.join(missing)}")
    fields = {*_CAUSE_FIELDS, "noticed"}
    if not isinstance(state["causes"], list) or not all(isinstance(cause, dict) and fields <= set(cause) for cause in state["causes"]):
        raise CameraStateError(f"{path}: camera state whose causes are not [{{{', '.join(sorted(fields))}}}, ...]")
    return state
