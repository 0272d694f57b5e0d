"""A PNG of benchmark results drawn with OpenCV (no plotting library on a camera box)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_COLOURS = [(200, 90, 30), (40, 160, 40), (30, 30, 200), (160, 60, 160), (20, 160, 200)]


def _bars(canvas: np.ndarray, origin: tuple[int, int], size: tuple[int, int], title: str,
          groups: list[str], series: dict[str, list[float]], unit: str) -> None:
    x0, y0 = origin
    width, height = size
    cv2.putText(canvas, title, (x0, y0 - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (x0, y0), (x0 + width, y0 + height), (0, 0, 0), 1)
    top = max((v for values in series.values() for v in values), default=1.0) or 1.0
    slot = width / max(len(groups), 1)
    bar = slot / (len(series) + 1)
    for g, group in enumerate(groups):
        cv2.putText(canvas, group, (int(x0 + g * slot + 4), y0 + height + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        for s, (name, values) in enumerate(series.items()):
            value = values[g]
            if value != value:  # NaN: no such run
                continue
            h = int(value / top * (height - 20))
            left = int(x0 + g * slot + (s + 0.5) * bar)
            cv2.rectangle(canvas, (left, y0 + height - h), (int(left + bar * 0.9), y0 + height), _COLOURS[s % len(_COLOURS)], -1)
            cv2.putText(canvas, f"{value:.3g}", (left, y0 + height - h - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1)
    for s, name in enumerate(series):
        cv2.putText(canvas, name, (x0 + width + 10, y0 + 14 + 16 * s), cv2.FONT_HERSHEY_SIMPLEX, 0.4, _COLOURS[s % len(_COLOURS)], 1)
    cv2.putText(canvas, unit, (x0 - 2, y0 + height + 32), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (80, 80, 80), 1)


def plot_latency(result: dict, path: str | Path) -> Path:
    """Latency percentiles (p50, p90, p99 end to end) and throughput, grouped by backend and batch."""
    runs = result["runs"]
    groups = [f"{r['backend']} b{r['batch']}" for r in runs]
    canvas = np.full((560, 120 + 150 * max(len(groups), 1) + 160, 3), 255, np.uint8)
    width = 150 * max(len(groups), 1)
    latency = {p: [r["end_to_end_ms"][p] for r in runs] for p in ("p50", "p90", "p99")}
    _bars(canvas, (60, 40), (width, 200), "end-to-end latency per batch (ms)", groups, latency, "ms")
    _bars(canvas, (60, 310), (width, 200), "throughput (frames/s)", groups,
          {"frames/s": [r["throughput"]["frames_per_s"] for r in runs]}, "frames/s")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), canvas)
    return path
