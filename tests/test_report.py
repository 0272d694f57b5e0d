"""The typed evaluation report: its JSON form (the keys ``occ eval --json`` has always written),
read back typed, hand-checked values through it, and a metric added without touching the JSON code."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.evaluate import evaluate
from occ.evaluation.localization import CurvePoint, DetectionCriteria
from occ.evaluation.metrics import DetectionDelay, FalseAlarmRate, FrameLevelReport, PixelLevel
from occ.evaluation.report import ClipRow, ClipScores, EvaluationReport, ReportError, Unavailable, _optional, report

WALKWAY = "walkway:height=48,width=72,train_clips=1,test_clips=2,frames_per_clip=30,seed=7"
FRAME_LEVEL_KEYS = ["micro_auc", "macro_auc", "eer", "eer_threshold", "videos_in_macro"]
FALSE_ALARM_KEYS = ["false_alarms", "normal_hours", "normal_minutes", "per_hour", "per_hour_low", "per_hour_high", "fps"]
DELAY_KEYS = ["events", "detected", "missed", "delays", "median_frames", "mean_frames"]
LOCALIZATION_KEYS = ["rbdc", "tbdc", "regions", "tracks", "frames", "overlap", "track_share", "max_false_positives_per_frame", "curve",
                     "criterion"]


def _text(value) -> str:
    return json.dumps(value, indent=2)  # NaN and inf written as JSON's readers take them back


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_a_real_evaluation_goes_to_json_and_back(method, request, tmp_path):
    result = evaluate(request.getfixturevalue(f"{method}_onnx"), WALKWAY, thresholds={})
    assert isinstance(result, EvaluationReport)
    saved = _text(result.to_json())
    back = EvaluationReport.from_json(json.loads(saved), "saved.json")
    assert _text(back.to_json()) == saved
    assert isinstance(back.frame_level.raw, FrameLevelReport) and isinstance(back.pixel_level, (PixelLevel, type(None)))
    assert isinstance(back.localization, DetectionCriteria) and isinstance(back.localization.curve[0], CurvePoint)
    assert isinstance(back.at_stored_threshold.false_alarms_per_hour, FalseAlarmRate)
    assert isinstance(back.at_stored_threshold.detection_delay, DetectionDelay) and isinstance(back.per_clip[0], ClipRow)
    assert (back.frames, back.frame_level.raw.micro_auc, back.per_clip[1].auc) == (60, result.frame_level.raw.micro_auc, result.per_clip[1].auc)

    # the keys occ eval has always written, in their order (benchmarks/results and scripts read them)
    data = json.loads(saved)
    pixel = ["pixel_level"] if "pixel_level" in data else []
    assert list(data) == ["model", "data", "protocol", "frames", "anomalous_frames", "frame_level", "frame_level_offline",
                          "at_stored_threshold", "per_clip", *pixel, "localization", "plots", "thresholds", "threshold_overrides"]
    assert list(data["frame_level"]) == ["raw"] and list(data["frame_level"]["raw"]) == FRAME_LEVEL_KEYS
    assert list(data["frame_level_offline"]) == ["smoothed_9", "per_video_minmax", "per_video_minmax_smoothed_9"]
    assert list(data["at_stored_threshold"]) == ["f1_anomalous", "true_positive_rate", "false_positive_rate", "false_alarms_per_hour",
                                                 "detection_delay"]
    assert list(data["at_stored_threshold"]["false_alarms_per_hour"]) == FALSE_ALARM_KEYS
    assert list(data["at_stored_threshold"]["detection_delay"]) == DELAY_KEYS
    assert list(data["per_clip"][0]) == ["clip", "frames", "anomalous", "auc"]
    assert list(data["localization"]) == LOCALIZATION_KEYS
    assert list(data["localization"]["curve"][0]) == ["threshold", "false_positives_per_frame", "region_rate", "track_rate"]
    assert data["protocol"] == "frames" and data["threshold_overrides"] == {}

    # occ eval --json writes the same JSON
    out = tmp_path / "eval.json"
    cli = CliRunner().invoke(app, ["eval", str(request.getfixturevalue(f"{method}_onnx")), "--data", WALKWAY, "--json", str(out),
                                   "--quiet"])
    assert cli.exit_code == 0, cli.output
    assert out.read_text() == saved


def _clip(name, labels, scores, decisions, fps=None):
    return ClipScores(name, np.asarray(labels, bool), np.asarray(scores, float), np.asarray(decisions, bool), fps=fps)


def test_hand_made_clip_scores_through_the_typed_report():
    # pooled, highest first: 0.9 A, 0.8 A, 0.5 n, 0.4 n, 0.35 A, 0.2 n, 0.1 n (A anomalous, n normal)
    # micro AUC: 0.9 and 0.8 beat all 4 normal frames, 0.35 beats 2: 10 of 12 pairs
    # EER: at 0.5 the false-positive rate is 1/4 and the miss rate 1/3, at 0.4 they are 2/4 and 1/3;
    #      the line between crosses where both are 1/3, a third of the way (threshold: 0.5's side)
    # macro AUC: clip A 3 of 4 pairs, clip B 2 of 2: (0.75 + 1) / 2
    clips = [_clip("A", [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], [1, 0, 0, 1], fps=10),
             _clip("B", [0, 1, 0], [0.2, 0.9, 0.5], [0, 1, 0], fps=10)]
    typed = report(clips, smoothing=3)
    back = EvaluationReport.from_json(json.loads(_text(typed.to_json())))
    for result in (typed, back):
        raw = result.frame_level.raw
        assert raw.micro_auc == pytest.approx(10 / 12) and raw.macro_auc == pytest.approx(0.875)
        assert raw.eer == pytest.approx(1 / 3) and raw.eer_threshold == 0.5 and raw.videos_in_macro == 2
        assert [(row.clip, row.frames, row.anomalous, row.auc) for row in result.per_clip] == [("A", 4, 2, 0.75), ("B", 3, 1, 1.0)]
        assert (result.frames, result.anomalous_frames) == (7, 3)
        # decisions: anomalous frames caught 2 of 3, normal frames alarmed 1 of 4; F1 = 2·2 / (2·2 + 1 + 1)
        at = result.at_stored_threshold
        assert (at.true_positive_rate, at.false_positive_rate, at.f1_anomalous) == (pytest.approx(2 / 3), 0.25, pytest.approx(2 / 3))
        # one false alarm (A's frame 0) in 4 normal frames at 10 frames/s: 0.4 s, 9,000 per hour
        rate = at.false_alarms_per_hour
        assert (rate.false_alarms, rate.per_hour, rate.fps) == (1, pytest.approx(9000.0), 10.0)
        assert at.detection_delay == DetectionDelay(events=2, detected=2, missed=0, delays=[1, 0], median_frames=0.5, mean_frames=0.5)
        assert result.pixel_level is None and result.localization is None and result.model is None
    # what the data cannot give is left out of the JSON, not written as null
    assert not {"pixel_level", "localization", "model", "plots", "thresholds"} & set(typed.to_json())


def test_a_metric_the_data_cannot_give_reads_back_as_unavailable():
    clips = [_clip("A", [0, 0, 0], [0.1, 0.2, 0.3], [0, 0, 1], fps=10)]  # no anomalous frame: no ROC
    data = json.loads(_text(report(clips, smoothing=3).to_json()))
    assert data["frame_level"]["raw"] == {"error": "ROC needs both normal and anomalous samples"}
    back = EvaluationReport.from_json(data)
    assert back.frame_level.raw == Unavailable("ROC needs both normal and anomalous samples")
    assert back.frame_level_offline["per_video_minmax"] == back.frame_level.raw and back.per_clip[0].auc is None


def test_a_file_that_is_not_a_report_is_refused_in_one_line():
    data = report([_clip("A", [0, 1], [0.1, 0.9], [0, 1])], smoothing=3).to_json()
    for broken, problem in (({**data, "frames": "7"}, "'report.frames' must be a whole number"),
                            ({k: v for k, v in data.items() if k != "per_clip"}, "missing field(s) in 'report': per_clip"),
                            ({**data, "extra": 1}, "unknown field(s) in 'report': extra"), ([1], "must be an object")):
        with pytest.raises(ReportError) as caught:
            EvaluationReport.from_json(broken, "runs/r.json")
        assert str(caught.value).startswith("runs/r.json: not an evaluation report: ") and problem in str(caught.value)
        assert "\n" not in str(caught.value)


@dataclass
class ScoreSpread:
    """A metric made up for the test below: the spread of the frame scores."""

    std: float


@dataclass(kw_only=True)
class ReportWithSpread(EvaluationReport):
    score_spread: ScoreSpread | None = _optional()


def test_a_new_metric_needs_its_record_and_a_field_not_new_json_code():
    """What adding a metric takes (EvaluationReport's docstring): its record, a field, a line filling it."""
    clips = [_clip("A", [0, 1, 1], [0.1, 0.7, 0.9], [0, 1, 1])]
    base = report(clips, smoothing=3)
    extended = ReportWithSpread(**vars(base), score_spread=ScoreSpread(float(np.std(clips[0].scores))))
    data = json.loads(_text(extended.to_json()))
    assert list(data)[-1] == "score_spread" and data["score_spread"] == {"std": pytest.approx(0.3399, abs=1e-4)}
    assert {k: v for k, v in data.items() if k != "score_spread"} == json.loads(_text(base.to_json()))  # the rest unchanged
    back = ReportWithSpread.from_json(data)
    assert back.score_spread == extended.score_spread and back.frame_level.raw == base.frame_level.raw
