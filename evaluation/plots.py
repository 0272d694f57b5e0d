"""Pictures of evaluation results: the ROC curve as a PNG, drawn with OpenCV."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from occ.runtime.files import write_atomic

from .metrics import roc_auc, roc_curve


def write_roc_png(path: str | Path, labels: np.ndarray, scores: np.ndarray, size: int = 320) -> Path:
    """Draw the ROC curve with its AUC as a PNG."""
    fpr, tpr, _ = roc_curve(labels, scores)
    margin = 30
    canvas = np.full((size + 2 * margin, size + 2 * margin, 3), 255, np.uint8)
    cv2.rectangle(canvas, (margin, margin), (margin + size, margin + size), (0, 0, 0), 1)
    cv2.line(canvas, (margin, margin + size), (margin + size, margin), (180, 180, 180), 1)
    points = np.stack([margin + fpr * size, margin + (1 - tpr) * size], axis=1).astype(np.int32)
    cv2.polylines(canvas, [points], False, (200, 60, 0), 2, cv2.LINE_AA)
    cv2.putText(canvas, f"AUC {roc_auc(labels, scores):.3f}", (margin + 8, margin + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(canvas, "false positive rate", (margin + size // 2 - 60, margin + size + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    ok, encoded = cv2.imencode(".png", canvas)
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    return write_atomic(Path(path), encoded.tobytes())
