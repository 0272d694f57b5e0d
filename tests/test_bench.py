import json
import shutil
import subprocess
import sys

import pytest

from occ.benchmarks.latency import SCHEMA, STAGES, compare_runs, run_latency, summarize, validate

from mnist_files import glyph_digits, write_mnist


def test_percentiles_against_a_known_list():
    samples = list(range(1, 101))  # 1..100 ms
    stats = summarize(samples)
    # linear interpolation: position (n − 1)·q = 99·0.5 = 49.5 → between 50 and 51
    expected = {"min": 1.0, "mean": 50.5, "p50": 50.5, "p90": 90.1, "p99": 99.01, "max": 100.0, "count": 100}
    assert stats == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError):
        summarize([])


@pytest.fixture(scope="module")
def latency_result(alocc_onnx):
    return run_latency(str(alocc_onnx), ["ort-cpu", "torch-fp32"], [1, 4], warmup_s=0.05, duration_s=0.2,
                       frame_size=(96, 144), min_iterations=5)


def test_latency_json_schema_and_stage_sums(latency_result):
    result = json.loads(json.dumps(latency_result))  # must be plain JSON
    assert result["schema"] == SCHEMA and result["method"] == "alocc"
    assert {"cpu", "gpus", "versions", "warnings"} <= set(result["device"])
    assert [(r["backend"], r["batch"]) for r in result["runs"]] == [("ort-cpu", 1), ("ort-cpu", 4), ("torch-fp32", 1), ("torch-fp32", 4)]
    for run in result["runs"]:
        assert set(run["stages_ms"]) == set(STAGES)
        assert run["stages_ms"]["host_to_device"] is None  # CPU backends move no data to a device
        stage_sum = sum(run["stages_ms"][s]["mean"] for s in ("preprocess", "inference", "postprocess"))
        assert stage_sum <= run["end_to_end_ms"]["mean"] * (1 + 1e-9)
        assert run["iterations"] >= 5
        assert run["throughput"]["patches_per_s"] == pytest.approx(run["throughput"]["frames_per_s"] * 15)


def test_compare_ratios(latency_result):
    faster = json.loads(json.dumps(latency_result))
    for run in faster["runs"]:
        run["end_to_end_ms"]["p50"] /= 2
        run["throughput"]["frames_per_s"] *= 2
    rows = compare_runs(latency_result, faster)
    assert all(r["p50_ratio"] == pytest.approx(0.5) and r["throughput_ratio"] == pytest.approx(2.0) for r in rows)
    with pytest.raises(ValueError, match="share no"):
        compare_runs(latency_result, {"runs": []})


def test_validate_statuses_and_exit_codes(alocc_onnx, avid_checkpoint, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(alocc_onnx, model)
    shutil.copy(alocc_onnx.with_suffix(".pt"), tmp_path / "alocc.pt")
    data = "walkway:height=48,width=72,train_clips=1,test_clips=2,frames_per_clip=20,seed=7"
    result = validate(str(model), data, ["ort-cpu", "torch-fp32", "ort-bogus"])
    statuses = {row["backend"]: row["status"] for row in result["backends"]}
    assert statuses == {"ort-cpu": "works", "torch-fp32": "works", "ort-bogus": "failed"}
    ok = subprocess.run([sys.executable, "-m", "occ.benchmarks", "validate", str(model), "--data", data,
                         "--backend", "ort-cpu,torch-fp32", "--json-only"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["backends"][1]["decision_agreement"] >= 0.995
    # A stale checkpoint beside the model: PyTorch no longer matches the ONNX graph → off budget, exit 1.
    from occ.train.common import load_checkpoint, save_checkpoint
    from occ.train.train_alocc import build_scorer

    stale = load_checkpoint(tmp_path / "alocc.pt")
    scorer = build_scorer(stale.architecture, stale.state_dicts)
    with __import__("torch").no_grad():
        for p in scorer.discriminator.parameters():
            p.mul_(1.5)
    save_checkpoint(tmp_path / "alocc.pt", stale.manifest, stale.architecture,
                    {"reconstructor": scorer.reconstructor, "discriminator": scorer.discriminator}, stale.history)
    off = subprocess.run([sys.executable, "-m", "occ.benchmarks", "validate", str(model), "--data", data,
                          "--backend", "ort-cpu,torch-fp32"], capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert off.returncode == 1
    assert "off-budget" in off.stdout


def _write_glyph_digits(folder, rng) -> None:
    """Ten synthetic digit classes (glyphs, tests/mnist_files.py) as gzipped IDX files."""
    for split, count in (("train", 300), ("t10k", 200)):
        write_mnist(folder, split, *glyph_digits(rng, count))


def test_irmnist_benchmark_both_constructions_and_reevaluation(tmp_path, rng):
    _write_glyph_digits(tmp_path, rng)
    bench = [sys.executable, "-m", "occ.benchmarks.avid_accuracy", "--mnist", str(tmp_path), "--no-walkway",
             "--irmnist-train", "20", "--irmnist-test", "12", "--irmnist-epochs", "1"]
    first = subprocess.run(bench + ["--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    result = json.loads((tmp_path / "a" / "avid_accuracy.json").read_text())["irmnist"]
    natural = result["natural"]
    assert 9 <= natural["irregular_per_positive_grid"] <= 15  # ~121 / 10 threes per positive grid
    assert 1 <= result["few"]["irregular_per_positive_grid"] <= 5
    for construction in (result["few"], natural):
        rows = construction["parts"]
        assert list(rows) == ["intersection", "residual |X−I(X)|", "region map, memory"]
        for row in rows.values():
            assert all(0.0 <= row[k] <= 1.0 for k in ("detection_eer_peak", "detection_auc_peak", "detection_eer_evidence",
                                                       "detection_auc_evidence", "localization_eer", "localization_auc"))
    # the recipe: the region memory, and the evidence frame score
    assert result["config"]["region_memory"] == 60000 and result["frame_score"] == "evidence"
    # the memory knows the normal glyphs: glyph 3's cells rank first
    assert natural["parts"]["region map, memory"]["localization_auc"] > 0.95
    table = (tmp_path / "a" / "avid_accuracy.md").read_text()
    assert "as the paper" in table and "frame score: evidence" in table

    # the saved model, evaluated again without training, gives the same numbers
    model = tmp_path / "a" / "irmnist_avid.pt"
    again = subprocess.run(bench + ["--irmnist-model", str(model), "--out", str(tmp_path / "b")], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    repeat = json.loads((tmp_path / "b" / "avid_accuracy.json").read_text())["irmnist"]
    assert repeat["few"] == result["few"] and repeat["natural"] == natural
    assert repeat["train_seconds"] is None

    # another seed's grids are not the ones the model was trained on: refused in one line
    wrong = subprocess.run(bench + ["--irmnist-model", str(model), "--seed", "1", "--out", str(tmp_path / "c")],
                           capture_output=True, text=True)
    assert wrong.returncode == 2 and "with seed 0, not on this run's" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = subprocess.run(bench + ["--irmnist-model", str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert missing.returncode == 2 and "none.pt: no such file" in missing.stderr
