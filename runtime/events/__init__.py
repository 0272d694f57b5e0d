"""Decisions → what an operator sees: episodes, event logs, snapshots, overlays and ``/metrics``."""
from .episodes import EpisodeCount, EpisodeGate, EpisodeTracker, Event, camera_slug, count_episodes, episode_rule, new_event_id
from .metrics import CameraMetrics, MetricsServer, ServiceMetrics, port_problem
from .overlay import OverlayWriter, render_overlay
from .sinks import EventLog, JsonLinesLog, SnapshotStore

__all__ = ["CameraMetrics", "EpisodeCount", "EpisodeGate", "EpisodeTracker", "Event", "EventLog", "JsonLinesLog", "MetricsServer", "OverlayWriter", "ServiceMetrics",
           "SnapshotStore", "camera_slug", "count_episodes", "episode_rule", "new_event_id", "port_problem", "render_overlay"]
