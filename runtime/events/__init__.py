"""Decisions → what an operator sees: episodes, event logs, snapshots, overlays and ``/metrics``."""
from .episodes import EpisodeTracker, Event, camera_slug, new_event_id
from .metrics import CameraMetrics, MetricsServer, ServiceMetrics, port_problem
from .overlay import OverlayWriter, render_overlay
from .mqtt import MqttConfig
from .remote import open_remote_sinks
from .sinks import EventLog, JsonLinesLog, SnapshotStore, event_record
from .spool import DeliveryError, Spool, SpooledSink
from .webhook import WebhookConfig

__all__ = ["CameraMetrics", "EpisodeTracker", "Event", "EventLog", "JsonLinesLog", "MetricsServer", "OverlayWriter", "ServiceMetrics",
           "SnapshotStore", "camera_slug", "new_event_id", "port_problem", "render_overlay"]
__all__ += ["DeliveryError", "MqttConfig", "Spool", "SpooledSink", "WebhookConfig", "event_record", "open_remote_sinks"]
