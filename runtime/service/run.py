"""``occ run``: the long-running camera service, one loop per camera.

Each camera's loop: source → detector → episodes → event log, snapshots and event clips, overlay,
per-frame log, metrics, and the camera's state file (cameras/<camera>.json beside the event log:
whether it needs ``occ calibrate``); each follows its versioned schema of docs/events.md.
A full disk or an unwritable sink degrades (counted, logged at most once a minute, retried) while
scoring goes on. Remote sinks (MQTT, a webhook) cost the loop a spool append per event; their own
threads deliver. SIGTERM or SIGINT stops every loop after its current frame; open
episodes are closed (``closed_by: "shutdown"``) and written before the process exits.

Exit codes (:class:`ExitCode`): 0 when every source finished (a file or folder read to its end) or
a stop was requested; 3 when a live source gave up (no frame for ``give_up_after`` seconds), so
systemd's ``Restart=on-failure`` restarts the service; 4 when a camera's loop failed.
"""
from __future__ import annotations

import dataclasses
import enum
from collections import deque
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ..backends import BackendError
from ..detector import StreamDetector, open_detector
from ..events import (CAMERA_SCHEMA, CameraMetrics, EpisodeTracker, EventClips, EventContext, EventLog, JsonLinesLog, MetricsServer, OverlayWriter,
                      ServiceMetrics, SnapshotStore, frame_record, render_overlay)
from ..files import file_sha256
from ..manifest import Manifest
from ..events import event_record, open_remote_sinks
from ..events.camera_state import CameraState, state_folder
from ..events.episodes import MAX_PENDING_FRAMES
from ..scoring import frame_threshold
from ..scoring.decide import thresholds_in_force
from ..scoring.drift import DriftReference, DriftState, DriftWatch, frame_light
from ..scoring.scene_guard import GuardState, SceneGuard, SceneReference
from ..sources import LiveSource, Source, open_source
from .config import CameraConfig, ServiceConfig, model_on_server
from .logs import setup_logging
from .profiles import ProfileSwitch, zones_in

log = logging.getLogger("occ.service")


class ExitCode(enum.IntEnum):
    FINISHED = 0  # every source read to its end, or a stop was requested
    GAVE_UP = 3  # a live source stayed away for give_up_after seconds
    FAILED = 4  # a camera's loop stopped on an error


@dataclass
class CameraSummary:
    camera: str
    frames: int = 0
    anomalous_frames: int = 0
    events: int = 0
    dropped: int = 0
    reconnects: int = 0
    backend_reconnects: int = 0
    sink_errors: int = 0
    outcome: str = "running"
    error: str = ""


@dataclass
class ServiceSummary:
    cameras: list[CameraSummary] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.FINISHED
    thresholds: dict[str, float] = field(default_factory=dict)  # in force: the manifest's, or the overrides

    def totals(self) -> dict[str, int]:
        keys = ("frames", "anomalous_frames", "events", "dropped", "reconnects", "backend_reconnects", "sink_errors")
        return {key: sum(getattr(c, key) for c in self.cameras) for key in keys}


@dataclass
class _CameraEvent:
    """A line of the events log about the camera itself: ``scene_changed``, ``scene_restored``,
    ``drift`` or ``drift_ended``."""

    camera: str
    frame: int
    timestamp: float | None
    state: GuardState | DriftState
    context: EventContext

    def to_json(self) -> dict[str, Any]:
        """The line's fields (without ``type``, which the log adds): docs/events.md, schema ``occ.camera.v1``."""
        return {"schema": CAMERA_SCHEMA, "camera": self.camera, "frame": self.frame, **self.context.clock(self.timestamp),
                **self.state.to_json()}


class CameraLoop:
    """One camera, from its source to its events. Its detector is opened in the camera's own thread
    (a Triton client's connection belongs to the thread that made it)."""

    def __init__(self, service: "Service", camera: CameraConfig, open_camera_detector: Callable[[CameraConfig], StreamDetector],
                 manifest: Manifest, events: EventLog, metrics: CameraMetrics, model_sha256: str | None = None):
        cfg = service.config
        self.service, self.camera, self.events, self.metrics = service, camera, events, metrics
        self.open_detector, self.manifest = open_camera_detector, manifest
        self.detector: StreamDetector | None = None
        self.summary = CameraSummary(camera.name)
        self.source: Source = open_source(camera.spec, buffer=camera.buffer, backoff=camera.backoff, max_backoff=camera.max_backoff,
                                          give_up_after=camera.give_up_after)
        thresholds = thresholds_in_force(manifest)
        self.context = EventContext(model=Path(cfg.model).name, model_sha256=model_sha256, method=manifest.method,
                                    thresholds=thresholds, live=self.source.live)
        metrics.source_stats = lambda: self.source.stats
        metrics.backend_reconnects = self._backend_reconnects
        metrics.running(manifest.method, model_sha256, thresholds)
        self.tracker = EpisodeTracker(cfg.open_after, cfg.close_after, camera=camera.name, rule=manifest.episodes,
                                      threshold=frame_threshold(manifest))
        on_error = self._sink_error
        self.snapshots = SnapshotStore(cfg.snapshots, cfg.snapshot_max_files, int(cfg.snapshot_max_mb * 2**20), on_error) \
            if cfg.snapshots else None
        self.clips = EventClips(cfg.snapshots, cfg.clip_before, cfg.clip_after, cfg.clip_max_s, cfg.clip_max_files,
                                int(cfg.clip_max_mb * 2**20), int(cfg.clip_buffer_mb * 2**20), on_error) \
            if cfg.snapshots and (cfg.clip_before or cfg.clip_after) else None
        self.events_only = cfg.frame_lines == "events"
        # with event-only frame lines, the lines of frames an episode may still claim as its start
        self.recent_lines: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING_FRAMES)
        overlay = cfg.per_camera(cfg.overlay_video, camera)
        self.profiles = ProfileSwitch(cfg.profiles) if cfg.profiles else None
        self.base_thresholds = thresholds  # [thresholds] on the model's: what a profile's overrides go on top of
        self.zones = zones_in(camera.zones, None)
        self.overlay = OverlayWriter(overlay, manifest, on_error=on_error, zones=self.zones) if overlay else None
        frames_log = cfg.per_camera(cfg.frames_log, camera)
        self.frames_log = JsonLinesLog(frames_log, int(cfg.frames_max_mb * 2**20), cfg.frames_backups, max_pending=100,
                                       on_error=on_error) if frames_log else None
        self.peak_image = None
        self.remote_sinks = open_remote_sinks(camera.name, cfg.mqtt, cfg.webhook, on_error=on_error)
        metrics.remote_sinks = self.remote_sinks
        # the calibrated view when `occ calibrate` stored one: a fresh start compares with it, not with what it first sees
        scene = SceneReference.from_view(manifest.scene) if cfg.scene_guard and manifest.scene is not None else None
        self.guard = SceneGuard(scene) if cfg.scene_guard else None
        # the calibration footage's scores at each light when `occ calibrate` stored them; else the stream's first 20 minutes
        drift = DriftReference.from_view(manifest.drift) if cfg.drift_watch and manifest.drift is not None else None
        self.drift = DriftWatch(drift) if cfg.drift_watch else None
        self.avid = manifest.method == "avid"
        # what `occ inspect` reads: whether the camera needs `occ calibrate` now, why and since when
        self.state = CameraState(state_folder(cfg.events_log), camera.name, self.context.model, model_sha256, on_error)

    def _sink_error(self, sink: str) -> None:
        self.summary.sink_errors += 1
        self.metrics.sink_error(sink)

    def _backend_reconnects(self) -> int:
        """Times a server backend (Triton) got its server back; 0 for a local backend."""
        return getattr(getattr(self.detector, "backend", None), "reconnects", 0)

    def _backend_gave_up(self) -> bool:
        """A server backend (Triton) stayed without its server for the camera's give_up_after."""
        return getattr(getattr(self.detector, "backend", None), "gave_up", False)

    def run(self) -> None:
        try:
            self.detector = self.open_detector(self.camera)
            self.state.started()
            self._loop()
            gave_up = getattr(self.source, "gave_up", False) or self._backend_gave_up()
            self.summary.outcome = "gave up" if gave_up else "stopped" if self.service.stop_event.is_set() else "finished"
        except Exception as exc:  # noqa: BLE001 - one camera's failure is reported, the others go on
            self.summary.outcome, self.summary.error = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0]
            log.error(f"camera loop failed: {self.summary.error}", extra={"camera": self.camera.name})
        finally:
            self._finish()

    def _loop(self) -> None:
        for frame in self.source:
            if self.service.stop_event.is_set():
                break
            started = time.perf_counter()
            if self.profiles is not None:
                profile = self.profiles.update(frame.image, frame.timestamp if self.source.live else None)
                if profile != self.context.profile:
                    self._use_profile(profile)
            try:
                result = self.detector.process(frame.image, frame.timestamp)
            except BackendError:
                if self.service.stop_event.is_set() or self._backend_gave_up():
                    break  # stopped, or given up, while a server backend waited for its server
                raise
            self.metrics.observe(result, time.perf_counter() - started, self.detector.stage_seconds)
            self.summary.frames += 1
            self.summary.anomalous_frames += int(result.decision)
            if self.overlay:
                self.overlay.write(frame.image, result)
            if self.clips:
                self.clips.push(frame.image, frame.timestamp)
            guarded = self._guarded(frame.image, result)
            opened, closed, new_peak = self.tracker.update(guarded)
            self._watch_drift(frame.image, result, hold=guarded is not result or self.tracker.current is not None)
            if self.frames_log:
                self._frame_line(frame_record(self.camera.name, result, self.context), opened, closed)
            if opened:
                opened.context = self.context
                if self.clips:
                    clip = self.clips.start(f"{opened.event_id}_frame_{opened.start_frame:08d}")
                    opened.clip = None if clip is None else str(clip)
                self.summary.events += 1
                self.metrics.event_opened()
                self._log_event("opened", opened)
                log.info("event opened", extra={"camera": self.camera.name, "event_id": opened.event_id})
            if new_peak and self.snapshots:
                self.peak_image = render_overlay(frame.image, result, self.manifest, self.zones)
            if closed:
                self._close_event(closed)

    def _frame_line(self, record: dict[str, Any], opened, closed) -> None:
        """Write a frame's line: every frame's, or with ``lines = "events"`` the frames of events,
        including those before an episode opened that its rule counts as its start."""
        if not self.events_only or self.tracker.current is not None or closed:
            if opened is not None:
                for earlier in self.recent_lines:
                    if earlier["frame"] >= opened.start_frame:
                        self.frames_log.write(earlier)
            self.recent_lines.clear()
            self.frames_log.write(record)
        else:
            self.recent_lines.append(record)

    def _use_profile(self, profile: str) -> None:
        """Run with a profile's zones and thresholds; events opened from now on record it."""
        self.detector.set_thresholds(**{**self.base_thresholds, **self.service.config.profiles.thresholds[profile]})
        self.tracker.gate.threshold = frame_threshold(self.detector.manifest)  # a CUSUM measures scores in the τ in force
        self.zones = zones_in(self.camera.zones, profile)
        self.detector.set_zones(self.zones)
        if self.overlay:
            self.overlay.zones = self.zones
        self.context = replace(self.context, thresholds=thresholds_in_force(self.detector.manifest), profile=profile)
        self.metrics.running(self.context.method, self.context.model_sha256, dict(self.context.thresholds))  # occ_threshold follows
        log.info(f"profile {profile}", extra={"camera": self.camera.name})

    def _guarded(self, image, result):
        """The scene guard's hook: a change of the whole view is its own event (``scene_changed``,
        then ``scene_restored``) and no frame of it, nor a frame it suspects, opens an anomaly event."""
        if self.guard is None:
            return result
        share = float(result.mask.mean()) if self.avid and result.mask is not None else None
        state = self.guard.update(image, result.timestamp, share)
        self.metrics.scene_reason = state.reason if state.changed else ""
        if state.started or state.ended:
            self._log_event("scene_changed" if state.started else "scene_restored", _CameraEvent(self.camera.name, result.index,
                                                                                                 result.timestamp, state, self.context))
            log.warning(f"scene changed ({state.reason}): the camera needs `occ calibrate`" if state.started else "scene restored",
                        extra={"camera": self.camera.name})
        return dataclasses.replace(result, decision=False) if state.holds_alarms else result

    def _watch_drift(self, image, result, hold: bool) -> None:
        """The drift watch's hook: frozen while an event is open or the view is changed; a ``drift``
        event when the score distribution leaves the calibration footage's at the same light (or the
        stream start's), ``drift_ended`` when it is back. Only the frames it keeps are measured."""
        if self.drift is None:
            return
        light = frame_light(image) if self.drift.keeps_next else 0.0
        state = self.drift.update(result.score, light, hold)
        self.metrics.drift = state
        if state.started or state.ended:
            self._log_event("drift" if state.started else "drift_ended", _CameraEvent(self.camera.name, result.index,
                                                                                      result.timestamp, state, self.context))
            log.warning("score drift: the camera needs `occ calibrate`" if state.started else "score drift ended",
                        extra={"camera": self.camera.name})

    def _close_event(self, event) -> None:
        if self.snapshots is not None and self.peak_image is not None:
            saved = self.snapshots.save(f"{event.event_id}_frame_{event.peak_frame:08d}", self.peak_image)
            event.snapshot = None if saved is None else str(saved)
        if self.clips:
            self.clips.stop_after(event.end_time)
        self.peak_image = None
        self._log_event("closed", event)
        log.info("event closed", extra={"camera": self.camera.name, "event_id": event.event_id})

    def _log_event(self, kind: str, event) -> None:
        if not self.events.write(kind, event):  # held in memory and retried; counted here, per camera
            self._sink_error(str(self.events.path))
        record = event_record(kind, event)
        if isinstance(event, _CameraEvent):
            self.state.update(record)
        for sink in self.remote_sinks:  # a spool append each; delivery happens on the sink's own thread
            sink.put(record)

    def _finish(self) -> None:
        """Everything a stop must not lose: the open event, then the sinks."""
        pending = self.tracker.flush("shutdown" if self.service.stop_event.is_set() else "end of stream")
        if pending:
            self._close_event(pending)
        if self.clips:
            self.clips.finish()
        self.source.close()
        self.summary.dropped, self.summary.reconnects = self.source.stats.dropped, self.source.stats.reconnects
        self.summary.backend_reconnects = self._backend_reconnects()
        if self.overlay:
            self.overlay.close()
        if self.frames_log:
            self.frames_log.close()
        for sink in self.remote_sinks:
            sink.close()
        self.state.stopped()
        if self.detector is not None:
            self.detector.close()


class Service:
    """Every camera of a configuration, with one events log and one ``/metrics``, until stopped or done."""

    def __init__(self, config: ServiceConfig):
        self.config = config.check()
        self.stop_event = threading.Event()
        self.loops: list[CameraLoop] = []
        self._threads: list[threading.Thread] = []

    @property
    def source(self) -> Source | None:
        """The first camera's source (one-camera services and their tests)."""
        return self.loops[0].source if self.loops else None

    def request_stop(self) -> None:
        """Safe from a signal handler: only sets flags; each loop finishes its frame and cleans up."""
        self.stop_event.set()
        for loop in self.loops:
            if isinstance(loop.source, LiveSource):
                loop.source.stop()

    def run(self, capture_native_output: bool = False) -> ServiceSummary:
        cfg = self.config
        capture = setup_logging(capture_native=True) if capture_native_output else None
        metrics = ServiceMetrics(Path(cfg.model).name)
        events = EventLog(cfg.events_log, int(cfg.events_max_mb * 2**20), cfg.events_backups, cfg.max_pending)
        server = None
        summary = ServiceSummary()
        started = False
        try:
            server = MetricsServer(metrics.render, cfg.metrics_port, cfg.metrics_host, healthy=self._healthy) \
                if cfg.metrics_port else None
            def open_camera_detector(camera: CameraConfig) -> StreamDetector:
                # a Triton server lost mid-stream is waited for by the camera's reconnect rules
                options: dict[str, Any] = {"url": cfg.triton_url, "backoff": camera.backoff, "max_backoff": camera.max_backoff,
                                           "give_up_after": camera.give_up_after, "stop": self.stop_event} \
                    if model_on_server(cfg.backend) else {}
                detector = open_detector(cfg.model, cfg.backend, cfg.preprocess, **options)
                detector.set_thresholds(**cfg.thresholds)
                detector.set_zones(zones_in(camera.zones, None))  # with profiles, the first frame's profile sets them
                return detector

            checked = open_camera_detector(cfg.cameras[0])  # the model and thresholds, checked before any camera starts
            manifest = checked.manifest
            checked.close()
            summary.thresholds = thresholds_in_force(manifest)
            sha256 = None if model_on_server(cfg.backend) else file_sha256(cfg.model)  # once: events carry it
            for camera in cfg.cameras:
                camera_metrics = metrics.camera(camera.name)
                camera_metrics.pending_events = lambda: len(events.lines.pending)
                self.loops.append(CameraLoop(self, camera, open_camera_detector, manifest, events, camera_metrics, sha256))
            log.info("service started", extra={"path": cfg.model, "camera": [c.name for c in cfg.cameras], "sha256": sha256,
                                               "thresholds": summary.thresholds})
            started = True
            threads = [threading.Thread(target=loop.run, name=f"camera {loop.camera.name}") for loop in self.loops]
            self._threads = threads
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.2)  # the main thread stays free for signals
        finally:
            events.close()
            if server:
                server.close()
            summary.cameras = [loop.summary for loop in self.loops]
            summary.exit_code = _exit_code(summary)
            if started:  # a start that failed raises to the caller, which says why and exits non-zero
                log.info("service stopped", extra={"exit_code": int(summary.exit_code), **summary.totals()})
            if capture:
                capture.close()
        return summary

    def _healthy(self) -> bool:
        """Every camera's loop is running and its source delivers frames (``/healthz``)."""
        return (not self.stop_event.is_set() and bool(self.loops) and len(self._threads) == len(self.loops)
                and all(thread.is_alive() for thread in self._threads) and all(loop.source.stats.connected for loop in self.loops))


def _exit_code(summary: ServiceSummary) -> ExitCode:
    outcomes = {camera.outcome for camera in summary.cameras}
    if "failed" in outcomes:
        return ExitCode.FAILED
    if "gave up" in outcomes:
        return ExitCode.GAVE_UP
    return ExitCode.FINISHED
