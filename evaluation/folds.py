"""Leave-clips-out cross-validation: does a choice made on some test clips hold on the others?

A data set's labelled test clips are split every way into clips a choice is made on and clips it
is measured on (with six clips and three chosen on: 20 folds). A choice is kept only if, over the
folds, it wins on the mean frame micro AUC of the measured clips and does not lose the worst fold:
a change that lifts the clips it was tuned on but drops on the others is caught here, not on a
camera.

The same idea on the normal side: :func:`training_clip_folds` splits a data set's normal training
clips into folds, so that a model trained without one fold's clips counts its false alarms on
normal footage it has never seen.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .metrics import MetricError, roc_auc

Fold = tuple[tuple[str, ...], tuple[str, ...]]


def leave_clips_out(clips: Sequence[str], choose: int | None = None) -> list[Fold]:
    """Every split of ``clips`` into ``choose`` clips to choose on (default: half) and the rest to measure on."""
    clips = list(clips)
    choose = len(clips) // 2 if choose is None else choose
    if not 1 <= choose < len(clips):
        raise MetricError(f"leave-clips-out needs 1 <= clips chosen on < {len(clips)} clips, got {choose}")
    return [(chosen, tuple(c for c in clips if c not in chosen)) for chosen in itertools.combinations(clips, choose)]


def training_clip_folds(clips: Sequence[str], folds: int) -> list[tuple[str, ...]]:
    """The clips each fold holds out: the i-th clip in name order goes to fold ``i mod folds``, so
    every clip is held out exactly once (Ped2's 16 in 4 folds: Train001, 005, 009, 013 in fold 0)."""
    clips = sorted(clips)
    if not 2 <= folds <= len(clips):
        raise MetricError(f"holding training clips out needs 2 <= folds <= {len(clips)} clips, got {folds}")
    return [tuple(clips[fold::folds]) for fold in range(folds)]


def pooled_auc(labels: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray], clips: Sequence[str]) -> float:
    """Frame micro AUC over the frames of ``clips`` pooled."""
    return roc_auc(np.concatenate([labels[c] for c in clips]), np.concatenate([scores[c] for c in clips]))


@dataclass
class FoldTable:
    """Measured-clip AUC per fold, and which candidate each fold chose (one candidate: always it)."""

    folds: list[Fold]
    measured_auc: np.ndarray
    chosen: list[str]

    @property
    def mean(self) -> float:
        return float(self.measured_auc.mean())

    @property
    def worst(self) -> float:
        return float(self.measured_auc.min())

    def to_json(self) -> dict:
        return {"mean": self.mean, "worst": self.worst, "folds": [
            {"chosen_on": list(c), "measured_on": list(m), "auc": float(a), "choice": k}
            for (c, m), a, k in zip(self.folds, self.measured_auc, self.chosen)]}


def fold_table(labels: Mapping[str, np.ndarray], candidates: Mapping[str, Mapping[str, np.ndarray]],
               folds: list[Fold]) -> FoldTable:
    """Per fold: the candidate (scoring, setting, …) with the best AUC on the clips chosen on,
    measured on the other clips. With one candidate this is that candidate's AUC on each fold's
    measured clips. ``candidates``: name → clip → per-frame scores."""
    if not candidates:
        raise MetricError("no candidate to choose from")
    aucs, chosen = [], []
    for choose_on, measure_on in folds:
        best = max(candidates, key=lambda name: pooled_auc(labels, candidates[name], choose_on))
        aucs.append(pooled_auc(labels, candidates[best], measure_on))
        chosen.append(best)
    return FoldTable(folds, np.array(aucs), chosen)


def keeps(baseline: FoldTable, variant: FoldTable) -> bool:
    """The rule a choice must pass: a higher mean and a worst fold no lower than the baseline's."""
    return variant.mean > baseline.mean and variant.worst >= baseline.worst


def fewest_alarms_choice(totals: Mapping[str, Mapping[str, float]], deployed: str) -> str:
    """The normal side's choice on the folds it is made on: the candidate with the fewest alarms per
    hour (``totals[name]["per_hour"]``) among those that catch as many events (``"events_caught"``)
    as the ``deployed`` one; the deployed one on a tie."""
    eligible = [name for name, total in totals.items() if total["events_caught"] >= totals[deployed]["events_caught"]]
    return min(eligible, key=lambda name: (totals[name]["per_hour"], name != deployed))
