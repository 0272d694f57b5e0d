import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc_curve

from occ.evaluation.metrics import (
    DetectionDelay,
    MetricError,
    detection_delays,
    equal_error_rate,
    f1_score,
    false_alarms_per_hour,
    frame_level,
    minmax_per_video,
    pixel_level_scores,
    roc_auc,
    roc_curve,
    smooth_scores,
)
from occ.evaluation.protocols import ClipScores, delay_text, false_alarms_text
from occ.evaluation.report import report


def test_auc_hand_computed_with_ties():
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8]
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert roc_auc(labels, scores) == 0.75
    # a tie counts one half: pos 0.4 vs neg 0.4
    assert roc_auc([0, 1], [0.4, 0.4]) == 0.5
    assert roc_auc([0, 0, 1], [0.2, 0.4, 0.4]) == 0.75


def test_auc_and_roc_match_sklearn(rng):
    labels = rng.random(500) < 0.3
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounding makes ties
    assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thr = roc_curve(labels, scores)
    sk_fpr, sk_tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_eer_hand_computed():
    # Perfect separation: EER 0.
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[0] == 0.0
    # Fully inverted: EER 1.
    assert equal_error_rate([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9])[0] == 1.0
    # labels 0,1,0,1 by ascending score: ROC points (0,0) (0,.5) (.5,.5) (.5,1) (1,1); fpr = fnr at 0.5
    rate, _ = equal_error_rate([0, 1, 0, 1], [1, 2, 3, 4])
    assert rate == 0.5
    # Interpolated: 4 negatives, 1 positive on top of the 3rd negative
    rate, _ = equal_error_rate([0, 0, 0, 0, 1], [1, 2, 3, 5, 4])
    # points (0,0) (0.25,0) (0.25,1): fpr - fnr goes -1 -> -0.75 -> 0.25; crossing at fpr 0.25
    assert rate == pytest.approx(0.25)


def test_f1_hand_computed():
    labels = [1, 1, 1, 0, 0]
    predictions = [1, 1, 0, 1, 0]
    # tp=2 fp=1 fn=1 -> 4/6
    assert f1_score(labels, predictions) == pytest.approx(2 / 3)


def test_single_class_raises():
    with pytest.raises(MetricError, match="both"):
        roc_auc([1, 1], [0.1, 0.2])
    with pytest.raises(MetricError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])


def test_frame_level_micro_macro():
    labels = [np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([1, 1, 1])]
    scores = [np.array([0.1, 0.5, 0.6]), np.array([0.7, 0.8, 0.9]), np.array([0.2, 0.3, 0.4])]
    report = frame_level(labels, scores)
    assert report.macro_auc == 1.0  # both mixed videos are perfectly ranked inside themselves
    assert report.videos_in_macro == 2
    pooled_labels = np.concatenate(labels)
    pooled_scores = np.concatenate(scores)
    assert report.micro_auc == pytest.approx(roc_auc_score(pooled_labels, pooled_scores))


def test_minmax_and_smoothing():
    a, b = minmax_per_video([np.array([2.0, 4.0, 3.0]), np.array([5.0, 5.0])])
    assert a.tolist() == [0.0, 1.0, 0.5] and b.tolist() == [0.0, 0.0]
    smoothed = smooth_scores(np.array([0.0, 3.0, 0.0, 3.0]), 3)
    assert smoothed.tolist() == [1.5, 1.0, 2.0, 1.5]
    with pytest.raises(MetricError):
        smooth_scores(np.zeros(3), 2)


def test_pixel_level_criterion_hand_case():
    gt = np.zeros((3, 4, 4), bool)
    gt[0, :2, :2] = True  # frame 0: 4 anomalous pixels
    gt[1, 0, :] = True  # frame 1: 4 anomalous pixels; frame 2 normal
    maps = np.zeros((3, 4, 4))
    maps[0, :2, :2] = [[0.9, 0.8], [0.1, 0.1]]
    maps[1, 0, :] = [0.6, 0.1, 0.1, 0.1]
    maps[2, 3, 3] = 0.5
    labels, scores = pixel_level_scores(maps, gt)
    # ceil(0.4 * 4) = 2nd largest inside the ground truth
    assert labels.tolist() == [True, True, False]
    assert scores.tolist() == [0.8, 0.1, 0.5]
    # at threshold 0.55: frame 0 has 2/4 pixels (>= 40 %) -> hit; frame 1 has 1/4 -> miss; frame 2 clean
    assert ((scores[labels] >= 0.55).mean(), (scores[~labels] >= 0.55).mean()) == (0.5, 0.0)
    # at 0.45 the normal frame fires
    assert ((scores[labels] >= 0.45).mean(), (scores[~labels] >= 0.45).mean()) == (0.5, 1.0)
    assert math.isclose(roc_auc(labels, scores), 0.5)


# ---- at the stored threshold: false alarms per hour, detection delay ----------------------------
LABELS = [0, 0, 1, 1, 1, 0, 0, 0]
DECISIONS = [1, 0, 0, 1, 1, 0, 1, 1]


def test_false_alarms_per_hour_hand_computed():
    # alarms (runs of decisions): frames 0, 3–4, 6–7; 3–4 lies in the event, so 2 are false.
    # normal frames 0, 1, 5, 6, 7: 5 frames at 10 frames/s = 0.5 s = 1/7200 h → 2 × 7200 per hour
    result = false_alarms_per_hour([LABELS], [DECISIONS], fps=10)
    assert (result.false_alarms, result.normal_hours, result.per_hour) == (2, pytest.approx(0.5 / 3600), pytest.approx(14400.0))
    # an alarm run that reaches into the event is not false, even when it starts on normal frames
    assert false_alarms_per_hour([[0, 0, 1, 1]], [[0, 1, 1, 0]], fps=1).false_alarms == 0
    none = false_alarms_per_hour([[0, 0, 0]], [[0, 0, 0]], fps=25)
    assert (none.false_alarms, none.per_hour, none.per_hour_low) == (0, 0.0, 0.0)
    assert none.normal_hours == pytest.approx(3 / 25 / 3600)


def test_detection_delay_hand_computed():
    result = detection_delays([LABELS], [DECISIONS])  # the event is frames 2–4, first alarm inside it on frame 3
    assert result == DetectionDelay(events=1, detected=1, missed=0, delays=[1], median_frames=1.0, mean_frames=1.0)


def test_detection_delay_counts_missed_events_and_alarms_already_on():
    labels = [0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 1]
    decisions = [1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1]
    # events 1–2 (alarm on since frame 0: delay 0), 5–7 (no alarm inside: missed; the alarm on
    # frame 8 is after it), 9–12 (first alarm on frame 11: delay 2)
    result = detection_delays([labels], [decisions])
    assert result == DetectionDelay(events=3, detected=2, missed=1, delays=[0, 2], median_frames=1.0, mean_frames=1.0)
    none = detection_delays([[0, 1, 1]], [[1, 0, 0]])
    assert (none.events, none.detected, none.missed, none.median_frames, none.mean_frames) == (1, 0, 1, None, None)
    assert detection_delays([[0, 0]], [[1, 1]]).events == 0


def test_runs_and_events_stop_at_clip_boundaries():
    # one alarm run across the boundary if the clips were joined: normal frames in the first clip,
    # anomalous in the second. Per clip, the first clip's run is a false alarm of its own.
    labels, decisions = [[0, 0], [1, 0]], [[0, 1], [1, 0]]
    assert false_alarms_per_hour(labels, decisions, fps=1).false_alarms == 1
    assert false_alarms_per_hour([[0, 0, 1, 0]], [[0, 1, 1, 0]], fps=1).false_alarms == 0  # the same frames joined
    # two alarm runs that would join into one: two false alarms
    assert false_alarms_per_hour([[0, 0], [0, 0]], [[0, 1], [1, 0]], fps=1).false_alarms == 2
    # an event that would span the boundary: two events, the first missed, the second caught at once
    result = detection_delays([[0, 1], [1, 1, 0]], [[0, 0], [1, 0, 0]])
    assert (result.events, result.missed, result.delays) == (2, 1, [0])
    assert detection_delays([[0, 1, 1, 1, 0]], [[0, 0, 1, 0, 0]]).delays == [1]  # joined: one event


def test_false_alarms_and_delays_refuse_bad_input_in_one_line():
    for fps in (0, -10, float("nan"), float("inf")):
        with pytest.raises(MetricError, match="fps must be a positive number") as caught:
            false_alarms_per_hour([LABELS], [DECISIONS], fps=fps)
        assert "\n" not in str(caught.value)
    with pytest.raises(MetricError, match="clip 0: 8 labels but 7 decisions"):
        false_alarms_per_hour([LABELS], [DECISIONS[:7]], fps=10)
    with pytest.raises(MetricError, match="1 clips of labels but 2 clips of decisions"):
        detection_delays([LABELS], [DECISIONS, DECISIONS])
    with pytest.raises(MetricError, match="need frames labelled normal; there are none"):
        false_alarms_per_hour([[1, 1]], [[0, 1]], fps=10)


def _scored(name, labels, decisions, fps=None):
    labels, decisions = np.asarray(labels, bool), np.asarray(decisions, bool)
    return ClipScores(name, labels, decisions.astype(float), decisions, fps=fps)


def test_report_gives_false_alarms_per_hour_and_delay_at_the_stored_threshold():
    clips = [_scored("Test001", LABELS, DECISIONS), _scored("Test002", [0, 1, 1, 0], [0, 0, 0, 1])]
    at = report(clips, smoothing=3).at_stored_threshold
    assert at.false_alarms_per_hour is None  # no frame rate known
    assert at.detection_delay == DetectionDelay(events=2, detected=1, missed=1, delays=[1], median_frames=1.0, mean_frames=1.0)
    # given: 3 false alarms (two in Test001, frame 3 of Test002) over 7 normal frames at 10 frames/s
    rate = report(clips, smoothing=3, fps=10).at_stored_threshold.false_alarms_per_hour
    assert (rate.false_alarms, rate.normal_hours, rate.per_hour, rate.fps) == (
        3, pytest.approx(0.7 / 3600), pytest.approx(3 * 3600 / 0.7), 10.0)
    # the clips' own rate, when they share one
    rated = [_scored(c.name, c.labels, c.decisions, fps=25.0) for c in clips]
    assert report(rated, smoothing=3).at_stored_threshold.false_alarms_per_hour.fps == 25.0
    assert report(rated, smoothing=3, fps=10).at_stored_threshold.false_alarms_per_hour.fps == 10.0  # the argument wins
    mixed = [rated[0], _scored("Test002", [0, 1, 1, 0], [0, 0, 0, 1], fps=30.0)]
    assert report(mixed, smoothing=3).at_stored_threshold.false_alarms_per_hour is None
    with pytest.raises(MetricError, match="fps must be a positive number"):
        report(clips, smoothing=3, fps=0)


def test_operator_cells():
    at = report([_scored("Test001", LABELS, DECISIONS)], smoothing=3, fps=10).at_stored_threshold
    assert false_alarms_text(at.false_alarms_per_hour) == "14,400 (2 in 0.5 s; 95 %: 1,744–52,018)"
    assert delay_text(at.detection_delay) == "1 (1/1 events caught)"
    assert false_alarms_text(None) == "n/a (frame rate unknown)"
    assert delay_text(detection_delays([[0, 1]], [[0, 0]])) == "none (0/1 events caught)"
    assert delay_text(detection_delays([[0, 0]], [[0, 0]])) == "n/a (no anomalous events)"


def test_poisson_rate_interval_matches_the_chi_square_tables():
    # Garwood's interval, read from chi-square tables: χ²(0.025; 2k)/2 and χ²(0.975; 2k+2)/2
    from occ.evaluation.metrics import poisson_rate_interval

    assert poisson_rate_interval(0, 1.0) == pytest.approx((0.0, 3.689), abs=1e-3)
    assert poisson_rate_interval(1, 1.0) == pytest.approx((0.0253, 5.572), abs=1e-3)
    assert poisson_rate_interval(9, 1.0) == pytest.approx((4.115, 17.085), abs=1e-3)
    # the rate scales with the exposure: 9 alarms in half an hour
    assert poisson_rate_interval(9, 0.5) == pytest.approx((8.23, 34.17), abs=1e-2)
    with pytest.raises(MetricError):
        poisson_rate_interval(1, 0.0)


def test_false_alarms_per_hour_reports_the_interval_and_the_minutes_behind_it():
    labels = [np.zeros(36000, bool)]
    decisions = [np.zeros(36000, bool)]
    decisions[0][[100, 5000, 9000]] = True
    report = false_alarms_per_hour(labels, decisions, fps=10)
    assert report.false_alarms == 3 and report.normal_minutes == pytest.approx(60.0)
    assert report.per_hour_low == pytest.approx(0.619, abs=1e-3) and report.per_hour_high == pytest.approx(8.767, abs=1e-3)
