"""Ped2 leave-training-clips-out: folds of the training clips, alarms counted raw and as the service's
episodes, and the benchmark's fold and summary JSONs, against hand-checked counts."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.benchmarks.ped2 import HOLDOUT_SCOPES, holdout_summary, holdout_view
from occ.cli.bench import app
from occ.evaluation.datasets import WalkwayConfig, generate_walkway
from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.walkway import write_ucsd_layout
from occ.evaluation.folds import training_clip_folds
from occ.evaluation.metrics import MetricError, poisson_rate_interval
from occ.evaluation.protocols import ClipScores, alarm_counts, episode_spans
from occ.runtime.events import EpisodeTracker


def test_every_training_clip_is_held_out_once():
    names = [f"Train{i:03d}" for i in range(1, 17)]
    folds = training_clip_folds(reversed(names), 4)  # name order, whatever the listing order
    assert folds[0] == ("Train001", "Train005", "Train009", "Train013")
    assert folds[3] == ("Train004", "Train008", "Train012", "Train016")
    assert sorted(c for fold in folds for c in fold) == names
    assert training_clip_folds(["a", "b", "c"], 2) == [("a", "c"), ("b",)]
    with pytest.raises(MetricError, match="2 <= folds <= 3"):
        training_clip_folds(["a", "b", "c"], 4)


def test_episodes_open_after_k_frames_and_close_after_j_quiet_ones():
    #            0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
    decisions = [1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1]
    # K=3, J=3: frames 0-1 are too short; 3-5 open on 5, the gap 6-7 (two quiet) keeps it open, 8 joins it,
    # 9-11 close it (last anomalous frame 8); 13-15 open on 15 and close at the end of the stream
    assert episode_spans(np.array(decisions, bool), EpisodeTracker(3, 3)) == [(3, 5, 8), (13, 15, 15)]
    # J=2: the gap 6-7 closes the first episode, and 8 alone opens nothing
    assert episode_spans(np.array(decisions, bool), EpisodeTracker(3, 2)) == [(3, 5, 5), (13, 15, 15)]
    assert episode_spans(np.zeros(5, bool), EpisodeTracker(1, 1)) == []


def _clip(name, labels, decisions, fps=10.0):
    labels, decisions = np.array(labels, bool), np.array(decisions, bool)
    return ClipScores(name, labels, decisions.astype(float), decisions, fps=fps)


def test_alarms_are_counted_as_runs_and_as_episodes():
    # runs: 4; episodes (K=3, J=2): one, frames 2-6 (frame 5 alone does not close it)
    normal = _clip("Train001", [0] * 12, [1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1])
    #                      event 3-7                 event 10-11
    test = _clip("Test001", [0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1], [1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 1])
    counts = alarm_counts([normal, test], 10.0, EpisodeTracker(3, 2))
    raw, episodes = counts["raw"], counts["episodes"]
    # raw: 4 runs on the normal clip and frame 0 of the test clip are false; 4-6 and 11 touch events
    assert raw["false_alarms_per_hour"]["false_alarms"] == 5
    normal_hours = (12 + 5) / 10 / 3600
    assert raw["false_alarms_per_hour"]["normal_hours"] == pytest.approx(normal_hours)
    assert raw["false_alarms_per_hour"]["per_hour"] == pytest.approx(5 / normal_hours)
    assert raw["detection_delay"]["delays"] == [1, 1]  # 3-7 first flagged on 4, 10-11 on 11
    # episodes: one false on the normal clip; on the test clip 4-6 opens on 6 (delay 3); 11 opens none
    assert episodes["false_alarms_per_hour"]["false_alarms"] == 1
    assert episodes["false_alarms_per_hour"]["per_hour_high"] == pytest.approx(poisson_rate_interval(1, normal_hours)[1])
    assert episodes["detection_delay"]["delays"] == [3] and episodes["detection_delay"]["missed"] == 1
    assert episodes["rule"] == "opens at 3 firing frames in a row, closes after 2 quiet frames"


@pytest.fixture(scope="module")
def eight_clip_walkway(tmp_path_factory):
    config = WalkwayConfig(height=48, width=72, train_clips=8, test_clips=2, frames_per_clip=20, seed=7)
    return write_ucsd_layout(generate_walkway(config), tmp_path_factory.mktemp("walkway") / "UCSDwalkway")


def test_the_training_view_leaves_the_fold_out(eight_clip_walkway, tmp_path):
    view, held_out = holdout_view(str(eight_clip_walkway), 2, 4, tmp_path)
    assert held_out == ("Train003", "Train007")
    train = load_video_data(str(view), splits=("train",)).train
    assert [c.name for c in train] == ["Train001", "Train002", "Train004", "Train005", "Train006", "Train008"]
    assert {c.fps for c in train} == {10.0}  # the walkway's description came along
    assert len(load_video_data(str(view), splits=("test",)).test) == 2


def _fold(tmp_path, data, model, fold):
    out = tmp_path / f"fold{fold}.json"
    result = CliRunner().invoke(app, ["ped2", "--data", str(data), "--method", "alocc", "--model", str(model),
                                      "--holdout-fold", str(fold), "--holdout-folds", "4", "--out", str(tmp_path / "runs"),
                                      "--json", str(out)], env={"COLUMNS": "250"})
    return result, out


def test_holdout_folds_count_alarms_on_unseen_clips_and_pool(eight_clip_walkway, alocc_onnx, tmp_path):
    # the tiny model was trained on the walkway's Train001 and Train002: folds 2 and 3 hold out neither
    results = []
    for fold in (2, 3):
        result, out = _fold(tmp_path, eight_clip_walkway, alocc_onnx, fold)
        assert result.exit_code == 0, result.output
        assert "held-out training clips" in result.output and "pooled" in result.output
        results.append(json.loads(out.read_text()))
    first = results[0]
    assert first["held_out_clips"] == ["Train003", "Train007"]
    assert results[1]["held_out_clips"] == ["Train004", "Train008"]
    assert first["command"].startswith("occ-bench ped2 --data ") and "--holdout-fold 2 --holdout-folds 4" in first["command"]
    assert {"date", "machine", "commit"} <= set(first)
    for r in results:
        held = r["alarms"]["held_out_training_clips"]["raw"]["false_alarms_per_hour"]
        assert held["normal_minutes"] == pytest.approx(2 * 20 / 10 / 60)  # two clips of 20 frames at 10 frames/s
        test_normal_frames = sum(c["frames"] - c["anomalous"] for c in r["test_report"]["per_clip"])
        test_normal = r["alarms"]["test_clips"]["episodes"]["false_alarms_per_hour"]["normal_minutes"]
        assert test_normal == pytest.approx(test_normal_frames / 10 / 60)
        for rule in ("raw", "episodes"):
            parts = [r["alarms"][scope][rule]["false_alarms_per_hour"] for scope in ("held_out_training_clips", "test_clips", "all")]
            assert parts[0]["false_alarms"] + parts[1]["false_alarms"] == parts[2]["false_alarms"]
            assert parts[0]["normal_hours"] + parts[1]["normal_hours"] == pytest.approx(parts[2]["normal_hours"])
        assert r["alarms"]["test_clips"]["raw"]["detection_delay"]["events"] == 2

    summary_path = tmp_path / "summary.json"
    result = CliRunner().invoke(app, ["ped2-holdout-summary", str(tmp_path / "fold2.json"), str(tmp_path / "fold3.json"),
                                      "--json", str(summary_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text())
    assert summary["folds_pooled"] == [2, 3] and not summary["complete"]
    for rule in ("raw", "episodes"):
        pooled = summary["pooled"]["held_out_training_clips"][rule]
        entries = [r["alarms"]["held_out_training_clips"][rule]["false_alarms_per_hour"] for r in results]
        assert pooled["false_alarms"] == sum(e["false_alarms"] for e in entries)
        assert pooled["normal_minutes"] == pytest.approx(4 * 20 / 10 / 60)
        assert (pooled["per_hour_low"], pooled["per_hour_high"]) == pytest.approx(
            poisson_rate_interval(pooled["false_alarms"], pooled["normal_hours"]))
    assert summary["detection"]["raw"]["events"] == 4
    # ALOCC's scoring rules on the same folds: every candidate counted on the same footage, chosen inside the folds
    from occ.benchmarks.alocc_rules import DEPLOYED, candidate_name, main as alocc_rules

    assert alocc_rules([str(tmp_path / "fold2.json"), str(tmp_path / "fold3.json"), "--json", str(tmp_path / "rules.json")]) == 0
    rules = json.loads((tmp_path / "rules.json").read_text())
    assert [(run["seed"], run["fold"]) for run in rules["runs"]] == [(0, 2), (0, 3)]
    for run, fold in zip(rules["runs"], results):
        assert len(run["candidates"]) == 24 and candidate_name(*DEPLOYED) in run["candidates"]
        for entry in run["candidates"].values():
            minutes = [entry["alarms"][scope]["episodes"]["false_alarms_per_hour"]["normal_minutes"] for scope in HOLDOUT_SCOPES]
            assert minutes[0] == pytest.approx(fold["alarms"]["held_out_training_clips"]["episodes"]["false_alarms_per_hour"]["normal_minutes"])
            assert minutes[0] + minutes[1] == pytest.approx(minutes[2])
    inside = rules["inside_the_folds"]["seed 0"]
    assert [fold["fold"] for fold in inside["folds"]] == [2, 3]
    assert inside["deployed"]["normal_minutes"] == pytest.approx(sum(
        r["alarms"]["all"]["episodes"]["false_alarms_per_hour"]["normal_minutes"] for r in results))
    # pooling earlier results again gives the same choice without touching the models
    assert alocc_rules([str(tmp_path / "rules.json"), "--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["inside_the_folds"] == rules["inside_the_folds"]


def test_a_model_trained_on_a_held_out_clip_is_refused(eight_clip_walkway, alocc_onnx, tmp_path):
    result, out = _fold(tmp_path, eight_clip_walkway, alocc_onnx, 0)  # fold 0 holds out Train001, trained on
    assert result.exit_code == 2
    assert "trained on Train001, which fold 0 of 4 holds out" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_holdout_errors_are_one_line(eight_clip_walkway, alocc_onnx, tmp_path):
    result, _ = _fold(tmp_path, eight_clip_walkway, alocc_onnx, 5)
    assert result.exit_code == 2 and "--holdout-fold must be in 0..3" in result.output
    (tmp_path / "no_train" / "Test").mkdir(parents=True)
    result = CliRunner().invoke(app, ["ped2", "--data", str(tmp_path / "no_train"), "--model", str(alocc_onnx), "--holdout-fold", "0"])
    assert result.exit_code == 2 and f"{tmp_path / 'no_train' / 'Train'}: folder not found" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = CliRunner().invoke(app, ["ped2-holdout-summary", str(bad)])
    assert result.exit_code == 2 and f"{bad}: not an occ-bench ped2 --holdout-fold result" in result.output
    result = CliRunner().invoke(app, ["ped2", "--data", str(eight_clip_walkway), "--model", str(alocc_onnx), "--epochs", "3"])
    assert result.exit_code == 2 and "--epochs is for the model it trains: it takes no --model" in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="one method, seed"):
        holdout_summary([{"method": "alocc", "seed": 0, "folds": 4, "size": "cpu", "fold": 0, "alarms": {}},
                         {"method": "avid", "seed": 0, "folds": 4, "size": "cpu", "fold": 1, "alarms": {}}])
    with pytest.raises(ValueError, match="seed, size, epochs"):  # folds trained for 6 and for 12 epochs are not one model's
        holdout_summary([{"method": "avid", "seed": 0, "folds": 4, "size": "cpu", "epochs": 6, "fold": 0, "alarms": {}},
                         {"method": "avid", "seed": 0, "folds": 4, "size": "cpu", "epochs": 12, "fold": 1, "alarms": {}}])
