"""Leave-clips-out cross-validation against hand-checked folds."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli.bench import app
from occ.evaluation.datasets.walkway import write_ucsd_layout
from occ.evaluation.folds import fold_table, keeps, leave_clips_out
from occ.evaluation.metrics import MetricError

LABELS = {c: np.array([False, True]) for c in "ABCD"}
RIGHT, WRONG = np.array([0.0, 1.0]), np.array([1.0, 0.0])


def test_every_split_of_four_clips_into_two_and_two():
    folds = leave_clips_out("ABCD")
    assert folds == [(("A", "B"), ("C", "D")), (("A", "C"), ("B", "D")), (("A", "D"), ("B", "C")),
                     (("B", "C"), ("A", "D")), (("B", "D"), ("A", "C")), (("C", "D"), ("A", "B"))]
    assert len(leave_clips_out([f"Test{i:03d}" for i in range(1, 7)], 3)) == 20
    with pytest.raises(MetricError, match="clips chosen on"):
        leave_clips_out("AB", 2)


def test_one_candidate_is_measured_on_each_folds_other_clips():
    # B ranks its anomaly below its normal frame: a measured pair holding B pools to AUC 0.5
    # (positives {1, 0} against negatives {0, 1}: 1 + ½ + ½ + 0 of 4), any other pair to 1.0
    scores = {"A": RIGHT, "B": WRONG, "C": RIGHT, "D": RIGHT}
    table = fold_table(LABELS, {"deployed": scores}, leave_clips_out("ABCD"))
    assert table.measured_auc.tolist() == [1.0, 0.5, 0.5, 1.0, 1.0, 0.5]
    assert (table.mean, table.worst) == (0.75, 0.5)
    assert table.chosen == ["deployed"] * 6


def test_choosing_in_each_fold_measures_the_choice_elsewhere():
    x = {"A": RIGHT, "B": RIGHT, "C": WRONG, "D": RIGHT}  # fails on C
    y = {"A": WRONG, "B": RIGHT, "C": RIGHT, "D": RIGHT}  # fails on A
    table = fold_table(LABELS, {"x": x, "y": y}, leave_clips_out("ABCD"))
    # chosen on (A, B): x (1.0 against 0.5), measured on (C, D) where C fails: 0.5; chosen on
    # (A, C): a tie (0.5 each) goes to the first candidate, x, measured on (B, D): 1.0; on (B, C):
    # y, measured on (A, D) where A fails: 0.5; on (B, D): a tie (1.0 each), x, on (A, C): 0.5
    assert table.chosen == ["x", "x", "x", "y", "x", "y"]
    assert table.measured_auc.tolist() == [0.5, 1.0, 0.5, 0.5, 0.5, 0.5]
    # x alone measures 0.5 wherever C is measured and 1.0 elsewhere: mean 0.75, worst 0.5; the
    # choice between x and y looks right on the clips it is made on and loses on the others
    baseline = fold_table(LABELS, {"x": x}, leave_clips_out("ABCD"))
    assert (baseline.mean, baseline.worst) == (0.75, 0.5)
    assert not keeps(baseline, table)
    assert keeps(table, baseline)
    with pytest.raises(MetricError, match="no candidate"):
        fold_table(LABELS, {}, leave_clips_out("ABCD"))


def test_ped2_benchmark_prints_the_fold_table(tmp_path, tiny_walkway, alocc_onnx):
    root = write_ucsd_layout(tiny_walkway, tmp_path / "walkway")
    out = tmp_path / "folds.json"
    result = CliRunner().invoke(app, ["ped2", "--data", str(root), "--model", str(alocc_onnx), "--model", str(alocc_onnx),
                                      "--folds", "--json", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Leave-clips-out" in result.output and "all: mean / worst" in result.output
    assert "false alarms per hour of normal footage" in result.output  # the walkway carries its 10 frames/s
    payload = json.loads(out.read_text())
    first, second = payload["models"]
    assert first["folds"] == second["folds"]  # one model twice: the same table
    deployed = first["folds"]["deployed"]
    assert len(deployed["folds"]) == 3  # three test clips: choose on one, measure on two
    assert deployed["worst"] <= deployed["mean"] <= 1.0
    assert "chosen in each fold among these" in first["folds"]
    assert payload["folds_over_models"]["deployed"] == {"mean": deployed["mean"], "worst": deployed["worst"]}


def test_busier_walkway_clips_are_the_same_scene_with_more_walkers():
    from occ.benchmarks.walkway import busy_clips
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway

    base = WalkwayConfig(height=48, width=72, train_clips=2, test_clips=1, frames_per_clip=30, seed=7)
    training = generate_walkway(base).train
    quiet, busy = busy_clips(base, 4), busy_clips(base, 16)
    assert len(quiet) == len(busy) == 2 and not any(c.labels.any() for c in quiet + busy)
    # the moving foreground (away from each clip's median frame) grows with the crowd
    moving = [np.mean([np.abs(c.frames.astype(float) - np.median(c.frames, axis=0)).mean() for c in clips]) for clips in (quiet, busy)]
    assert moving[1] > 1.5 * moving[0]
    assert quiet[0].frames.shape == training[0].frames.shape


def test_walkway_benchmark_reports_busy_scenes_for_a_given_model(alocc_onnx, tmp_path):
    result = CliRunner().invoke(app, ["walkway", "--method", "avid", "--model", str(alocc_onnx)], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "an alocc model, not avid" in result.output
