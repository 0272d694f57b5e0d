import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets.video import write_video

from mnist_files import glyph_digits, write_mnist

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


TORCH_BLOCKED = textwrap.dedent("""
    import runpy, sys
    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this test")
    sys.meta_path.insert(0, BlockTorch())
    module, sys.argv = sys.argv[1], sys.argv[1:]
    try:
        if module == "occ-bench":
            from occ.cli.bench import main
            main()
        elif module == "occ-export":
            from occ.cli.export import main
            main()
        else:
            runpy.run_module(module, run_name="__main__")
    finally:
        assert "torch" not in sys.modules, "torch was imported"
""")


def test_every_runtime_command_runs_without_torch(alocc_onnx, avid_onnx, tiny_walkway, tmp_path):
    """What a camera box runs, end to end, in processes where importing torch fails: occ run on a
    file, occ eval on a UCSD-layout folder, occ calibrate, occ-bench latency on ort-cpu and
    occ-bench validate (models copied without their checkpoints, as a camera box has them)."""
    from occ.evaluation.datasets import write_ucsd_layout

    blocked = tmp_path / "blocked.py"
    blocked.write_text(TORCH_BLOCKED)
    data = write_ucsd_layout(tiny_walkway, tmp_path / "walkway")
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[1].frames)
    models = {}
    for model in (alocc_onnx, avid_onnx):
        models[model.stem] = shutil.copy(model, tmp_path / model.name)

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, str(blocked), *map(str, args)], capture_output=True, text=True, cwd=tmp_path,
                              env={**os.environ, **WIDE}, timeout=600)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        return done

    for name, model in models.items():
        run("occ", "run", model, "--source", video, "--out", tmp_path / f"{name}.jsonl")
        assert len((tmp_path / f"{name}.jsonl").read_text().splitlines()) == len(tiny_walkway.test[1])
        run("occ", "eval", model, "--data", data, "--json", tmp_path / f"{name}_eval.json", "--quiet")
        assert json.loads((tmp_path / f"{name}_eval.json").read_text())["frames"] == sum(len(c) for c in tiny_walkway.test)
        run("occ", "calibrate", model, "--data", data, "--false-alarm-rate", "0.1", "--quiet")
        run("occ-bench", "latency", model, "--backend", "ort-cpu", "--batch", "1", "--duration", "0.05", "--warmup", "0",
            "--json", tmp_path / f"{name}_latency.json", "--quiet")
        assert json.loads((tmp_path / f"{name}_latency.json").read_text())["runs"][0]["variant"] == "ort-cpu fp32 cpu"
        run("occ-bench", "validate", model, "--data", data, "--backend", "ort-cpu", "--quiet")


def test_a_camera_box_builds_engines_and_int8_models_without_torch(alocc_onnx, avid_onnx, tiny_walkway, tmp_path):
    """On a box without torch: occ-export MODEL.onnx --engine reaches TensorRT (here it is missing:
    one line, exit 2, nothing written) and --int8 writes a verified Q/DQ model that occ run runs."""
    from occ.evaluation.datasets import write_ucsd_layout

    blocked = tmp_path / "blocked.py"
    blocked.write_text(TORCH_BLOCKED)
    data = write_ucsd_layout(tiny_walkway, tmp_path / "walkway")
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[1].frames)
    box = tmp_path / "box"
    box.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(blocked), *map(str, args)], capture_output=True, text=True, cwd=box,
                              env={**os.environ, **WIDE}, timeout=600)

    for model in (alocc_onnx, avid_onnx):
        copy = box / model.name
        shutil.copy(model, copy)
        before = sorted(p.name for p in box.iterdir())
        done = run("occ-export", copy, "--engine", "--batch", "1,4,8")
        if shutil.which("trtexec") is None and __import__("importlib").util.find_spec("tensorrt") is None:
            assert done.returncode == 2, done.stderr
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "TensorRT is not installed" in lines[0] and str(copy) in lines[0], done.stderr
            assert "torch" not in done.stderr.lower()
            assert sorted(p.name for p in box.iterdir()) == before
        done = run("occ-export", copy, "--int8", "--calib-data", data, "--calib-frames", "32", "--json", box / "int8.json", "--quiet")
        assert done.returncode == 0, done.stderr[-2000:]
        written = json.loads((box / "int8.json").read_text())
        quantized = box / f"{copy.stem}.int8.onnx"
        assert written["written"] == {"int8": str(quantized)} and quantized.is_file()
        assert all(line.startswith(("PASSED", "calibration", "verified on", "int8_", "float_", "qdq_", "mask IoU"))
                   for line in written["reports"]["int8"])
        done = run("occ", "run", quantized, "--source", video, "--out", box / f"{copy.stem}.jsonl")
        assert done.returncode == 0, done.stderr[-2000:]
        assert len((box / f"{copy.stem}.jsonl").read_text().splitlines()) == len(tiny_walkway.test[1])


def test_cli_errors_are_one_line(tmp_path, avid_onnx):
    cases = [
        (["run", tmp_path / "none.onnx", "--source", "x"], "none.onnx: model file not found"),
        (["export", tmp_path / "none.pt"], "none.pt: file not found"),
        (["export", avid_onnx, "--batch", "8,1,32"], "--batch must be MIN,OPT,MAX"),
        (["run", avid_onnx, "--source", "x", "--backend", "nosuch"], "unknown backend 'nosuch'; available: ort-cpu, ort-cuda, tensorrt, triton"),
        (["run", avid_onnx, "--source", "x", "--preprocess", "tpu"], "--preprocess must be one of cpu, gpu"),
        (["eval", avid_onnx, "--data", tmp_path / "nothing"], "nothing: no such data folder"),
        (["calibrate", avid_onnx, "--data", tmp_path / "nothing"], "nothing: no such file or folder"),
        (["bench", "latency", avid_onnx, "--backend", "nosuch"], "unknown backend(s) 'nosuch'; available: ort-cpu"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], (args, result.output)
    help_text = invoke("--help").output
    for command in ("data", "train", "export", "run", "eval", "calibrate", "demo", "bench"):
        assert command in help_text


def test_eval_mnist_protocol_through_the_runtime(tmp_path, rng):
    """ALOCC on image data end to end: IDX files → train (one digit) → export → occ eval --data mnist:."""
    # class 0: a dark background with a bright vertical bar; class 1: a bright horizontal bar
    def digits(label, count):
        images = rng.integers(0, 30, (count, 28, 28), dtype=np.uint8)
        if label == 0:
            images[:, 4:24, 12:16] = 230
        else:
            images[:, 12:16, 4:24] = 230
        return images

    for split, count in (("train", 120), ("t10k", 60)):
        images = np.concatenate([digits(0, count), digits(1, count)])
        labels = np.repeat(np.array([0, 1], np.uint8), count)
        write_mnist(tmp_path, split, images, labels)
    trained = invoke("train", "alocc", "--data", f"mnist:{tmp_path}", "--digit", "0", "--out", tmp_path / "m.pt", "--base-width", "4",
                     "--epochs", "2", "--batch-size", "16")
    assert trained.exit_code == 0, trained.output
    assert invoke("export", tmp_path / "m.pt", "--quiet").exit_code == 0
    out = tmp_path / "mnist.json"
    result = invoke("eval", tmp_path / "m.onnx", "--data", f"mnist:{tmp_path}", "--json", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["digit"] == 0  # read from the manifest's training summary
    rows = report["by_outlier_fraction"]
    assert list(rows) == ["10%", "20%", "30%", "40%", "50%"]
    assert rows["50%"]["images"] == 120 and rows["10%"]["images"] == 60 + 7
    for row in rows.values():
        assert 0.0 <= row["f1_target"] <= 1.0 and 0.0 <= row["f1_outlier"] <= 1.0 and 0.0 <= row["auc"] <= 1.0
    assert "MNIST one-class protocol, target digit 0" in " ".join(result.output.split())  # table titles wrap


def test_irmnist_through_the_command_line(tmp_path, rng, avid_onnx):
    """AVID on digit grids end to end by the CLI: IDX files → occ train avid --data irmnist: → occ export →
    occ eval --data irmnist: (the AVID paper's detection and localization EER)."""
    from occ.train.common import load_checkpoint

    for split, count in (("train", 300), ("t10k", 200)):
        write_mnist(tmp_path, split, *glyph_digits(rng, count))
    train = invoke("train", "avid", "--data", f"irmnist:{tmp_path}:grids=20", "--out", tmp_path / "m.pt", "--epochs", "1",
                   "--base-width", "4", "--region-memory", "500")
    assert train.exit_code == 0, train.output[-2000:]
    manifest = load_checkpoint(tmp_path / "m.pt").manifest
    config = manifest.training["config"]
    # the images recipe where no option overrides it
    assert (config["recipe"], config["height"], config["depth"], config["skip_connections"], config["code_channels"]) == \
        ("images", 176, 4, False, 16)
    assert config["region_alignment"] and config["region_memory"] == 500 and config["base_width"] == 4
    scoring = manifest.scoring
    assert (scoring.frame_score, scoring.gate, scoring.residual_weight, scoring.mask_reach, scoring.residual_kernel) == \
        ("evidence", "soft", 0.2, 0, 5)
    assert manifest.training["dataset"] == {"kind": "irmnist", "grids": 20, "digit": 3, "seed": 0}
    assert invoke("export", tmp_path / "m.pt", "--quiet").exit_code == 0
    out = tmp_path / "irmnist.json"
    evaluated = invoke("eval", tmp_path / "m.onnx", "--data", f"irmnist:{tmp_path}:test_grids=12", "--json", out)
    assert evaluated.exit_code == 0, evaluated.output[-2000:]
    assert evaluated.output.count("at the stored thresholds: detection TPR") == 2  # one table per construction
    result = json.loads(out.read_text())
    # digit, seed and training grid count (which fix the test grids) from the manifest
    assert (result["digit"], result["seed"], result["training_grids"], result["test_grids"]) == (3, 0, 20, 12)
    assert result["frame_score"] == "evidence" and "detection EER, evidence (deployed)" in evaluated.output
    assert 9 <= result["natural"]["irregular_per_positive_grid"] <= 15 and 1 <= result["few"]["irregular_per_positive_grid"] <= 5
    for construction in ("few", "natural"):
        parts = result[construction]["parts"]
        assert list(parts) == ["intersection", "residual |X−I(X)|", "region map, memory"]
        assert all(0.0 <= value <= 1.0 for row in parts.values() for value in row.values())
        assert 0.0 <= result[construction]["at_stored_thresholds"]["false_positive_rate"] <= 1.0
    # the memory knows the normal glyphs: glyph 3's cells rank first
    assert result["natural"]["parts"]["region map, memory"]["localization_auc"] > 0.95

    # bad input: one line naming the problem, no traceback
    for args, message in (
        (["train", "avid", "--data", f"irmnist:{tmp_path / 'none'}", "--out", tmp_path / "x.pt"], "MNIST folder not found"),
        (["train", "avid", "--data", f"irmnist:{tmp_path}:grids=many", "--out", tmp_path / "x.pt"], "grids needs a whole number"),
        (["train", "avid", "--data", f"irmnist:{tmp_path}", "--height", "64", "--out", tmp_path / "x.pt"],
         "multiple of 11 px (one block per digit, e.g. 176), not 64x176"),
        (["eval", avid_onnx, "--data", f"irmnist:{tmp_path}"], "needs a single-image AVID model"),
    ):
        bad = invoke(*args)
        lines = [line for line in bad.output.splitlines() if line.strip()]
        assert bad.exit_code == 2 and len(lines) == 1 and message in lines[0], bad.output[-1000:]
    assert not (tmp_path / "x.pt").exists()


