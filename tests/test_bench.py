import json
import shutil

import pytest
from typer.testing import CliRunner

from occ.benchmarks.latency import SCHEMA, STAGES, Variant, compare_runs, run_latency, summarize, validate
from occ.cli.bench import app

from mnist_files import glyph_digits, write_mnist

runner = CliRunner()


def bench(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


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
    return run_latency(str(alocc_onnx), [Variant("ort-cpu"), Variant("torch")], [1, 4], warmup_s=0.05, duration_s=0.2,
                       frame_size=(96, 144), min_iterations=5)


def test_latency_json_schema_and_stage_sums(latency_result):
    result = json.loads(json.dumps(latency_result))  # must be plain JSON
    assert result["schema"] == SCHEMA and result["method"] == "alocc"
    assert {"cpu", "gpus", "versions", "warnings"} <= set(result["device"])
    assert [(r["variant"], r["batch"]) for r in result["runs"]] == [("ort-cpu fp32 cpu", 1), ("ort-cpu fp32 cpu", 4),
                                                                   ("torch fp32 cpu", 1), ("torch fp32 cpu", 4)]
    short_runs = [r for r in result["runs"] if r["iterations"] < 100]  # a p99 from fewer than 100 samples is its maximum
    assert len([w for w in result["warnings"] if "p99 from" in w]) == len(short_runs)
    for run in result["runs"]:
        assert set(run["stages_ms"]) == set(STAGES)
        assert run["stages_ms"]["host_to_device"] is None  # CPU backends move no data to a device
        stage_sum = sum(run["stages_ms"][s]["mean"] for s in ("preprocess", "inference", "postprocess"))
        assert stage_sum <= run["end_to_end_ms"]["mean"] * (1 + 1e-9)
        assert run["iterations"] >= 5
        assert run["throughput"]["patches_per_s"] == pytest.approx(run["throughput"]["frames_per_s"] * 15)
        # the service's per-frame watches, timed apart from the model's end to end, as a share of it
        watches = run["watch_ms"]
        assert set(watches) == {"scene_guard", "drift_watch"} and watches["scene_guard"]["count"] == run["iterations"]
        assert run["watch_share"]["scene_guard"] == pytest.approx(watches["scene_guard"]["mean"] / run["end_to_end_ms"]["mean"])
        assert run["watch_share"]["total"] == pytest.approx(run["watch_share"]["scene_guard"] + run["watch_share"]["drift_watch"])
        assert run["watch_share_p50"]["drift_watch"] == pytest.approx(watches["drift_watch"]["p50"] / run["end_to_end_ms"]["p50"])


def test_compare_ratios(latency_result):
    faster = json.loads(json.dumps(latency_result))
    for run in faster["runs"]:
        run["end_to_end_ms"]["p50"] /= 2
        run["throughput"]["frames_per_s"] *= 2
    rows = compare_runs(latency_result, faster)
    assert all(r["p50_ratio"] == pytest.approx(0.5) and r["throughput_ratio"] == pytest.approx(2.0) for r in rows)
    with pytest.raises(ValueError, match="share no"):
        compare_runs(latency_result, {**latency_result, "runs": []})


def test_compare_refuses_runs_of_different_models_unless_forced(latency_result, tmp_path):
    other = {**latency_result, "model_sha256": "0" * 64}
    with pytest.raises(ValueError, match="different models"):
        compare_runs(latency_result, other)
    assert len(compare_runs(latency_result, other, force=True)) == len(latency_result["runs"])
    with pytest.raises(ValueError, match="different frame sizes"):
        compare_runs(latency_result, {**latency_result, "frame_size": [480, 640]})
    (tmp_path / "a.json").write_text(json.dumps(latency_result))
    (tmp_path / "b.json").write_text(json.dumps(other))
    refused = bench("compare", tmp_path / "a.json", tmp_path / "b.json")
    assert refused.exit_code == 2 and "--force" in refused.output and len(refused.output.strip().splitlines()) == 1
    forced = bench("compare", tmp_path / "a.json", tmp_path / "b.json", "--force", "--json", "-")
    assert forced.exit_code == 0 and json.loads(forced.stdout)[0]["p50_ratio"] == pytest.approx(1.0)


def test_validate_statuses_and_exit_codes(alocc_onnx, avid_checkpoint, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(alocc_onnx, model)
    shutil.copy(alocc_onnx.with_suffix(".pt"), tmp_path / "alocc.pt")
    data = "walkway:height=48,width=72,train_clips=1,test_clips=2,frames_per_clip=20,seed=7"
    result = validate(str(model), data, [Variant("ort-cpu"), Variant("torch"), Variant("ort-cpu", "fp16")])
    statuses = {row["variant"]: row["status"] for row in result["variants"]}
    # no .fp16.onnx beside the model: that variant fails with its reason, the others work
    assert statuses == {"ort-cpu fp32 cpu": "works", "torch fp32 cpu": "works", "ort-cpu fp16 cpu": "failed"}
    assert "occ-export --fp16" in result["variants"][2]["reason"]
    # the speed of each variant that ran, timed in the same run, and its ratio to the reference's
    reference, torch_row = result["variants"][:2]
    assert reference["speed_vs_reference"] == 1.0 and torch_row["frames_per_s"] > 0
    assert torch_row["speed_vs_reference"] == pytest.approx(torch_row["frames_per_s"] / reference["frames_per_s"])
    assert result["speed"]["frames"] == 40 and "frames_per_s" not in result["variants"][2]
    ok = bench("validate", model, "--data", data, "--backend", "ort-cpu,torch", "--json", "-")
    assert ok.exit_code == 0, ok.output
    recorded = json.loads(ok.stdout)
    assert recorded["variants"][1]["decision_agreement"] >= 0.995
    assert len(recorded["commit"]) == 40 and recorded["command"].startswith("occ-bench") and recorded["machine"]
    # --precision without --backend would be ignored (every variant that runs here is validated): refused in one line
    unnarrowed = bench("validate", model, "--data", data, "--precision", "fp32,int8")
    assert unnarrowed.exit_code == 2 and unnarrowed.output == "error: --precision and --preprocess narrow an explicit --backend list\n"
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
    off = bench("validate", model, "--data", data, "--backend", "ort-cpu,torch")
    assert off.exit_code == 1 and "off-budget" in off.output


def test_latency_refuses_what_cannot_run_in_one_line(alocc_onnx):
    nothing = bench("latency", alocc_onnx, "--backend", "ort-cuda", "--preprocess", "gpu", "--duration", "0.01")
    assert nothing.exit_code == 2 and nothing.output.startswith("error: ort-cuda fp32 gpu:"), nothing.output
    assert bench("latency", alocc_onnx, "--backend", "nosuch").exit_code == 2
    assert "--batch must be positive integers" in bench("latency", alocc_onnx, "--batch", "0").output


def _write_glyph_digits(folder, rng) -> None:
    """Ten synthetic digit classes (glyphs, tests/mnist_files.py) as gzipped IDX files."""
    for split, count in (("train", 300), ("t10k", 200)):
        write_mnist(folder, split, *glyph_digits(rng, count))


def test_mnist_benchmark_records_its_run_and_the_means_over_digits(tmp_path, rng):
    _write_glyph_digits(tmp_path, rng)
    run = bench("mnist", "--mnist", tmp_path, "--digits", "1,7", "--epochs", "1", "--out", tmp_path / "m", "--json", tmp_path / "m.json",
                "--quiet")
    assert run.exit_code == 0, run.output[-2000:]
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["seed"] == 0 and len(result["commit"]) == 40 and result["command"].startswith("occ-bench")
    assert [d["digit"] for d in result["mnist"]] == [1, 7]
    for fraction, means in result["mean_over_digits"].items():
        rows = [d["by_outlier_fraction"][fraction] for d in result["mnist"]]
        assert set(means) == set(rows[0]) and "auc_drx" in means
        assert means["auc_drx"] == pytest.approx((rows[0]["auc_drx"] + rows[1]["auc_drx"]) / 2)


def test_irmnist_benchmark_both_constructions_and_reevaluation(tmp_path, rng):
    _write_glyph_digits(tmp_path, rng)
    common = ["irmnist", "--mnist", tmp_path, "--grids", "20", "--test-grids", "12", "--epochs", "1", "--region-memory", "500"]
    first = bench(*common, "--out", tmp_path / "a", "--json", tmp_path / "a.json")
    assert first.exit_code == 0, first.output[-2000:]
    result = json.loads((tmp_path / "a.json").read_text())
    natural = result["natural"]
    assert 9 <= natural["irregular_per_positive_grid"] <= 15  # ~121 / 10 threes per positive grid
    assert 1 <= result["few"]["irregular_per_positive_grid"] <= 5
    for construction in (result["few"], natural):
        rows = construction["parts"]
        assert list(rows) == ["intersection", "residual |X−I(X)|", "region map, memory"]
        for row in rows.values():
            assert all(0.0 <= row[k] <= 1.0 for k in ("detection_eer_peak", "detection_auc_peak", "detection_eer_evidence",
                                                       "detection_auc_evidence", "localization_eer", "localization_auc"))
    # the images recipe: the region memory, and the evidence frame score
    assert result["recipe"] == "images" and result["frame_score"] == "evidence"
    assert result["seed"] == 0 and len(result["commit"]) == 40 and result["command"].startswith("occ-bench")
    # the memory knows the normal glyphs: glyph 3's cells rank first
    assert natural["parts"]["region map, memory"]["localization_auc"] > 0.95
    assert "as the paper" in first.output and "frame score: evidence" in first.output

    # the saved model, evaluated again without training, gives the same numbers
    model = tmp_path / "a" / "irmnist_avid.pt"
    again = bench(*common, "--model", model, "--out", tmp_path / "b", "--json", tmp_path / "b.json", "--quiet")
    assert again.exit_code == 0, again.output[-2000:]
    repeat = json.loads((tmp_path / "b.json").read_text())
    assert repeat["few"] == result["few"] and repeat["natural"] == natural
    assert repeat["train_seconds"] is None

    # another seed's grids are not the ones the model was trained on: refused in one line
    wrong = bench(*common, "--model", model, "--seed", "1", "--out", tmp_path / "c")
    assert wrong.exit_code == 2 and "not on this run's grids" in wrong.output and len(wrong.output.strip().splitlines()) == 1
