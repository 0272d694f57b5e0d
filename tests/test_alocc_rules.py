"""The ALOCC rule experiment's own rules, on hand-made numbers: causal per-patch windows, and the
choice made inside the folds (never on the fold it is measured on)."""
import numpy as np

from occ.benchmarks.alocc_rules import DEPLOYED, FRAME_RULES, _causal, candidate_name, choose, inside_the_folds


def _entry(alarms: int, minutes: float, caught: int, events: int = 6) -> dict:
    rate = {"false_alarms": alarms, "normal_hours": minutes / 60}
    return {"alarms": {"all": {"episodes": {"false_alarms_per_hour": rate}},
                       "test_clips": {"episodes": {"detection_delay": {"detected": caught, "events": events}}}}}


def test_causal_windows_use_only_past_frames_of_the_clip():
    patches = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 9.0]])
    assert _causal(patches, 2, np.min).tolist() == [[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]]
    assert np.allclose(_causal(patches, 3, np.mean), [[1, 0], [5 / 3, 0], [2, 3]])
    rule = FRAME_RULES["largest patch, each patch at its lowest of 2 frames"]
    assert rule(patches).tolist() == [1.0, 1.0, 2.0]  # the lone 9 of the last frame does not count yet


def test_the_choice_keeps_detection_and_is_made_on_the_other_folds():
    deployed, fewer, blind = candidate_name(*DEPLOYED), "fewer alarms | same detection", "no alarms | misses events"
    folds = [{"seed": 0, "fold": k, "candidates": {deployed: _entry(4, 1.5, 6), fewer: _entry(a, 1.5, 6), blind: _entry(0, 1.5, 2)}}
             for k, a in enumerate([1, 1, 9])]
    assert choose([f["candidates"] for f in folds[:2]]) == fewer       # 'blind' has fewer alarms but catches fewer events
    assert choose([f["candidates"] for f in folds[1:]]) == deployed    # 10 alarms against 8 over folds 1 and 2
    result = inside_the_folds(folds)["seed 0"]
    chosen = [fold["chosen"] for fold in result["folds"]]
    # fold 2, where 'fewer' has 9 alarms, is measured with the choice of folds 0 and 1, which is 'fewer'
    assert chosen == [deployed, deployed, fewer]
    assert result["chosen_inside_folds"]["episodes"] == 4 + 4 + 9 and result["deployed"]["episodes"] == 12
    assert result["per_candidate"][fewer]["worst_fold_per_hour"] == 9 / (1.5 / 60)
