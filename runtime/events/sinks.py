"""Where events go: JSON-lines logs and rotated JPEG snapshots of their peak frames."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from .episodes import Event


class EventLog:
    """Appends events as JSON lines, flushed per line so a crash loses nothing written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", buffering=1)

    def write(self, kind: str, event: Event) -> None:
        self._handle.write(json.dumps({"type": kind, **event.to_json()}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class SnapshotStore:
    """JPEG snapshots of event peaks, with bounded disk use (oldest removed first).

    Args:
        folder: where snapshots go.
        max_files: most snapshots kept.
        max_bytes: most bytes kept.
    """

    def __init__(self, folder: str | Path, max_files: int = 200, max_bytes: int = 200 * 2**20):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_files, self.max_bytes = max_files, max_bytes

    def save(self, name: str, image: np.ndarray) -> Path:
        path = self.folder / f"{name}.jpg"
        tmp = self.folder / f".{name}.jpg.tmp"
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            raise RuntimeError(f"{path}: JPEG encoding failed")
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
        self.rotate()
        return path

    def rotate(self) -> None:
        files = sorted(self.folder.glob("*.jpg"), key=lambda p: (p.stat().st_mtime, p.name))
        total = sum(p.stat().st_size for p in files)
        while files and (len(files) > self.max_files or total > self.max_bytes):
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink()
