"""Latency and throughput by stage, and export validation across backends (the work behind occ-bench).

JSON schema ``occ-bench/1`` (stable; new keys may be added, none removed or renamed):

    {
      "schema": "occ-bench/1",
      "model": str, "method": "alocc" | "avid", "frame_size": [h, w], "created": ISO time,
      "settings": {"warmup_s": float, "duration_s": float, "min_iterations": int},
      "device": {... benchmarks.device_state.device_state() ...},
      "runs": [
        {"backend": str, "batch": int, "iterations": int,
         "stages_ms": {"host_to_device" | "preprocess" | "inference" | "postprocess" | "device_to_host":
                       {"min","mean","p50","p90","p99","max","count"} | null (stage not applicable)},
         "end_to_end_ms": {...same keys...},
         "model_only_ms": {...same keys...},
         "throughput": {"frames_per_s": float, "patches_per_s": float | null, "model_only_frames_per_s": float}},
        ...
      ],
      "skipped": [{"backend": str, "reason": str}]
    }

Stage timing uses ``time.perf_counter_ns`` on the host (the CPU backends need no device events);
every sample is kept and percentiles are computed afterwards. Warm-up and duration follow
trtexec: iterations run for ``warmup_s`` unrecorded, then for at least ``duration_s`` and at least
``min_iterations``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from occ.runtime.backends import Backend, BackendError, create_backend
from occ.runtime.detector import Detector
from occ.runtime.manifest import now_iso
from occ.runtime.preprocess import FramePreprocessor

SCHEMA = "occ-bench/1"
STAGES = ("host_to_device", "preprocess", "inference", "postprocess", "device_to_host")
PERCENTILES = {"p50": 50, "p90": 90, "p99": 99}


def summarize(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    """min, mean, p50, p90, p99, max (linear interpolation between samples) and count."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples to summarize")
    out = {"min": float(values.min()), "mean": float(values.mean())}
    out.update({name: float(np.percentile(values, q)) for name, q in PERCENTILES.items()})
    out.update({"max": float(values.max()), "count": int(values.size)})
    return out


@dataclass
class StageSamples:
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in ("preprocess", "inference", "postprocess")})
    end_to_end: list[float] = field(default_factory=list)

    @classmethod
    def collect(cls, step: Callable[[], tuple[int, int, int, int]], warmup_s: float, duration_s: float,
                min_iterations: int) -> "StageSamples":
        """Run ``step`` (returning the ``perf_counter_ns`` at its stage boundaries) unrecorded for
        ``warmup_s``, then recorded for at least ``duration_s`` and ``min_iterations``."""
        samples = cls()
        deadline = time.monotonic() + warmup_s
        step()
        while time.monotonic() < deadline:
            step()
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline or len(samples.end_to_end) < min_iterations:
            t0, t1, t2, t3 = step()
            samples.stages["preprocess"].append((t1 - t0) / 1e6)
            samples.stages["inference"].append((t2 - t1) / 1e6)
            samples.stages["postprocess"].append((t3 - t2) / 1e6)
            samples.end_to_end.append((t3 - t0) / 1e6)
        return samples


def available_backends(model_path: str, checkpoint_path: str | None) -> tuple[list[str], list[dict[str, str]]]:
    """Backends that can run here, and the skipped ones with why."""
    import onnxruntime

    names, skipped = ["ort-cpu"], []
    half = fp16_sibling(model_path)
    if half:
        names.append("ort-cpu-fp16")
    else:
        skipped.append({"backend": "ort-cpu-fp16", "reason": "no <name>.fp16.onnx beside the model (occ-export --fp16)"})
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        names.append("ort-cuda")
        if half:
            names.append("ort-cuda-fp16")
        problem = gpu_pipeline_problem()
        if problem:
            skipped.append({"backend": "gpu-pipeline", "reason": problem})
        else:
            names += ["gpu-pipeline"] + (["gpu-pipeline-fp16"] if half else [])
    else:
        skipped.append({"backend": "ort-cuda", "reason": "onnxruntime has no CUDAExecutionProvider here"})
        skipped.append({"backend": "gpu-pipeline", "reason": "onnxruntime has no CUDAExecutionProvider here"})
    import importlib.util
    from pathlib import Path

    engine = Path(model_path).with_suffix(".engine")
    if importlib.util.find_spec("tensorrt") is None:
        skipped.append({"backend": "tensorrt", "reason": "TensorRT is not installed here"})
    elif not engine.is_file():
        skipped.append({"backend": "tensorrt", "reason": f"no {engine.name} beside the model (occ-export --engine)"})
    else:
        names.append("tensorrt")
    try:
        import torch
    except ImportError:
        skipped.append({"backend": "torch-fp32", "reason": "torch is not installed"})
        return names, skipped
    if checkpoint_path is None:
        skipped.append({"backend": "torch-fp32", "reason": "the source checkpoint is not beside the ONNX model"})
        return names, skipped
    names.append("torch-fp32")
    if torch.cuda.is_available():
        names.append("torch-fp16-cuda")
    else:
        skipped.append({"backend": "torch-fp16", "reason": "PyTorch FP16 needs a CUDA device"})
    return names, skipped


def gpu_pipeline_problem() -> str | None:
    """Why the GPU pipeline (CUDA preprocessing + ORT CUDA on device buffers) cannot run here, or None."""
    try:
        from occ.runtime.gpu.cuda import Context

        Context()
    except Exception as exc:  # GpuUnavailable, CudaError, loader errors: all mean "not here"
        return f"no usable CUDA device for the GPU pipeline ({str(exc).splitlines()[0][:120]})"
    return None


def measure_pipeline(model_path: str, frames: list[np.ndarray], batch: int, warmup_s: float, duration_s: float,
                     min_iterations: int = 10) -> StageSamples:
    """The GPU pipeline (``occ run --backend ort-cuda``'s path) on ``batch`` cameras: host_to_device
    and preprocess (upload + kernel, synchronised), inference (graph + outputs copied back),
    postprocess (results on the host)."""
    from occ.runtime.gpu.pipeline import GpuPipeline

    shape = frames[0].shape
    layout = "gray" if len(shape) == 2 else {1: "gray", 3: "bgr", 4: "bgra"}[shape[2]]
    pipeline = GpuPipeline(model_path, "ort-cuda", streams=batch, frame_size=shape[:2], source_format=layout,
                           share_stream=False)
    clock = time.perf_counter_ns
    step = 0

    def one_iteration() -> tuple[int, int, int, int]:
        nonlocal step
        raw = np.stack([frames[(step + k) % len(frames)] for k in range(batch)])
        step += 1
        t0 = clock()
        pipeline.preprocessor.push(raw, out=pipeline.input.ptr)
        pipeline.stream.synchronize()
        t1 = clock()
        outputs = pipeline.infer_prepared()
        t2 = clock()
        pipeline.detector.finish(outputs, batch)
        return t0, t1, t2, clock()

    try:
        return StageSamples.collect(one_iteration, warmup_s, duration_s, min_iterations)
    finally:
        pipeline.close()


def fp16_sibling(model_path: str) -> str | None:
    """``<name>.fp16.onnx`` beside an FP32 model, if export wrote one."""
    from pathlib import Path

    path = Path(model_path)
    sibling = path.with_name(path.stem + ".fp16.onnx")
    return str(sibling) if path.suffix == ".onnx" and sibling.is_file() else None


def open_backend(name: str, model_path: str, checkpoint_path: str | None) -> Backend:
    if name.startswith("torch"):
        from .torch_backend import TorchBackend

        if checkpoint_path is None:
            raise BackendError(f"{model_path}: {name} needs the source checkpoint beside the model")
        if name == "torch-fp32":
            return TorchBackend(checkpoint_path)
        if name == "torch-fp16-cuda":
            return TorchBackend(checkpoint_path, precision="fp16", device="cuda")
        raise BackendError(f"unknown backend {name!r}")
    if name == "tensorrt":
        from pathlib import Path

        return create_backend("tensorrt", str(Path(model_path).with_suffix(".engine")))
    if name.endswith("-fp16"):
        half = fp16_sibling(model_path)
        if half is None:
            raise BackendError(f"{model_path}: {name} needs <name>.fp16.onnx beside it (occ-export --fp16)")
        backend = create_backend(name[: -len("-fp16")], half)
        backend.name = name
        return backend
    return create_backend(name, model_path)


def synthetic_frames(height: int, width: int, count: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Raw camera-sized frames from the walkway generator (deterministic)."""
    from occ.runtime.datasets import WalkwayConfig, generate_walkway

    data = generate_walkway(WalkwayConfig(height=height, width=width, train_clips=0, test_clips=1,
                                          frames_per_clip=max(count, 10), seed=seed))
    return list(data.test[0].frames[:count])


def measure(detector: Detector, frames: list[np.ndarray], batch: int, warmup_s: float, duration_s: float,
            min_iterations: int = 10) -> StageSamples:
    """Time the pipeline on ``batch`` independent streams (one preprocessor each)."""
    streams = [FramePreprocessor(detector.manifest.input) for _ in range(batch)]
    clock = time.perf_counter_ns
    step = 0

    def one_iteration() -> tuple[int, int, int, int]:
        nonlocal step
        raw = [frames[(step + k) % len(frames)] for k in range(batch)]
        step += 1
        t0 = clock()
        x = np.stack([stream.push(frame) for stream, frame in zip(streams, raw)])
        feed = detector.prepare(x)
        t1 = clock()
        outputs = detector.forward(feed)
        t2 = clock()
        detector.finish(outputs, batch)
        return t0, t1, t2, clock()

    return StageSamples.collect(one_iteration, warmup_s, duration_s, min_iterations)


def run_latency(model_path: str, backends: list[str] | None, batches: list[int], warmup_s: float, duration_s: float,
                frame_size: tuple[int, int] = (240, 360), min_iterations: int = 10,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    from .device_state import device_state
    from .torch_backend import checkpoint_for

    checkpoint_path = checkpoint_for(model_path)
    present, skipped = available_backends(model_path, checkpoint_path)
    chosen = present if not backends else backends
    frames = synthetic_frames(*frame_size)
    result: dict[str, Any] = {
        "schema": SCHEMA, "model": str(model_path), "frame_size": list(frame_size), "created": now_iso(),
        "settings": {"warmup_s": warmup_s, "duration_s": duration_s, "min_iterations": min_iterations},
        "device": device_state(), "runs": [], "skipped": [s for s in skipped if s["backend"] not in chosen or not backends],
    }
    for name in chosen:
        try:
            if name.startswith("gpu-pipeline"):
                pipeline_model = fp16_sibling(model_path) if name.endswith("-fp16") else model_path
                if pipeline_model is None:
                    raise BackendError(f"{model_path}: {name} needs <name>.fp16.onnx beside it (occ-export --fp16)")
                problem = gpu_pipeline_problem()
                if problem:
                    raise BackendError(problem)
                detector = Detector.open(model_path, "ort-cpu")  # the manifest and patch grid only
            else:
                detector = Detector.for_backend(open_backend(name, model_path, checkpoint_path))
        except (BackendError, ImportError) as exc:
            result["skipped"].append({"backend": name, "reason": str(exc)})
            continue
        result["method"] = detector.manifest.method
        patches = detector.grid.count if detector.manifest.method == "alocc" else None
        for batch in batches:
            if progress:
                progress(f"{name} batch {batch}")
            if name.startswith("gpu-pipeline"):
                samples = measure_pipeline(pipeline_model, frames, batch, warmup_s, duration_s, min_iterations)
            else:
                samples = measure(detector, frames, batch, warmup_s, duration_s, min_iterations)
            e2e = summarize(samples.end_to_end)
            model = summarize(samples.stages["inference"])
            stages = {stage: (summarize(samples.stages[stage]) if stage in samples.stages else None) for stage in STAGES}
            frames_per_s = batch * 1000.0 / e2e["mean"]
            result["runs"].append({
                "backend": name, "batch": batch, "iterations": e2e["count"], "stages_ms": stages,
                "end_to_end_ms": e2e, "model_only_ms": model,
                "throughput": {"frames_per_s": frames_per_s,
                               "patches_per_s": frames_per_s * patches if patches else None,
                               "model_only_frames_per_s": batch * 1000.0 / model["mean"]},
            })
        detector.close()
    return result


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Ratios B / A for every (backend, batch) present in both runs."""
    index = {(r["backend"], r["batch"]): r for r in a["runs"]}
    rows = []
    for run in b["runs"]:
        base = index.get((run["backend"], run["batch"]))
        if base is None:
            continue
        rows.append({
            "backend": run["backend"], "batch": run["batch"],
            "p50_ratio": run["end_to_end_ms"]["p50"] / base["end_to_end_ms"]["p50"],
            "p99_ratio": run["end_to_end_ms"]["p99"] / base["end_to_end_ms"]["p99"],
            "throughput_ratio": run["throughput"]["frames_per_s"] / base["throughput"]["frames_per_s"],
        })
    if not rows:
        raise ValueError("the two runs share no (backend, batch) pair")
    return rows


# ---- validation across backends ----------------------------------------------------------------
# Score error is relative to the score's size (|Δ| / max(1, |reference|)): ALOCC's location z-scores
# reach tens, and a GPU's FP32 convolutions (TF32 on Ampere and later) differ by ~1e-4 of that.
BUDGETS = {"decision_agreement": 0.995, "score_rel_error_fp32": 1e-3, "score_rel_error_fp16": 5e-2}


def validate(model_path: str, data_spec: str, backends: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the model on every available backend and compare each with ONNX Runtime CPU FP32.

    Status per backend: ``works`` (inside every budget), ``off-budget`` (ran, but decision agreement
    or score error is outside :data:`BUDGETS`), ``failed`` (could not load or run).
    """
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.evaluate import report, score_clips

    from .torch_backend import checkpoint_for

    clips = load_video_data(data_spec, splits=("test",)).test
    checkpoint_path = checkpoint_for(model_path)
    present, skipped = available_backends(model_path, checkpoint_path)
    # the GPU pipeline streams frame by frame; its agreement is checked by benchmarks/device_check.py
    names = [n for n in (backends or present) if not n.startswith("gpu-pipeline")]
    reference_scores = None
    rows = []
    for name in ["ort-cpu"] + [n for n in names if n != "ort-cpu"]:
        try:
            detector = Detector.for_backend(open_backend(name, model_path, checkpoint_path))
            scored = score_clips(detector, clips)
            detector.close()
        except Exception as exc:  # a backend failing at load or run is a result, not a crash
            rows.append({"backend": name, "status": "failed", "reason": str(exc).splitlines()[0][:200]})
            continue
        metrics = report(scored)
        scores = np.concatenate([c.scores for c in scored])
        decisions = np.concatenate([c.decisions for c in scored])
        row = {"backend": name, "frame_auc": metrics["frame_level"]["raw"].get("micro_auc"),
               "frame_eer": metrics["frame_level"]["raw"].get("eer"),
               "pixel_eer": metrics.get("pixel_level", {}).get("eer")}
        if reference_scores is None:
            reference_scores, reference_decisions = scores, decisions
            row.update({"decision_agreement": 1.0, "score_max_abs": 0.0, "score_rel_error": 0.0, "status": "works",
                        "reference": True})
        else:
            agreement = float(np.mean(decisions == reference_decisions))
            error = float(np.max(np.abs(scores - reference_scores)))
            relative = float(np.max(np.abs(scores - reference_scores) / np.maximum(1.0, np.abs(reference_scores))))
            budget = BUDGETS["score_rel_error_fp16" if "fp16" in name else "score_rel_error_fp32"]
            ok = agreement >= BUDGETS["decision_agreement"] and relative <= budget
            row.update({"decision_agreement": agreement, "score_max_abs": error, "score_rel_error": relative, "score_budget": budget,
                        "status": "works" if ok else "off-budget"})
        rows.append(row)
    return {"schema": "occ-bench-validate/1", "model": str(model_path), "data": data_spec, "budgets": BUDGETS,
            "backends": rows, "skipped": skipped, "created": now_iso()}
