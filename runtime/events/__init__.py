"""Decisions → what an operator sees: episodes, event logs, snapshots, overlays and ``/metrics``."""
from .episodes import EpisodeTracker, Event
from .metrics import Metrics, MetricsServer
from .overlay import OverlayWriter, render_overlay
from .sinks import EventLog, SnapshotStore

__all__ = ["EpisodeTracker", "Event", "EventLog", "Metrics", "MetricsServer", "OverlayWriter", "SnapshotStore", "render_overlay"]
