"""Latency and throughput by stage, and export validation across backends (the work behind occ-bench).

A run is one *variant* (backend × precision × where preprocessing runs, the same three settings
every occ command takes) at one batch size. JSON schema ``occ-bench/2`` (stable; new keys may be
added, none removed or renamed):

    {
      "schema": "occ-bench/2",
      "model": str, "model_sha256": str, "method": "alocc" | "avid", "frame_size": [h, w], "created": ISO time,
      "machine": str, "commit": str | null, "command": str,
      "settings": {"warmup_s": float, "duration_s": float, "min_iterations": int},
      "device": {... benchmarks.device_state.device_state() ...},
      "runs": [
        {"variant": "ort-cpu fp32 cpu", "backend": str, "precision": "fp32" | "fp16" | "int8", "preprocess": "cpu" | "gpu",
         "batch": int, "iterations": int,
         "stages_ms": {"host_to_device" | "preprocess" | "inference" | "postprocess" | "device_to_host":
                       {"min","mean","p50","p90","p99","max","count"} | null (stage not applicable)},
         "end_to_end_ms": {...same keys...},
         "model_only_ms": {...same keys...},
         "throughput": {"frames_per_s": float, "patches_per_s": float | null, "model_only_frames_per_s": float},
         "watch_ms": {"scene_guard" | "drift_watch": {...same keys...}}  (CPU preprocessing only: the service's
                     per-frame watches after the model, for all ``batch`` streams),
         "watch_share": {"scene_guard" | "drift_watch" | "total": mean watch time / mean end_to_end time},
         "watch_share_p50": {...the same keys: p50 watch time / p50 end_to_end time}},
        ...
      ],
      "skipped": [{"variant": str, "reason": str}]
    }

Stage timing uses ``time.perf_counter_ns`` on the host (the CPU backends need no device events);
every sample is kept and percentiles are computed afterwards. Warm-up and duration follow
trtexec: iterations run for ``warmup_s`` unrecorded, then for at least ``duration_s`` and at least
``min_iterations``.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from occ.runtime.backends import REGISTRY, BackendError, create_backend
from occ.runtime.cuda.driver import gpu_problem
from occ.runtime.detector import Detector
from occ.runtime.files import file_sha256, now_iso
from occ.runtime.manifest import engine_sidecar
from occ.runtime.preprocess import FramePreprocessor
from occ.runtime.scoring.drift import DriftLimits, DriftReference, DriftWatch, frame_light
from occ.runtime.scoring.scene_guard import SceneGuard, SceneReference

from . import torch_backend  # noqa: F401  (registers the PyTorch baseline as backend "torch")

SCHEMA = "occ-bench/2"
STAGES = ("host_to_device", "preprocess", "inference", "postprocess", "device_to_host")
WATCHES = ("scene_guard", "drift_watch")  # timed after the model's stages, apart from its end-to-end time
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
    watches: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def collect(cls, step: Callable[[], tuple[int, ...]], warmup_s: float, duration_s: float,
                min_iterations: int) -> "StageSamples":
        """Run ``step`` (returning the ``perf_counter_ns`` at its stage boundaries: the model's
        four, then one after each of :data:`WATCHES` it times) unrecorded for ``warmup_s``, then
        recorded for at least ``duration_s`` and ``min_iterations``."""
        samples = cls()
        deadline = time.monotonic() + warmup_s
        step()
        while time.monotonic() < deadline:
            step()
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline or len(samples.end_to_end) < min_iterations:
            ticks = step()
            t0, t1, t2, t3 = ticks[:4]
            for name, start, end in zip(WATCHES, ticks[3:], ticks[4:]):
                samples.watches.setdefault(name, []).append((end - start) / 1e6)
            samples.stages["preprocess"].append((t1 - t0) / 1e6)
            samples.stages["inference"].append((t2 - t1) / 1e6)
            samples.stages["postprocess"].append((t3 - t2) / 1e6)
            samples.end_to_end.append((t3 - t0) / 1e6)
        return samples


@dataclass(frozen=True)
class Variant:
    """One way to run a model: a registered backend, a precision and where preprocessing runs."""

    backend: str
    precision: str = "fp32"
    preprocess: str = "cpu"

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision} {self.preprocess}"

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """``"ort-cuda fp16 gpu"``, or ``"ort-cuda"`` alone (fp32, cpu); the words in any order after the backend."""
        words = text.split()
        if not words:
            raise BackendError("an empty variant")
        precision = next((w for w in words[1:] if w in PRECISIONS), "fp32")
        preprocess = next((w for w in words[1:] if w in PREPROCESSING), "cpu")
        unknown = [w for w in words[1:] if w not in PRECISIONS + PREPROCESSING]
        if unknown:
            raise BackendError(f"variant {text!r}: unknown word(s) {unknown}; precisions {PRECISIONS}, preprocessing {PREPROCESSING}")
        return cls(words[0], precision, preprocess)


PRECISIONS = ("fp32", "fp16", "int8")
PREPROCESSING = ("cpu", "gpu")


def variants(backends: list[str], precisions: list[str], preprocessing: list[str]) -> list[Variant]:
    """Every combination of the three settings, backend-major."""
    return [Variant(b, p, q) for b in backends for p in precisions for q in preprocessing]


def precision_sibling(model_path: str, precision: str) -> str | None:
    """``<name>.fp16.onnx`` or ``<name>.int8.onnx`` beside an FP32 model, if export wrote it."""
    path = Path(model_path)
    sibling = path.with_name(f"{path.stem}.{precision}.onnx")
    return str(sibling) if path.suffix == ".onnx" and sibling.is_file() else None


def fp16_sibling(model_path: str) -> str | None:
    """``<name>.fp16.onnx`` beside an FP32 model, if export wrote one."""
    return precision_sibling(model_path, "fp16")


def artifact(variant: Variant, model_path: str, checkpoint_path: str | None) -> str:
    """The file a variant runs: the ONNX model or its FP16 sibling, the engine beside it, or the checkpoint."""
    runs = REGISTRY[variant.backend].capabilities.artifact
    if runs == ".pt":
        if checkpoint_path is None:
            raise BackendError(f"{model_path}: the torch baseline needs the source checkpoint beside the model")
        return checkpoint_path
    if runs == ".engine":
        engine = Path(model_path).with_suffix(".engine")
        if not engine.is_file():
            raise BackendError(f"{model_path}: no {engine.name} beside the model (occ-export --engine)")
        built = json.loads(engine_sidecar(engine).read_text()).get("precision", "fp16")
        if built != variant.precision:
            raise BackendError(f"{engine}: a {built} engine, not {variant.precision} (occ-export --engine{' --int8' if variant.precision == 'int8' else ''})")
        return str(engine)
    if variant.precision in ("fp16", "int8"):
        sibling = precision_sibling(model_path, variant.precision)
        if sibling is None:
            how = "occ-export --fp16" if variant.precision == "fp16" else "occ-export --int8 --calib-data SPEC"
            raise BackendError(f"{model_path}: {variant.precision} needs <name>.{variant.precision}.onnx beside it ({how})")
        return sibling
    return model_path


def why_not(variant: Variant, model_path: str, checkpoint_path: str | None) -> str | None:
    """Why a variant cannot run here (None: it can)."""
    if variant.backend not in REGISTRY:
        return f"unknown backend; available: {', '.join(REGISTRY)}"
    if variant.precision not in PRECISIONS or variant.preprocess not in PREPROCESSING:
        return f"precision must be one of {PRECISIONS} and preprocessing one of {PREPROCESSING}"
    kind = REGISTRY[variant.backend]
    capabilities = kind.capabilities
    if capabilities.on_server:
        return "a server backend; benchmark it with occ-bench triton"
    if variant.preprocess == "gpu" and not capabilities.device_resident:
        device_resident = [name for name, other in REGISTRY.items() if other.capabilities.device_resident]
        return f"GPU preprocessing needs a backend that runs on device buffers ({', '.join(device_resident)})"
    if capabilities.artifact == ".engine" and variant.precision == "fp32":
        return "occ builds FP16 and INT8 engines only"
    if capabilities.artifact == ".pt" and variant.precision == "int8":
        return "the PyTorch baseline has no INT8 form (INT8 lives in the Q/DQ ONNX)"
    if capabilities.artifact == ".pt" and variant.precision == "fp16" and not _torch_cuda():
        return "PyTorch FP16 needs a CUDA device"
    problem = kind.unavailable() or (gpu_problem() if variant.preprocess == "gpu" else None)
    if problem:
        return problem
    try:
        artifact(variant, model_path, checkpoint_path)
    except BackendError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def available(model_path: str, checkpoint_path: str | None) -> tuple[list[Variant], list[dict[str, str]]]:
    """Every variant that can run here, and the others with why not."""
    names = [name for name, kind in REGISTRY.items() if not kind.capabilities.on_server]
    runnable, skipped = [], []
    for variant in variants(names, list(PRECISIONS), list(PREPROCESSING)):
        capabilities = REGISTRY[variant.backend].capabilities
        if variant.preprocess == "gpu" and not capabilities.device_resident:
            continue  # never meaningful, not worth a line
        if capabilities.artifact == ".engine" and variant.precision == "fp32":
            continue
        reason = why_not(variant, model_path, checkpoint_path)
        (skipped.append({"variant": variant.label, "reason": reason}) if reason else runnable.append(variant))
    return runnable, skipped


def open_detector_for(variant: Variant, model_path: str, checkpoint_path: str | None) -> Detector:
    """A CPU-preprocessing detector for a variant (backend options from the registry)."""
    options = {"precision": variant.precision} if REGISTRY[variant.backend].capabilities.artifact == ".pt" else {}
    return Detector(create_backend(variant.backend, artifact(variant, model_path, checkpoint_path), **options))


def measure_pipeline(model_path: str, backend: str, frames: list[np.ndarray], batch: int, warmup_s: float, duration_s: float,
                     min_iterations: int = 10) -> StageSamples:
    """The GPU path (``--preprocess gpu``) on ``batch`` cameras: preprocess (upload + kernel,
    synchronised), inference (graph + outputs copied back), postprocess (results on the host)."""
    from occ.runtime.detector.gpu import GpuPipeline

    shape = frames[0].shape
    layout = "gray" if len(shape) == 2 else {1: "gray", 3: "bgr", 4: "bgra"}[shape[2]]
    pipeline = GpuPipeline(model_path, backend, streams=batch, frame_size=shape[:2], source_format=layout, share_stream=False)
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
        pipeline.detector.finish(outputs)
        return t0, t1, t2, clock()

    try:
        return StageSamples.collect(one_iteration, warmup_s, duration_s, min_iterations)
    finally:
        pipeline.close()


def synthetic_frames(height: int, width: int, count: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Raw camera-sized frames from the walkway generator (deterministic)."""
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway

    data = generate_walkway(WalkwayConfig(height=height, width=width, train_clips=0, test_clips=1,
                                          frames_per_clip=max(count, 10), seed=seed))
    return list(data.test[0].frames[:count])


def measure(detector: Detector, frames: list[np.ndarray], batch: int, warmup_s: float, duration_s: float,
            min_iterations: int = 10) -> StageSamples:
    """Time the pipeline on ``batch`` independent streams (one preprocessor each), and after it
    the service's per-frame watches: each stream's scene guard (its reference learnt from the
    frames, so every check runs) and drift watch (with reference scores, so its tests run)."""
    streams = [FramePreprocessor(detector.manifest.input) for _ in range(batch)]
    reference = SceneReference.from_frames(frames)
    limits, rng = DriftLimits(), np.random.default_rng(0)
    kept = limits.window * limits.every * limits.reference_windows
    drift_reference = DriftReference.learn(rng.normal(size=kept), rng.uniform(40, 160, size=kept), limits)
    guards = [SceneGuard(reference) for _ in range(batch)]
    drifts = [DriftWatch(drift_reference) for _ in range(batch)]
    clock = time.perf_counter_ns
    step = 0

    def one_iteration() -> tuple[int, ...]:
        nonlocal step
        raw = [frames[(step + k) % len(frames)] for k in range(batch)]
        step += 1
        t0 = clock()
        x = np.stack([stream.push(frame) for stream, frame in zip(streams, raw)])
        feed = detector.prepare(x)
        t1 = clock()
        outputs = detector.forward(feed)
        t2 = clock()
        results = detector.finish(outputs)
        t3 = clock()
        for guard, frame in zip(guards, raw):
            guard.update(frame, step / guard.limits.fps)
        t4 = clock()
        for drift, result, frame in zip(drifts, results, raw):
            drift.update(result.score, frame_light(frame) if drift.keeps_next else 0.0)  # as the service: kept frames measured
        return t0, t1, t2, t3, t4, clock()

    return StageSamples.collect(one_iteration, warmup_s, duration_s, min_iterations)


def run_latency(model_path: str, chosen: list[Variant] | None, batches: list[int], warmup_s: float, duration_s: float,
                frame_size: tuple[int, int] = (240, 360), min_iterations: int = 10,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every chosen variant (default: every one that runs here) at every batch size."""
    from occ.runtime.manifest import read_manifest

    from .device_state import device_state
    from .torch_backend import checkpoint_for
    from .training_runs import commit, machine

    manifest = read_manifest(model_path)
    checkpoint_path = checkpoint_for(model_path)
    present, skipped = available(model_path, checkpoint_path)
    frames = synthetic_frames(*frame_size)
    patches = manifest.patches.count(manifest.input) if manifest.method == "alocc" else None
    result: dict[str, Any] = {
        "schema": SCHEMA, "model": str(model_path), "model_sha256": file_sha256(model_path), "method": manifest.method,
        "frame_size": list(frame_size), "created": now_iso(), "machine": machine(), "commit": commit(),
        "command": " ".join(shlex.quote(a) for a in ["occ-bench", *sys.argv[1:]]) if sys.argv else "",
        "settings": {"warmup_s": warmup_s, "duration_s": duration_s, "min_iterations": min_iterations},
        "device": device_state(), "runs": [], "skipped": [] if chosen else skipped, "warnings": [],
    }
    for variant in chosen or present:
        reason = why_not(variant, model_path, checkpoint_path)
        if reason:
            result["skipped"].append({"variant": variant.label, "reason": reason})
            continue
        try:
            detector = None if variant.preprocess == "gpu" else open_detector_for(variant, model_path, checkpoint_path)
        except (BackendError, ImportError) as exc:
            result["skipped"].append({"variant": variant.label, "reason": str(exc)})
            continue
        for batch in batches:
            if progress:
                progress(f"{variant.label} batch {batch}")
            if detector is None:
                samples = measure_pipeline(artifact(variant, model_path, checkpoint_path), variant.backend, frames, batch,
                                           warmup_s, duration_s, min_iterations)
            else:
                samples = measure(detector, frames, batch, warmup_s, duration_s, min_iterations)
            e2e = summarize(samples.end_to_end)
            model = summarize(samples.stages["inference"])
            stages = {stage: (summarize(samples.stages[stage]) if stage in samples.stages else None) for stage in STAGES}
            frames_per_s = batch * 1000.0 / e2e["mean"]
            watches = {name: summarize(values) for name, values in samples.watches.items()}
            shares = {name: w["mean"] / e2e["mean"] for name, w in watches.items()}
            shares_p50 = {name: w["p50"] / e2e["p50"] for name, w in watches.items()}
            result["runs"].append({
                "variant": variant.label, "backend": variant.backend, "precision": variant.precision, "preprocess": variant.preprocess,
                "batch": batch, "iterations": e2e["count"], "stages_ms": stages, "end_to_end_ms": e2e, "model_only_ms": model,
                "throughput": {"frames_per_s": frames_per_s, "patches_per_s": frames_per_s * patches if patches else None,
                               "model_only_frames_per_s": batch * 1000.0 / model["mean"]},
                **({"watch_ms": watches, "watch_share": {**shares, "total": sum(shares.values())},
                    "watch_share_p50": {**shares_p50, "total": sum(shares_p50.values())}} if watches else {}),
            })
            if e2e["count"] < 100:
                result["warnings"].append(
                    f"{variant.label} batch {batch}: p99 from {e2e['count']} samples (fewer than 100); raise --duration")
        if detector is not None:
            detector.close()
    return result


def compare_runs(a: dict[str, Any], b: dict[str, Any], force: bool = False) -> list[dict[str, Any]]:
    """Ratios B / A for every (backend, batch) present in both runs, which must have measured the
    same model at the same frame size (``force``: compare anyway)."""
    if not force:
        difference = _measured_differently(a, b)
        if difference:
            raise ValueError(f"the two runs measured {difference}; a ratio would compare unlike things (--force compares anyway)")
    index = {(r.get("variant", r["backend"]), r["batch"]): r for r in a["runs"]}
    rows = []
    for run in b["runs"]:
        base = index.get((run.get("variant", run["backend"]), run["batch"]))
        if base is None:
            continue
        rows.append({
            "variant": run.get("variant", run["backend"]), "batch": run["batch"],
            "p50_ratio": run["end_to_end_ms"]["p50"] / base["end_to_end_ms"]["p50"],
            "p99_ratio": run["end_to_end_ms"]["p99"] / base["end_to_end_ms"]["p99"],
            "throughput_ratio": run["throughput"]["frames_per_s"] / base["throughput"]["frames_per_s"],
        })
    if not rows:
        raise ValueError("the two runs share no (variant, batch) pair")
    return rows


def _measured_differently(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """What differs between two runs' subjects: the model (by SHA-256; by method and name for
    runs that predate it) or the frame size."""
    if a.get("model_sha256") and b.get("model_sha256"):
        if a["model_sha256"] != b["model_sha256"]:
            return f"different models ({Path(a['model']).name} {a['model_sha256'][:12]}, {Path(b['model']).name} {b['model_sha256'][:12]})"
    elif (a.get("method"), Path(str(a.get("model"))).name) != (b.get("method"), Path(str(b.get("model"))).name):
        return f"different models ({a.get('model')}, {b.get('model')})"
    if a.get("frame_size") != b.get("frame_size"):
        return f"different frame sizes ({a.get('frame_size')}, {b.get('frame_size')})"
    return None


# ---- validation across variants ----------------------------------------------------------------
# Score error is relative to the score's size (|Δ| / max(1, |reference|)): ALOCC's location z-scores
# reach tens, and a GPU's FP32 convolutions (TF32 on Ampere and later) differ by ~1e-4 of that.
BUDGETS = {"decision_agreement": 0.995, "decision_agreement_int8": 0.99, "score_rel_error_fp32": 1e-3, "score_rel_error_fp16": 5e-2,
           "score_rel_error_int8": 0.25}
REFERENCE = Variant("ort-cpu")
# Passes over the test clips per variant for its speed, taken in turns (each variant once per round) so that a
# load that comes and goes on shared cores falls on every variant alike; the median pass counts.
SPEED_ROUNDS = 3


def validate(model_path: str, data_spec: str, chosen: list[Variant] | None = None) -> dict[str, Any]:
    """Evaluate the model in every chosen variant (default: every one that runs here) and compare
    each with ONNX Runtime CPU FP32 (numpy preprocessing).

    Status per variant: ``works`` (inside every budget), ``off-budget`` (ran, but decision
    agreement or score error is outside :data:`BUDGETS`), ``failed`` (could not load or run).
    Speed per variant that ran: frames/s over the test clips end to end, as ``occ run`` scores a
    stream (:data:`SPEED_ROUNDS` passes in turns, the median), and its ratio to the reference's.
    """
    from occ.evaluation.datasets.spec import load_video_data
    from occ.evaluation.protocols import score_clips
    from occ.runtime.detector.gpu import GpuStreamDetector

    from .torch_backend import checkpoint_for

    clips = load_video_data(data_spec, splits=("test",)).test
    checkpoint_path = checkpoint_for(model_path)
    present, skipped = available(model_path, checkpoint_path)
    rows = []
    detectors: dict[str, Any] = {}  # variant label → its open detector, timed once every variant has run
    reference_scores = reference_decisions = None
    try:
        for variant in [REFERENCE] + [v for v in (chosen or present) if v != REFERENCE]:
            detector = None
            try:
                reason = why_not(variant, model_path, checkpoint_path)
                if reason:
                    raise BackendError(reason)
                detector = (GpuStreamDetector(artifact(variant, model_path, checkpoint_path), variant.backend)
                            if variant.preprocess == "gpu" else open_detector_for(variant, model_path, checkpoint_path))
                scored = score_clips(detector, clips)
            except Exception as exc:  # a variant failing at load or run is a result, not a crash
                if detector is not None:
                    detector.close()
                rows.append({"variant": variant.label, "status": "failed", "reason": str(exc).splitlines()[0][:200]})
                continue
            detectors[variant.label] = detector
            rows.append(_compared(variant, scored, reference_scores, reference_decisions))
            if reference_scores is None:
                reference_scores = np.concatenate([c.scores for c in scored])
                reference_decisions = np.concatenate([c.decisions for c in scored])
        speeds = frames_per_second(detectors, [clip.frames for clip in clips])
    finally:
        for detector in detectors.values():
            detector.close()
    reference_speed = next((speeds[row["variant"]] for row in rows if row.get("reference")), None)
    for row in rows:
        if row["variant"] in speeds:
            row["frames_per_s"] = speeds[row["variant"]]
            row["speed_vs_reference"] = speeds[row["variant"]] / reference_speed if reference_speed else None
    return {"schema": "occ-bench-validate/2", "model": str(model_path), "data": data_spec, "budgets": BUDGETS,
            "variants": rows, "skipped": [] if chosen else skipped, "created": now_iso(), **run_record(),
            "speed": {"rounds": SPEED_ROUNDS, "frames": sum(len(clip.frames) for clip in clips),
                      "what": "frames/s over the test clips end to end (preprocessing, model, decision), median of the rounds"}}


def frames_per_second(detectors: dict[str, Any], clips: list[Any]) -> dict[str, float]:
    """Each detector's frames/s over ``clips`` (frame sequences), :data:`SPEED_ROUNDS` passes taken in turns; the median pass."""
    frames = sum(len(frames) for frames in clips)
    seconds: dict[str, list[float]] = {label: [] for label in detectors}
    for _ in range(SPEED_ROUNDS):
        for label, detector in detectors.items():
            started = time.perf_counter()
            for frames_of_clip in clips:
                detector.reset()
                detector.process_clip(frames_of_clip)
            seconds[label].append(time.perf_counter() - started)
    return {label: frames / float(np.median(taken)) for label, taken in seconds.items()}


def run_record() -> dict[str, Any]:
    """Where and how a result was made: date, machine, commit and the command line."""
    from .training_runs import commit, machine

    return {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "commit": commit(),
            "command": shlex.join(["occ-bench", *sys.argv[1:]]) if sys.argv else ""}


def _compared(variant: Variant, scored: list[Any], reference_scores: np.ndarray | None,
              reference_decisions: np.ndarray | None) -> dict[str, Any]:
    """A variant's metrics, and its agreement with the reference (None: it is the reference)."""
    from occ.evaluation.metrics import FrameLevelReport, PixelLevel
    from occ.evaluation.report import report

    metrics = report(scored)
    raw, pixel = metrics.frame_level.raw, metrics.pixel_level
    row = {"variant": variant.label, "frame_auc": raw.micro_auc if isinstance(raw, FrameLevelReport) else None,
           "frame_eer": raw.eer if isinstance(raw, FrameLevelReport) else None,
           "pixel_eer": pixel.eer if isinstance(pixel, PixelLevel) else None}
    if reference_scores is None:
        row.update({"decision_agreement": 1.0, "score_max_abs": 0.0, "score_rel_error": 0.0, "status": "works", "reference": True})
        return row
    scores = np.concatenate([c.scores for c in scored])
    decisions = np.concatenate([c.decisions for c in scored])
    agreement = float(np.mean(decisions == reference_decisions))
    error = float(np.max(np.abs(scores - reference_scores)))
    relative = float(np.max(np.abs(scores - reference_scores) / np.maximum(1.0, np.abs(reference_scores))))
    budget = BUDGETS[f"score_rel_error_{variant.precision}"]
    required = BUDGETS.get(f"decision_agreement_{variant.precision}", BUDGETS["decision_agreement"])
    ok = agreement >= required and relative <= budget
    row.update({"decision_agreement": agreement, "score_max_abs": error, "score_rel_error": relative, "score_budget": budget,
                "status": "works" if ok else "off-budget"})
    return row
