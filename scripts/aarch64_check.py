"""The two x86-64 halves of `make check-aarch64` (scripts/check-aarch64.sh runs the arm64 half).

    python scripts/aarch64_check.py prepare WORK   # small models, a clip and a data folder; occ run / occ eval on x86-64
    python scripts/aarch64_check.py compare WORK   # the arm64 results against x86-64's; exit 1 when a decision on the same pixels differs

The models are tiny (trained here for one epoch, seconds on a CPU): the check is about the
runtime giving the same decisions on another architecture, not about accuracy.
"""
from __future__ import annotations

import io
import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

MODELS = ("alocc", "avid")


def prepare(work: Path) -> None:
    from rich.console import Console

    from occ.evaluation.datasets import WalkwayConfig, generate_walkway, write_ucsd_layout
    from occ.evaluation.datasets.video import write_video
    from occ.export.onnx_export import export_onnx
    from occ.train.train_alocc import AloccConfig, train_alocc
    from occ.train.train_alocc import video_data as alocc_data
    from occ.train.train_avid import AvidConfig, train_avid
    from occ.train.train_avid import video_data as avid_data

    inputs = work / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    quiet = Console(file=io.StringIO())
    walkway = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=2, test_clips=3, frames_per_clip=30, seed=7))
    if not (inputs / "walkway").is_dir():
        write_ucsd_layout(walkway, inputs / "walkway")
    write_video(inputs / "clip.avi", walkway.test[0].frames)
    if not (inputs / "alocc.onnx").is_file():
        config = AloccConfig(height=48, width=72, patch_size=16, stride=16, base_width=8, depth=2, epochs=1, batch_size=32)
        train_alocc(alocc_data(walkway.train, config, "tiny walkway"), config, inputs / "alocc.pt", quiet)
        export_onnx(inputs / "alocc.pt")
    if not (inputs / "avid.onnx").is_file():
        config = AvidConfig(height=32, width=48, base_width=4, depth=2, epochs=1, batch_size=8, optimizer="adam", lr=1e-3, momentum=0.5)
        train_avid(avid_data(walkway.train, config, "tiny walkway"), config, inputs / "avid.pt", quiet)
        export_onnx(inputs / "avid.pt")
    occ = str(Path(sys.executable).with_name("occ"))
    run_all(occ, inputs, work / "x86_64")


def sources(inputs: Path) -> dict[str, Path]:
    """The clip (lossy video: each platform's OpenCV decodes it) and the same frames as lossless images."""
    return {"clip": inputs / "clip.avi", "images": inputs / "walkway" / "Test" / "Test001"}


def run_all(occ: str, inputs: Path, out: Path) -> None:
    """occ run on each source and occ eval on the data folder, for every model (also what runs on arm64)."""
    from occ.runtime.sources import open_source

    out.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        for name, source in sources(inputs).items():
            frames = out / f"{model}_{name}.jsonl"
            frames.unlink(missing_ok=True)  # occ run appends
            subprocess.run([occ, "run", str(inputs / f"{model}.onnx"), "--source", str(source), "--out", str(frames)], check=True)
        subprocess.run([occ, "eval", str(inputs / f"{model}.onnx"), "--data", str(inputs / "walkway"), "--json",
                        str(out / f"{model}_eval.json"), "--quiet"], check=True)
    for name, source in sources(inputs).items():  # the decoded pixels, compared with the other platform's
        np.save(out / f"decoded_{name}.npy", np.stack([frame.image for frame in open_source(str(source))]))
    (out / "platform.json").write_text(json.dumps({"machine": platform.machine(), "python": platform.python_version()}))


def compare(work: Path) -> int:
    import datetime

    from occ.benchmarks.training_runs import commit, machine
    from occ.evaluation.report import EvaluationReport

    reference, candidate = work / "x86_64", work / "aarch64"
    result: dict = {"date": datetime.date.today().isoformat(), "machine": f"{machine()}, arm64 through qemu-user-static",
                    "commit": commit(), "command": "make check-aarch64",
                    "x86_64": json.loads((reference / "platform.json").read_text()),
                    "aarch64": json.loads((candidate / "platform.json").read_text()), "models": {}}
    same = True
    packages = candidate / "packages.txt"
    if packages.is_file():
        result["aarch64"]["packages"] = packages.read_text().split()
    tests = candidate / "runtime-tests.txt"
    if tests.is_file():  # pytest tests/runtime in the arm64 root: its summary line
        summary = (tests.read_text().strip().splitlines() or ["no output"])[-1]
        result["aarch64"]["runtime_tests"] = summary
        print(f"tests/runtime on aarch64: {summary}")
        same = " passed" in summary and "failed" not in summary and "error" not in summary
    # a lossy clip is decoded by each platform's own OpenCV and FFmpeg, whose inverse transforms may
    # round differently: its decisions are reported, and held to x86-64's only where the pixels are the same
    result["decoded_pixels_max_abs_diff"] = {name: int(np.abs(np.load(reference / f"decoded_{name}.npy").astype(int)
                                                              - np.load(candidate / f"decoded_{name}.npy")).max())
                                             for name in sources(work)}
    decoded = {name: difference == 0 for name, difference in result["decoded_pixels_max_abs_diff"].items()}
    result["decoded_pixels_equal"] = decoded
    for model in MODELS:
        row: dict = {}
        for name in sources(work):
            a = [json.loads(line) for line in (reference / f"{model}_{name}.jsonl").read_text().splitlines()]
            b = [json.loads(line) for line in (candidate / f"{model}_{name}.jsonl").read_text().splitlines()]
            equal = len(a) == len(b) and all(x["decision"] == y["decision"] for x, y in zip(a, b))
            row[f"{name}_frames"] = len(a)
            row[f"{name}_decisions_equal"] = equal
            row[f"{name}_anomalous_frames"] = sum(x["decision"] for x in a)
            row[f"{name}_score_max_abs_diff"] = max((abs(x["score"] - y["score"]) for x, y in zip(a, b)), default=float("nan"))
            row[f"{name}_decisions_differing"] = sum(x["decision"] != y["decision"] for x, y in zip(a, b))
            same = same and (equal or not decoded[name])
        eval_a, eval_b = (EvaluationReport.from_json(json.loads(path.read_text()), str(path))
                          for path in (reference / f"{model}_eval.json", candidate / f"{model}_eval.json"))
        auc_a, auc_b = eval_a.frame_level.raw.micro_auc, eval_b.frame_level.raw.micro_auc
        at_a, at_b = eval_a.at_stored_threshold, eval_b.at_stored_threshold
        eval_equal = (at_a.true_positive_rate, at_a.false_positive_rate) == (at_b.true_positive_rate, at_b.false_positive_rate)
        result["models"][model] = {**row, "eval_micro_auc": [auc_a, auc_b], "eval_decisions_equal": eval_equal}
        same = same and eval_equal
    result["passed"] = same
    (work / "result.json").write_text(json.dumps(result, indent=2))
    print(f"decoded pixels equal on both: {decoded}; largest difference, grey levels: {result['decoded_pixels_max_abs_diff']}")
    for model, row in result["models"].items():
        for name in sources(work):
            print(f"{model} on the {name}: {row[f'{name}_frames']} frames, decisions equal: {row[f'{name}_decisions_equal']} "
                  f"({row[f'{name}_decisions_differing']} differ), max |score diff| {row[f'{name}_score_max_abs_diff']:.3g}")
        print(f"{model} eval: micro AUC x86-64 {row['eval_micro_auc'][0]:.6f} / aarch64 {row['eval_micro_auc'][1]:.6f}, "
              f"decisions at the stored threshold equal: {row['eval_decisions_equal']}")
    print(f"aarch64 check {'passed' if same else 'FAILED'}: {work / 'result.json'}")
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "run", "compare"):
        sys.exit("usage: aarch64_check.py prepare|run|compare WORK")
    work = Path(sys.argv[2])
    if sys.argv[1] == "prepare":
        prepare(work)
    elif sys.argv[1] == "run":  # inside the arm64 root, with the arm64 occ on PATH
        run_all(str(Path(sys.executable).with_name("occ")), work / "inputs", work / "aarch64")
    else:
        sys.exit(compare(work))
