import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc_curve

from occ.evaluation.metrics import (
    MetricError,
    equal_error_rate,
    f1_score,
    frame_level,
    minmax_per_video,
    pixel_level_rates,
    pixel_level_scores,
    roc_auc,
    roc_curve,
    smooth_scores,
)


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
    tpr, fpr = pixel_level_rates(maps >= 0.55, gt)
    assert (tpr, fpr) == (0.5, 0.0)
    assert ((scores[labels] >= 0.55).mean(), (scores[~labels] >= 0.55).mean()) == (tpr, fpr)
    # at 0.45 the normal frame fires
    assert pixel_level_rates(maps >= 0.45, gt) == (0.5, 1.0)
    assert math.isclose(roc_auc(labels, scores), 0.5)
