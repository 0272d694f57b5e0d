"""Decisions → what an operator sees: episodes, event logs, snapshots, overlays and ``/metrics``."""
from pathlib import Path

from .episodes import EVENT_SCHEMA, EpisodeTracker, Event, EventContext, camera_slug, iso_time, new_event_id
from .metrics import CameraMetrics, MetricsServer, ServiceMetrics, port_problem
from .overlay import OverlayWriter, render_overlay
from .sinks import FRAME_SCHEMA, EventClips, EventLog, JsonLinesLog, SnapshotStore, frame_record

# The JSON Schema of each line the service writes, by the value of its "schema" field (docs/events.md).
SCHEMA_FILES = {name: Path(__file__).parent / "schema" / f"{name.split('.', 1)[1]}.json" for name in (EVENT_SCHEMA, FRAME_SCHEMA)}

__all__ = ["SCHEMA_FILES", "EVENT_SCHEMA", "FRAME_SCHEMA", "CameraMetrics", "EpisodeTracker", "Event", "EventClips", "EventContext", "EventLog",
           "JsonLinesLog", "MetricsServer", "OverlayWriter", "ServiceMetrics", "SnapshotStore", "camera_slug", "frame_record", "iso_time",
           "new_event_id", "port_problem", "render_overlay"]
