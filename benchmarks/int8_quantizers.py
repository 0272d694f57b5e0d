"""Which INT8 quantizer: ONNX Runtime's static quantizer (each calibration method) and NVIDIA
ModelOpt, on the same model, calibration frames, exclusions (the boundary convolutions) and test set.

    python -m occ.benchmarks.int8_quantizers MODEL.onnx --data SPEC [--modelopt-python PY] --json out.json

Each candidate Q/DQ model runs through the CPU runtime (ONNX Runtime) on every test frame of SPEC
against the FP32 model: frame decision agreement, largest score error, micro AUC of each.
ModelOpt needs torch and its ONNX extras (onnxruntime-gpu, cupy, onnx-graphsurgeon, polygraphy),
which a camera box does not have: it runs in its own Python (``--modelopt-python``, a virtual
environment with ``nvidia-modelopt[onnx]``), fed the same calibration frames through a file.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.metrics import roc_auc
from occ.export.int8 import CALIBRATION_METHODS, boundary_convolutions, calibration_set, quantization_summary, quantize_ort
from occ.runtime.files import now_iso
from occ.runtime.manifest import METADATA_KEY, manifest_from_metadata

MODELOPT = """
import sys, numpy as np
from modelopt.onnx.quantization import quantize
source, calib, target, exclude = sys.argv[1], sys.argv[2], sys.argv[3], [n for n in sys.argv[4].split(",") if n]
data = dict(np.load(calib))
quantize(source, quantize_mode="int8", calibration_data=data, calibration_method=sys.argv[5], calibration_eps=["cpu"],
         op_types_to_quantize=["Conv", "ConvTranspose"], nodes_to_exclude=exclude, high_precision_dtype="fp32",
         output_path=target, log_level="ERROR")
"""


def with_manifest(quantized: onnx.ModelProto, source: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """The candidate with the FP32 model's manifest, marked int8."""
    manifest = manifest_from_metadata({p.key: p.value for p in source.metadata_props}, "source")
    manifest.export = {**manifest.export, "precision": "int8", "quantizer": label}
    del quantized.metadata_props[:]
    quantized.metadata_props.add(key=METADATA_KEY, value=manifest.to_json())
    return quantized


def modelopt_candidate(python: str, source: onnx.ModelProto, batches: list[dict[str, np.ndarray]], method: str,
                       folder: Path) -> onnx.ModelProto:
    path, calib, target = folder / "fp32.onnx", folder / "calib.npz", folder / f"modelopt_{method}.onnx"
    for index, node in enumerate(source.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"
    onnx.save(source, str(path))
    name = next(iter(batches[0]))
    np.savez(calib, **{name: np.concatenate([b[name] for b in batches])})
    exclude = ",".join(boundary_convolutions(source))
    done = subprocess.run([python, "-c", MODELOPT, str(path), str(calib), str(target), exclude, method], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ModelOpt failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return onnx.load(str(target))


def evaluate(model_path: Path, manifest, clips, batch_frames: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame scores, decisions and labels of every test frame: the runtime's preprocessing, feed and
    scoring rule (:func:`decide`) around an ONNX Runtime CPU session. Inputs the graph folded into
    constants (ModelOpt folds α and ζ, at their stored values) are left out of the feed."""
    import onnxruntime as ort

    from occ.runtime.detector.cpu import FEEDS
    from occ.runtime.preprocess import preprocess_clip
    from occ.runtime.scoring.decide import decide, scoring_outputs

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    takes = {i.name for i in session.get_inputs()} | {i.name for i in session.get_overridable_initializers()}
    outputs = scoring_outputs(manifest)
    scores, decisions, labels = [], [], []
    for clip in clips:
        inputs = preprocess_clip(clip.frames, manifest.input)
        for start in range(0, len(inputs), batch_frames):
            feed = {k: v for k, v in FEEDS[manifest.method](inputs[start:start + batch_frames], manifest).items() if k in takes}
            results = decide(dict(zip(outputs, session.run(outputs, feed))), manifest)
            scores += [r.score for r in results]
            decisions += [r.decision for r in results]
        labels.append(np.asarray(clip.labels, bool))
    return np.array(scores), np.array(decisions), np.concatenate(labels)


def compare_quantizers(model_path: str, data: str, calib_frames: int = 128, modelopt_python: str | None = None,
                       only: list[str] | None = None) -> dict[str, Any]:
    source = onnx.load(model_path)
    manifest = manifest_from_metadata({p.key: p.value for p in source.metadata_props}, model_path)
    calibration = calibration_set(manifest, data, calib_frames)
    clips = load_video_data(data, splits=("test",)).test
    result: dict[str, Any] = {"model": model_path, "data": data, "calibration": calibration.description, "created": now_iso(),
                              "candidates": []}
    ref_scores, ref_decisions, labels = evaluate(Path(model_path), manifest, clips)
    result["fp32"] = {"micro_auc": roc_auc(labels, ref_scores), "frames": int(len(labels))}
    with tempfile.TemporaryDirectory(prefix="occ-int8-compare-") as folder:
        folder = Path(folder)

        makers = {f"onnxruntime {m}": (lambda m=m: quantize_ort(source, calibration, m)) for m in CALIBRATION_METHODS}
        makers["onnxruntime percentile + FP32 input convolutions"] = lambda: quantize_ort(
            source, calibration, "percentile", float_input_convolutions=True)
        if modelopt_python:
            for method in ("max", "entropy"):
                makers[f"modelopt {method}"] = (lambda method=method: modelopt_candidate(
                    modelopt_python, source, calibration.batches, method, folder))
        for label, make in makers.items():
            if only and label not in only:
                continue
            row: dict[str, Any] = {"quantizer": label}
            try:
                started = time.monotonic()
                candidate = with_manifest(make(), source, label)
                row["quantize_s"] = round(time.monotonic() - started, 1)
                path = folder / (label.replace(" ", "_") + ".onnx")
                onnx.save(candidate, str(path))
                row.update(quantization_summary(candidate))
                scores, decisions, _ = evaluate(path, manifest, clips)
                row.update({"decision_agreement": float(np.mean(decisions == ref_decisions)),
                            "score_max_abs": float(np.max(np.abs(scores - ref_scores))),
                            "score_median_abs": float(np.median(np.abs(scores - ref_scores))),
                            "micro_auc": roc_auc(labels, scores)})
            except Exception as exc:  # a quantizer that fails is a result
                row["error"] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            result["candidates"].append(row)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--calib-frames", type=int, default=128)
    parser.add_argument("--modelopt-python", help="A Python with nvidia-modelopt[onnx] installed.")
    parser.add_argument("--only", help="Comma-separated candidate labels to run (default: all).")
    parser.add_argument("--json", dest="json_path", help="Write the result here.")
    args = parser.parse_args()
    result = compare_quantizers(args.model, args.data, args.calib_frames, args.modelopt_python,
                                [x.strip() for x in args.only.split(",")] if args.only else None)
    text = json.dumps(result, indent=2)
    if args.json_path:
        from occ.runtime.files import write_atomic

        write_atomic(Path(args.json_path), text.encode())
    print(f"FP32 micro AUC {result['fp32']['micro_auc']:.4f} over {result['fp32']['frames']} frames")
    for row in result["candidates"]:
        if "error" in row:
            print(f"{row['quantizer']}: {row['error']}")
        else:
            print(f"{row['quantizer']}: agreement {row['decision_agreement']:.4f}, max |score error| {row['score_max_abs']:.4g}, "
                  f"micro AUC {row['micro_auc']:.4f}, {row['int8_convolutions']} INT8 convolutions, {row['quantize_s']} s")


if __name__ == "__main__":
    sys.exit(main())
