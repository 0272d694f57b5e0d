"""RBDC and TBDC (Ramachandra & Jones, WACV 2020) against cases worked out by hand."""
import numpy as np
import pytest

from occ.evaluation.localization import (TruthRegion, box_iou, detection_criteria, map_detections, maps_criteria, match_regions,
                                         truth_regions)
from occ.evaluation.metrics import MetricError


def test_box_iou_by_hand():
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching edges share no pixel
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0


def test_overlap_of_one_tenth_is_the_line():
    truth = [[0, 0, 10, 10]]
    # 8..18 shares 2 columns: 20 / 180 = 0.111 >= 0.1; 9..19 shares 1: 10 / 190 = 0.053 < 0.1
    hits, wrong = match_regions([[8, 0, 18, 10]], truth)
    assert hits.tolist() == [True] and wrong == 0
    hits, wrong = match_regions([[9, 0, 19, 10]], truth)
    assert hits.tolist() == [False] and wrong == 1


def test_one_detection_can_find_two_regions_and_a_stray_one_is_a_false_positive():
    hits, wrong = match_regions([[0, 0, 20, 10], [50, 50, 60, 60]], [[0, 0, 10, 10], [10, 0, 20, 10]])
    assert hits.tolist() == [True, True] and wrong == 1


def test_curve_areas_by_hand():
    # 4 frames; one track with regions in frames 0 and 1; detections scored 0.8 (frame 2, stray),
    # 0.6 (frame 3, stray) and 0.4 (frame 0, on the region). Thresholds 0.8, 0.6, 0.4 give
    # (false positives per frame, region rate, track rate) = (0.25, 0, 0), (0.5, 0, 0), (0.5, 0.5, 1).
    truth = [TruthRegion(0, 7, (0, 0, 10, 10)), TruthRegion(1, 7, (0, 0, 10, 10))]
    scored = {0: [([0, 0, 10, 10], 0.4)], 2: [([40, 40, 50, 50], 0.8)], 3: [([40, 40, 50, 50], 0.6)]}
    thresholds = [0.8, 0.6, 0.4]
    detections = [[[box for box, score in scored.get(frame, []) if score >= t] for frame in range(4)] for t in thresholds]
    result = detection_criteria(truth, detections, frames=4, thresholds=thresholds)
    assert [(p.false_positives_per_frame, p.region_rate, p.track_rate) for p in result.curve] == \
        [(0.25, 0.0, 0.0), (0.5, 0.0, 0.0), (0.5, 0.5, 1.0)]
    # region rate 0 up to 0.5 false positives per frame, then 0.5 held to 1: area 0.5 * 0.5
    assert result.rbdc == pytest.approx(0.25)
    # track rate 1 from 0.5 to 1: area 0.5
    assert result.tbdc == pytest.approx(0.5)
    assert (result.regions, result.tracks) == (2, 1)


def test_curve_is_cut_at_one_false_positive_per_frame():
    # 2 frames, one region in frame 0. Threshold a: one stray box (0.5 per frame), the region missed;
    # threshold b: 4 stray boxes (2 per frame) and the region found. The line from (0.5, 0) to
    # (2, 1) is cut at 1 where it reaches 1/3: area 0.5 * 0.5 * 1/3 = 1/12.
    truth = [TruthRegion(0, 0, (0, 0, 10, 10))]
    stray = [[30, 30, 40, 40], [60, 60, 70, 70]]
    detections = [[[stray[0]], []], [stray + [[0, 0, 10, 10]], stray]]
    result = detection_criteria(truth, detections, frames=2)
    assert result.rbdc == pytest.approx(1 / 12)
    assert result.tbdc == pytest.approx(1 / 12)


def test_a_lower_threshold_that_finds_less_does_not_lower_the_curve():
    # threshold a finds the region with no false positive; threshold b merges it into a stray
    # whole-frame box (2 false positives per frame over 1 frame, the region missed): the rate
    # reachable with at most x false positives per frame stays 1, area 1.
    truth = [TruthRegion(0, 0, (0, 0, 10, 10))]
    detections = [[[[0, 0, 10, 10]]], [[[0, 0, 100, 100], [200, 200, 210, 210]]]]
    assert detection_criteria(truth, detections, frames=1).rbdc == pytest.approx(1.0)


def test_a_track_counts_from_one_tenth_of_its_regions():
    truth = [TruthRegion(frame, 0, (0, 0, 10, 10)) for frame in range(20)]
    two = [[[0, 0, 10, 10]] if frame < 2 else [] for frame in range(20)]
    one = [[[0, 0, 10, 10]] if frame < 1 else [] for frame in range(20)]
    assert detection_criteria(truth, [two], frames=20).curve[0].track_rate == 1.0  # 2 of 20 = 10 %
    assert detection_criteria(truth, [one], frames=20).curve[0].track_rate == 0.0  # 1 of 20 = 5 %
    assert detection_criteria(truth, [two], frames=20).tbdc == pytest.approx(1.0)
    assert detection_criteria(truth, [one], frames=20).rbdc == pytest.approx(0.05)


def test_regions_and_boxes_from_masks_and_maps():
    mask = np.zeros((20, 40), bool)
    mask[2:6, 3:9] = True
    mask[10:12, 30:40] = True  # a second part of the same track
    regions = truth_regions([mask, None, np.zeros_like(mask)], [5, -1, -1])
    assert regions == [TruthRegion(0, 5, (3, 2, 9, 6)), TruthRegion(0, 5, (30, 10, 40, 12))]
    # a 10x20 map on a 20x40 frame: each map pixel is 2x2 frame pixels
    score_map = np.zeros((10, 20), np.float32)
    score_map[1:3, 2:4] = 0.9
    score_map[6, 0] = np.nan
    boxes = map_detections([score_map], [0.5, -1.0], (20, 40))
    assert boxes[0] == [[[4, 2, 8, 6]]]
    assert boxes[1] == [[[0, 0, 40, 20]]]  # everything finite is above -1: one box (NaN never detects, but is inside it)


def test_maps_criteria_perfect_map_scores_one():
    masks = [np.zeros((20, 40), bool) for _ in range(4)]
    for frame in (1, 2):
        masks[frame][4:10, 8 + frame:20 + frame] = True
    maps = [m.astype(np.float32) for m in masks]
    result = maps_criteria(maps, truth_regions(masks, [0, 0, 0, 0]), (20, 40))
    assert result.rbdc == pytest.approx(1.0) and result.tbdc == pytest.approx(1.0)


def test_bad_input_is_a_metric_error():
    with pytest.raises(MetricError, match="ground-truth region"):
        detection_criteria([], [[[]]], frames=1)
    with pytest.raises(MetricError, match="cover 1 frames, not 2"):
        detection_criteria([TruthRegion(0, 0, (0, 0, 1, 1))], [[[]]], frames=2)


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_eval_reports_rbdc_and_tbdc_on_the_walkways_masks(method, request):
    from occ.evaluation.evaluate import evaluate

    model = request.getfixturevalue(f"{method}_onnx")
    result = evaluate(model, "walkway:height=48,width=72,train_clips=1,test_clips=2,frames_per_clip=30,seed=7")
    localization = result.localization
    assert 0.0 <= localization.rbdc <= 1.0 and 0.0 <= localization.tbdc <= 1.0
    assert localization.frames == 60 and localization.tracks == 2  # one anomalous mover per test clip
    assert localization.regions == result.anomalous_frames  # each mover is one connected region per frame
    thresholds = [p.threshold for p in localization.curve]
    assert thresholds == sorted(thresholds, reverse=True) and len(set(thresholds)) == len(thresholds)
    # the lowest threshold is the lowest frame peak: every frame then has a detected region
    assert localization.curve[-1].false_positives_per_frame + localization.curve[-1].region_rate > 0
