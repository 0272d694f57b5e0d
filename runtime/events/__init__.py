"""Decisions → what an operator sees: episodes, event logs, snapshots, overlays and ``/metrics``."""
from pathlib import Path

from .episodes import (CAMERA_SCHEMA, EVENT_SCHEMA, EpisodeCount, EpisodeGate, EpisodeTracker, Event, EventContext, camera_slug, count_episodes, episode_rule,
                       iso_time, new_event_id)
from .camera_state import CAMERA_STATE_SCHEMA, CameraState, CameraStateError, read_camera_states, state_folder
from .feedback import HARD_NORMAL_SCHEMA, FeedbackError, HardNormalClip, Marked, hard_normal_clips, mark_not_anomaly
from .metrics import CameraMetrics, MetricsServer, ServiceMetrics, port_problem
from .overlay import OverlayWriter, render_overlay
from .mqtt import MqttConfig
from .remote import open_remote_sinks
from .sinks import FRAME_SCHEMA, EventClips, EventLog, JsonLinesLog, SnapshotStore, event_record, frame_record
from .spool import DeliveryError, Spool, SpooledSink
from .webhook import WebhookConfig

# The JSON Schema of each line the service writes, by the value of its "schema" field (docs/events.md).
SCHEMA_FILES = {name: Path(__file__).parent / "schema" / f"{name.split('.', 1)[1]}.json" for name in (EVENT_SCHEMA, FRAME_SCHEMA, CAMERA_SCHEMA,
                                                                                                      HARD_NORMAL_SCHEMA, CAMERA_STATE_SCHEMA)}

__all__ = ["SCHEMA_FILES", "CAMERA_SCHEMA", "EVENT_SCHEMA", "FRAME_SCHEMA", "CameraMetrics", "EpisodeCount", "EpisodeGate", "EpisodeTracker", "Event", "EventClips",
           "EventContext", "EventLog", "JsonLinesLog", "MetricsServer", "OverlayWriter", "ServiceMetrics", "SnapshotStore", "camera_slug",
           "count_episodes", "episode_rule", "frame_record", "iso_time", "new_event_id", "port_problem", "render_overlay"]
__all__ += ["HARD_NORMAL_SCHEMA", "FeedbackError", "HardNormalClip", "Marked", "hard_normal_clips", "mark_not_anomaly"]
__all__ += ["DeliveryError", "MqttConfig", "Spool", "SpooledSink", "WebhookConfig", "event_record", "open_remote_sinks"]
__all__ += ["CAMERA_STATE_SCHEMA", "CameraState", "CameraStateError", "read_camera_states", "state_folder"]
