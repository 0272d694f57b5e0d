"""Plots of evaluation results for people at a workstation: the ROC curve and each clip's score
over time, drawn with matplotlib (the ``plots`` extra; a camera box never needs it).

Each plot is built as a :class:`matplotlib.figure.Figure` (no pyplot, so no global state and no
display) and written atomically as a PNG.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from occ.runtime.files import write_atomic

from .datasets.common import ranges_from_labels
from .metrics import equal_error_rate, roc_auc, roc_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .report import ClipScores

FIGURE_SIZE = (6.0, 4.5)  # inches
DPI = 110


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Fail in one line, before any work, when the plots cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'occ[plots]'") from None


def roc_figure(labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray | None = None, title: str = "") -> Figure:
    """The frame-level ROC with its AUC, the equal-error point and, given the stored threshold's
    ``decisions``, the operating point the deployed model runs at."""
    require_matplotlib()
    from matplotlib.figure import Figure

    labels = np.asarray(labels, bool)
    fpr, tpr, _ = roc_curve(labels, scores)
    eer, _ = equal_error_rate(labels, scores)
    figure = Figure(figsize=(FIGURE_SIZE[1], FIGURE_SIZE[1]), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    axes.plot(fpr, tpr, color="tab:blue", linewidth=2, label=f"ROC (AUC {roc_auc(labels, scores):.3f})")
    axes.plot([0, 1], [0, 1], color="0.7", linestyle="--", linewidth=1, label="chance")
    axes.plot([eer], [1 - eer], "o", color="tab:orange", label=f"equal error rate {eer:.1%}")
    if decisions is not None:
        decisions = np.asarray(decisions, bool)
        point = (float(decisions[~labels].mean()), float(decisions[labels].mean()))
        axes.plot(*point, "s", color="tab:red", label=f"stored threshold: FPR {point[0]:.1%}, TPR {point[1]:.1%}")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (normal frames flagged)",
             ylabel="true positive rate (anomalous frames flagged)", title=title or "frame-level ROC")
    axes.set_aspect("equal")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize="small")
    return figure


def score_timeline_figure(clip: ClipScores, threshold: float, title: str = "") -> Figure:
    """One clip's frame scores over time, the labelled anomalous frames shaded and the threshold drawn."""
    require_matplotlib()
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    axes = figure.subplots()
    frames = np.arange(clip.scores.size)
    for number, (first, last) in enumerate(ranges_from_labels(clip.labels)):  # 1-based, inclusive
        axes.axvspan(first - 1.5, last - 0.5, color="tab:red", alpha=0.15, linewidth=0,
                     label="labelled anomalous" if number == 0 else None)
    axes.plot(frames, clip.scores, color="tab:blue", linewidth=1.2, label="frame score")
    axes.axhline(threshold, color="tab:red", linestyle="--", linewidth=1, label=f"threshold {threshold:.3g}")
    flagged = np.asarray(clip.decisions, bool)
    if flagged.any():
        axes.plot(frames[flagged], clip.scores[flagged], ".", color="tab:red", markersize=3, label="flagged")
    axes.set(xlabel="frame", ylabel="anomaly score", title=title or clip.name, xlim=(-0.5, max(frames.size - 0.5, 0.5)))
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return figure


def write_png(figure: Figure, path: str | Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_atomic(Path(path), buffer.getvalue())


def write_roc_png(path: str | Path, labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray | None = None,
                  title: str = "") -> Path:
    return write_png(roc_figure(labels, scores, decisions, title), path)


def write_evaluation_plots(folder: str | Path, clips: Sequence[ClipScores], threshold: float, model: str) -> list[Path]:
    """``roc.png`` over every clip and ``scores_<clip>.png`` per clip in ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.concatenate([c.labels for c in clips])
    written = [write_roc_png(folder / "roc.png", labels, np.concatenate([c.scores for c in clips]),
                             np.concatenate([c.decisions for c in clips]), f"{Path(model).name}: frame-level ROC")]
    for clip in clips:
        written.append(write_png(score_timeline_figure(clip, threshold, f"{Path(model).name} on {clip.name}"),
                                 folder / f"scores_{_file_name(clip.name)}.png"))
    return written


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "clip"
