"""One script that checks everything GPU-side and writes one JSON (run it on a machine with a GPU).

    occ-bench device-check prepare --models runs/device_models     # anywhere torch is
    occ-bench device-check run --models runs/device_models --out device_check.json

``prepare`` trains small models and exports them (FP32 and ``.fp16.onnx``): the walkway demo
models (for the agreement checks, accuracy as in ``make demo``) and the latency models (AVID at
256×384 with the default architecture, base width 16, and a wider one, base width 32; ALOCC at
240×360 with 30-px patches at stride 15, base width 64; one epoch each: latency does not depend
on the weights). Existing checkpoints are exported again, not retrained. ``run`` then checks, each step reporting its
own failure without stopping the others:

1. ``kernels``: the GPU preprocessing against the numpy reference for every temporal rule, FP32
   and FP16, BGR, gray and NV12 sources, several streams at once, and the ALOCC patch batch;
2. ``preprocessing_timing``: µs per 240×360 frame (GPU resident and with the host upload) at 1 and
   32 streams, with CUDA events, against the same steps in PyTorch ops;
3. ``agreement_*``: ONNX Runtime CUDA FP32 / FP16 against ONNX Runtime CPU FP32 on the walkway test
   set (scores, decisions, pixel masks), and the whole GPU pipeline (GPU preprocessing + ORT CUDA
   FP16) against the CPU detector, frame by frame;
4. ``latency_*``: end to end, uint8 frames in host memory → score (and AVID mask) in host memory,
   AVID at 256×384 (1 and 32 streams) and ALOCC on one 240×360 frame, for each pipeline variant;
   the same models in PyTorch (eager FP32, FP16 + CUDA graph) alone, measured in the same run.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

WALKWAY = "walkway"  # the demo's data: same generator, same seed, same test clips
AIMS = {"avid_b1_p50_ms": 0.6, "avid_b32_frames_per_s": 5000, "alocc_b1_p50_ms": 0.6, "preprocess_us": 15.0,
        "preprocess_speedup_vs_torch": 5.0, "fp16_decision_agreement": 0.995}


# ---- prepare (needs torch; runs on a CPU) ------------------------------------------------------
def prepare(models: Path) -> dict[str, str]:
    from rich.console import Console

    from occ.export.fp16 import export_fp16
    from occ.export.onnx_export import export_onnx
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway
    from occ.evaluation.datasets.spec import load_video_data
    from occ.train.train_alocc import alocc_config, train_alocc
    from occ.train.train_alocc import video_data as alocc_video
    from occ.train.train_avid import avid_config, train_avid
    from occ.train.train_avid import video_data as avid_video

    models.mkdir(parents=True, exist_ok=True)
    quiet = Console(file=io.StringIO())
    demo = load_video_data(WALKWAY, splits=("train",))
    big = generate_walkway(WalkwayConfig(height=240, width=360, train_clips=2, test_clips=0, frames_per_clip=40))
    jobs = [
        ("demo_alocc", alocc_config("video"), alocc_video, train_alocc, demo.train),
        ("demo_avid", avid_config("video"), avid_video, train_avid, demo.train),
        ("alocc_240x360", alocc_config("video", height=240, width=360, patch_size=30, stride=15, base_width=64, depth=3, epochs=1),
         alocc_video, train_alocc, big.train),
        ("avid_256x384", avid_config("video", height=256, width=384, epochs=1), avid_video, train_avid, big.train),
        ("avid_256x384_w32", avid_config("video", height=256, width=384, base_width=32, epochs=1), avid_video, train_avid, big.train),
        ("avid_256x384_w8", avid_config("video", height=256, width=384, base_width=8, epochs=1), avid_video, train_avid, big.train),
    ]
    written = {}
    for name, config, video, train, clips in jobs:
        checkpoint = models / f"{name}.pt"
        started = time.monotonic()
        if not checkpoint.is_file():  # an existing checkpoint is only exported again
            train(video(clips, config, name), config, checkpoint, quiet)
        exported = export_onnx(checkpoint)
        export_fp16(exported.path, samples=exported.samples)
        written[name] = str(exported.path)
        print(f"{name}: trained and exported in {time.monotonic() - started:.0f} s", flush=True)
    return written


# ---- 1. kernels --------------------------------------------------------------------------------
def kernels_vs_reference() -> dict[str, Any]:
    from occ.runtime.cuda.driver import Context
    from occ.runtime.preprocess.gpu import GpuPreprocessor
    from occ.runtime.manifest import InputSpec, PatchSpec
    from occ.runtime.preprocess import FramePreprocessor, PatchGrid, nv12_to_gray

    context = Context()
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"gpu": context.name, "arch": context.arch,
                               "tolerance": {"fp32": 1e-3 / 127.5, "fp16": 1e-3},
                               "why": "FP32: 1e-3 grey levels (float rounding order of the bilinear taps), after "
                                      "normalization by 127.5; FP16: half-precision rounding of values in -1..1 (2^-11)"}
    cases = []
    streams = 3
    for temporal, channels in (("avid_triplet", 3), ("frame_diff", 2), ("none", 1)):
        for precision in ("fp32", "fp16"):
            for source_format in ("bgr", "gray", "nv12"):
                spec = InputSpec(height=120, width=176, channels=channels, temporal=temporal)
                gpu = GpuPreprocessor(spec, (240, 360), source_format=source_format, precision=precision,
                                      streams=streams, context=context)
                cpu = [FramePreprocessor(spec) for _ in range(streams)]
                worst = 0.0
                for step in range(9):
                    if step == 6:  # a clip boundary in the middle
                        gpu.reset()
                        for c in cpu:
                            c.reset()
                    if source_format == "bgr":
                        frames = rng.integers(0, 256, (streams, 240, 360, 3), dtype=np.uint8)
                        as_gray = list(frames)
                    elif source_format == "gray":
                        frames = rng.integers(0, 256, (streams, 240, 360), dtype=np.uint8)
                        as_gray = list(frames)
                    else:
                        frames = rng.integers(0, 256, (streams, 360, 360), dtype=np.uint8)
                        as_gray = [nv12_to_gray(f, 240, 360) for f in frames]
                    gpu.push(frames)
                    got = gpu.read_output().astype(np.float32)
                    want = np.stack([c.push(g) for c, g in zip(cpu, as_gray)])
                    worst = max(worst, float(np.abs(got - want).max()))
                gpu.free()
                limit = results["tolerance"][precision]
                cases.append({"temporal": temporal, "precision": precision, "source": source_format,
                              "max_abs": worst, "ok": worst <= limit})
    spec = InputSpec(height=240, width=360, channels=2, temporal="frame_diff")
    patches = PatchSpec(size=30, stride=15)
    grid = PatchGrid.from_spec(patches, spec)
    for precision in ("fp32", "fp16"):
        gpu = GpuPreprocessor(spec, (240, 360), source_format="gray", precision=precision, patches=patches, streams=2,
                              context=context)
        cpu = [FramePreprocessor(spec) for _ in range(2)]
        worst = 0.0
        for _ in range(3):
            frames = rng.integers(0, 256, (2, 240, 360), dtype=np.uint8)
            gpu.push(frames)
            got = gpu.read_output().astype(np.float32)
            want = np.concatenate([grid.extract(c.push(f)) for c, f in zip(cpu, frames)])
            worst = max(worst, float(np.abs(got - want).max()))
        gpu.free()
        cases.append({"temporal": "frame_diff", "precision": precision, "source": "gray", "patches": grid.count,
                      "max_abs": worst, "ok": worst <= results["tolerance"][precision]})
    results["cases"] = cases
    results["all_ok"] = all(c["ok"] for c in cases)
    return results


# ---- 2. preprocessing time ---------------------------------------------------------------------
def preprocessing_timing(iterations: int = 400) -> dict[str, Any]:
    from occ.runtime.cuda.driver import Context, DeviceBuffer, Event
    from occ.runtime.preprocess.gpu import GpuPreprocessor
    from occ.runtime.manifest import InputSpec

    context = Context()
    spec = InputSpec(height=256, width=384, channels=3, temporal="avid_triplet")
    out: dict[str, Any] = {"frame": "240x360 BGR uint8 -> 3x256x384 FP16 AVID triplet", "aim_us": AIMS["preprocess_us"]}
    rng = np.random.default_rng(0)
    for streams in (1, 32):
        gpu = GpuPreprocessor(spec, (240, 360), source_format="bgr", precision="fp16", streams=streams, context=context)
        frames = rng.integers(0, 256, (streams, 240, 360, 3), dtype=np.uint8)
        resident = DeviceBuffer(frames.nbytes)
        resident.upload(frames, gpu.stream)
        start, stop = Event(), Event()
        for _ in range(50):
            gpu.push(device_frames=resident)
        start.record(gpu.stream)
        for _ in range(iterations):
            gpu.push(device_frames=resident)
        stop.record(gpu.stream)
        out[f"streams{streams}_device_resident_us_per_frame"] = stop.elapsed_ms(start) * 1000 / iterations / streams
        wall = time.perf_counter()
        for _ in range(iterations):
            gpu.push(frames)
        gpu.stream.synchronize()
        out[f"streams{streams}_with_host_upload_us_per_frame"] = (time.perf_counter() - wall) * 1e6 / iterations / streams
        gpu.free()
        resident.free()
        try:
            out[f"streams{streams}_torch_ops_us_per_frame"] = _torch_preprocessing_us(frames, spec, iterations) / streams
            out[f"streams{streams}_speedup_vs_torch"] = (out[f"streams{streams}_torch_ops_us_per_frame"]
                                                         / out[f"streams{streams}_device_resident_us_per_frame"])
        except Exception as exc:  # torch without CUDA: the comparison is skipped and says why
            out[f"streams{streams}_torch_ops_us_per_frame"] = f"skipped: {type(exc).__name__}: {exc}"
    return out


def _torch_preprocessing_us(frames: np.ndarray, spec, iterations: int) -> float:
    """A timing anchor only: the same steps as the kernel in PyTorch ops on the GPU (frames
    already resident), to compare speed against. It is not a definition of the inputs (that is
    :mod:`occ.runtime.preprocess.reference`, which the kernels are tested against) and its output
    is never checked or used."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(frames).cuda()
    weights = torch.tensor([0.114, 0.587, 0.299], device="cuda")
    n = x.shape[0]
    ring = torch.zeros(5, n, spec.height, spec.width, device="cuda")
    previous = torch.zeros(n, spec.height, spec.width, device="cuda")

    def step(t: int) -> torch.Tensor:
        nonlocal previous
        luma = (x.float() * weights).sum(-1)
        now = F.interpolate(luma[:, None], size=(spec.height, spec.width), mode="bilinear", align_corners=False)[:, 0]
        ring[t % 5] = (now + previous) * 0.5
        previous = now
        return ((torch.stack([ring[(t - 4) % 5], ring[(t - 2) % 5], ring[t % 5]], 1) - 127.5) / 127.5).half()

    for t in range(50):
        step(t)
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for t in range(iterations):
        step(t)
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) * 1000 / iterations


# ---- 3. agreement ------------------------------------------------------------------------------
def agreement(model: str) -> dict[str, Any]:
    from .latency import validate

    return validate(model, WALKWAY, backends=["ort-cuda", "ort-cuda-fp16"])


def pipeline_agreement(model: str, **variant) -> dict[str, Any]:
    """The deployed GPU path (GPU preprocessing + ORT CUDA FP16 + CUDA graph) against the CPU
    detector (numpy preprocessing + ORT CPU FP32), frame by frame over the walkway test clips."""
    from occ.evaluation.datasets.spec import load_video_data
    from occ.runtime.detector import open_detector
    from occ.runtime.detector.gpu import GpuPipeline

    from .latency import fp16_sibling

    clips = load_video_data(WALKWAY, splits=("test",)).test
    reference = open_detector(model, "ort-cpu")
    frame_size = clips[0].frames.shape[1:3]
    pipeline = GpuPipeline(fp16_sibling(model) or model, "ort-cuda", streams=1, frame_size=frame_size,
                           source_format="gray" if clips[0].frames.ndim == 3 else "bgr", **variant)
    scores_cpu, scores_gpu, decisions_cpu, decisions_gpu, ious, worst = [], [], [], [], [], None
    for clip in clips:
        reference.reset()
        pipeline.reset()
        for frame in clip.frames:
            want = reference.process(frame)
            got = pipeline.process(frame)[0]
            scores_cpu.append(want.score)
            scores_gpu.append(got.score)
            decisions_cpu.append(want.decision)
            decisions_gpu.append(got.decision)
            if want.mask is not None:
                union = np.logical_or(want.mask, got.mask).sum()
                ious.append(1.0 if union == 0 else float(np.logical_and(want.mask, got.mask).sum() / union))
                if worst is None or ious[-1] < worst["iou"]:
                    worst = {"frame": len(ious) - 1, "iou": ious[-1], "mask_pixels_cpu": int(want.mask.sum()),
                             "mask_pixels_gpu": int(got.mask.sum()), "score_cpu": want.score, "score_gpu": got.score}
    reference.close()
    pipeline.close()
    agreement = float(np.mean(np.array(decisions_cpu) == np.array(decisions_gpu)))
    return {"frames": len(scores_cpu), "variant": variant, "decision_agreement": agreement,
            "score_max_abs": float(np.max(np.abs(np.array(scores_cpu) - np.array(scores_gpu)))),
            "mask_iou_mean": float(np.mean(ious)) if ious else None, "mask_iou_min": float(np.min(ious)) if ious else None,
            "worst_mask_frame": worst, "nonzero_scores": int(np.count_nonzero(scores_cpu)),
            "sample_scores": [[float(a), float(b)] for a, b in list(zip(scores_cpu, scores_gpu))[::50]],
            "ok": agreement >= AIMS["fp16_decision_agreement"]}


# ---- 4. latency --------------------------------------------------------------------------------
def pipeline_latency(model: str, streams: int, frame_size: tuple[int, int], duration_s: float, **variant) -> dict[str, Any]:
    """uint8 BGR frames in host memory → outputs in host memory, timed per call, twice: frames in
    pageable memory (copied into pinned staging, included), and frames already in the pipeline's
    pinned ``host_frames`` (where a decoder can write them)."""
    from occ.runtime.detector.gpu import GpuPipeline

    from .latency import summarize, synthetic_frames

    frames = synthetic_frames(*frame_size, count=16)
    frames = [np.ascontiguousarray(np.repeat(f[..., None], 3, axis=2) if f.ndim == 2 else f) for f in frames]
    batches = [np.stack([frames[(i + k) % len(frames)] for k in range(streams)]) for i in range(len(frames))]
    pipeline = GpuPipeline(model, "ort-cuda", streams=streams, frame_size=frame_size, source_format="bgr", **variant)
    for i in range(30):
        pipeline.infer(batches[i % len(batches)])
    result: dict[str, Any] = {"model": Path(model).name, "streams": streams, "frame_size": list(frame_size),
                              "variant": variant}
    for label in ("pageable", "pinned"):
        to_host, with_results = [], []
        deadline = time.monotonic() + duration_s / 2
        i = 0
        while time.monotonic() < deadline or len(to_host) < 30:
            batch = batches[i % len(batches)]
            if label == "pinned":
                pipeline.host_frames[...] = batch  # the decoder's write, outside the timed region
            t0 = time.perf_counter_ns()
            outputs = pipeline.infer(batch if label == "pageable" else None)
            t1 = time.perf_counter_ns()
            pipeline.detector.finish(outputs)
            t2 = time.perf_counter_ns()
            to_host.append((t1 - t0) / 1e6)
            with_results.append((t2 - t0) / 1e6)
            i += 1
        e2e = summarize(to_host)
        key = "" if label == "pageable" else "pinned_"
        result[f"{key}end_to_end_ms"] = e2e
        result[f"{key}with_results_ms"] = summarize(with_results)
        result[f"{key}frames_per_s"] = streams * 1000.0 / e2e["mean"]
    pipeline.close()
    return result


def model_profile(model: str, streams: int, frame_size: tuple[int, int], iterations: int = 30) -> dict[str, Any]:
    """Where ONNX Runtime spends the model's time: per-node profile (no CUDA graph), summed by operator."""
    import tempfile

    from occ.runtime.detector.gpu import GpuPipeline

    prefix = str(Path(tempfile.mkdtemp()) / "ort_profile")
    pipeline = GpuPipeline(model, "ort-cuda", streams=streams, frame_size=frame_size, source_format="gray",
                           cuda_graph=False, backend_options={"profile_prefix": prefix})
    frames = np.random.default_rng(0).integers(0, 256, (streams, *frame_size), dtype=np.uint8)
    for _ in range(iterations):
        pipeline.infer(frames)
    events = json.loads(Path(pipeline.backend.end_profiling()).read_text())
    pipeline.close()
    by_op: dict[str, float] = {}
    by_node: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        by_op[op] = by_op.get(op, 0.0) + event["dur"] / iterations
        name = f"{op}:{event['name'][:-len('_kernel_time')]}"
        by_node[name] = by_node.get(name, 0.0) + event["dur"] / iterations
    top = sorted(by_node.items(), key=lambda kv: -kv[1])[:15]
    return {"model": Path(model).name, "streams": streams, "us_per_run_by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
            "top_nodes_us": dict(top), "total_us": sum(by_op.values())}


def kernel_launch_time(streams: int = 32, launches: int = 50) -> dict[str, Any]:
    """GPU time of single preprocessing launches (events around each), not bounded by the host."""
    from occ.runtime.cuda.driver import Context, DeviceBuffer, Event

    from .latency import summarize
    from occ.runtime.preprocess.gpu import GpuPreprocessor
    from occ.runtime.manifest import InputSpec

    context = Context()
    spec = InputSpec(height=256, width=384, channels=3, temporal="avid_triplet")
    out: dict[str, Any] = {"streams": streams}
    rng = np.random.default_rng(0)
    for source_format, shape in (("bgr", (streams, 240, 360, 3)), ("gray", (streams, 240, 360))):
        gpu = GpuPreprocessor(spec, (240, 360), source_format=source_format, precision="fp16", streams=streams, context=context)
        frames = rng.integers(0, 256, shape, dtype=np.uint8)
        resident = DeviceBuffer(frames.nbytes)
        resident.upload(frames, gpu.stream)
        samples = []
        for k in range(launches + 5):
            start, stop = Event(), Event()
            start.record(gpu.stream)
            gpu.push(device_frames=resident)
            stop.record(gpu.stream)
            if k >= 5:
                samples.append(stop.elapsed_ms(start) * 1000)
        out[f"{source_format}_us_per_launch"] = summarize(samples)
        out[f"{source_format}_us_per_frame_p50"] = out[f"{source_format}_us_per_launch"]["p50"] / streams
        gpu.free()
        resident.free()
    return out


def torch_model_only(checkpoint: str, batch: int, duration_s: float) -> dict[str, Any]:
    """The exported module in PyTorch on the GPU, model alone: eager FP32, and FP16 replayed as a CUDA graph."""
    import torch

    from occ.export.onnx_export import build_graph
    from occ.train.common import load_checkpoint

    from .latency import summarize

    loaded = load_checkpoint(checkpoint)
    module, _, _, _ = build_graph(loaded)
    spec = loaded.manifest.input
    out: dict[str, Any] = {"checkpoint": Path(checkpoint).name, "batch": batch}
    variants = (("eager_fp32", torch.float32, False, False), ("fp16_cuda_graph", torch.float16, True, False),
                ("fp16_channels_last_cuda_graph", torch.float16, True, True))
    for label, dtype, graph, channels_last in variants:
        net = module.to("cuda", dtype).eval()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        if loaded.manifest.method == "alocc":
            from occ.runtime.preprocess import PatchGrid

            grid = PatchGrid.from_spec(loaded.manifest.patches, spec)
            args = (torch.randn(batch * grid.count, spec.channels, grid.size, grid.size, device="cuda", dtype=dtype),)
        else:
            args = (torch.randn(batch, spec.channels, spec.height, spec.width, device="cuda", dtype=dtype),
                    torch.tensor([loaded.manifest.threshold("alpha")], device="cuda", dtype=dtype),
                    torch.tensor([loaded.manifest.threshold("zeta")], device="cuda", dtype=dtype))
        if channels_last:
            args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
        with torch.inference_mode():
            for _ in range(10):
                net(*args)
            torch.cuda.synchronize()
            run: Callable[[], Any] = lambda: net(*args)  # noqa: E731
            if graph:
                cuda_graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(cuda_graph):
                    net(*args)
                run = cuda_graph.replay
            samples = []
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline or len(samples) < 50:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                run()
                end.record()
                end.synchronize()
                samples.append(begin.elapsed_time(end))
        out[label] = summarize(samples)
    return out


# ---- driver ------------------------------------------------------------------------------------
def run_step(report: dict[str, Any], out: Path, name: str, fn: Callable[[], Any]) -> None:
    """One step of a check script: its result (or its error and trace) under ``report[name]``, its
    seconds under ``report["seconds"][name]``, and the whole report written to ``out`` after it,
    so a run cut short still leaves every finished step."""
    import traceback

    started = time.monotonic()
    try:
        report[name] = fn()
    except Exception as exc:  # every step reports its own failure; the others still run
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-1500:]}
    report["seconds"][name] = round(time.monotonic() - started, 1)
    out.write_text(json.dumps(report, indent=2, default=str))
    failed = isinstance(report[name], dict) and "error" in report[name]
    print(f"{name}: {report['seconds'][name]} s{' ERROR ' + report[name]['error'] if failed else ''}", flush=True)


def run(models: Path, out: Path, duration_s: float) -> dict[str, Any]:
    from .device_state import device_state
    from .latency import fp16_sibling

    report: dict[str, Any] = {"device": device_state(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "aims": AIMS,
                              "seconds": {}}
    try:
        import onnxruntime

        report["onnxruntime"] = {"version": onnxruntime.__version__, "providers": onnxruntime.get_available_providers()}
    except ImportError as exc:
        report["onnxruntime"] = str(exc)

    def step(name: str, fn: Callable[[], Any]) -> None:
        run_step(report, out, name, fn)

    avid, alocc = str(models / "avid_256x384.onnx"), str(models / "alocc_240x360.onnx")
    avid16, alocc16 = fp16_sibling(avid) or avid, fp16_sibling(alocc) or alocc
    step("kernels", kernels_vs_reference)
    step("preprocessing_timing", preprocessing_timing)
    step("kernel_launch_time", kernel_launch_time)
    step("agreement_avid", lambda: agreement(str(models / "demo_avid.onnx")))
    step("agreement_alocc", lambda: agreement(str(models / "demo_alocc.onnx")))
    variants = [dict(cuda_graph=True, share_stream=True), dict(cuda_graph=True, share_stream=False),
                dict(cuda_graph=False, share_stream=True)]
    for k, variant in enumerate(variants):
        step(f"latency_avid_fp16_b1_v{k}", lambda v=variant: pipeline_latency(avid16, 1, (256, 384), duration_s, **v))
    best = _best_variant(report, [f"latency_avid_fp16_b1_v{k}" for k in range(len(variants))]) or variants[0]
    report["best_variant"] = best
    step("pipeline_agreement_avid", lambda: pipeline_agreement(str(models / "demo_avid.onnx"), **best))
    step("pipeline_agreement_alocc", lambda: pipeline_agreement(str(models / "demo_alocc.onnx"), **best))
    step("latency_avid_fp16_b32", lambda: pipeline_latency(avid16, 32, (256, 384), duration_s, **best))
    step("latency_avid_fp32_b1", lambda: pipeline_latency(avid, 1, (256, 384), duration_s, **best))
    wide = models / "avid_256x384_w32.onnx"
    step("latency_avid_w32_fp16_b1", lambda: pipeline_latency(fp16_sibling(str(wide)) or str(wide), 1, (256, 384), duration_s, **best))
    step("latency_avid_w32_fp16_b32", lambda: pipeline_latency(fp16_sibling(str(wide)) or str(wide), 32, (256, 384), duration_s, **best))
    step("latency_alocc_fp16_b1", lambda: pipeline_latency(alocc16, 1, (240, 360), duration_s, **best))
    step("latency_alocc_fp32_b1", lambda: pipeline_latency(alocc, 1, (240, 360), duration_s, **best))
    step("profile_avid_fp16_b32", lambda: model_profile(avid16, 32, (256, 384)))
    step("profile_avid_fp16_b1", lambda: model_profile(avid16, 1, (256, 384)))
    step("latency_avid_w8_fp16_b32", lambda: pipeline_latency(fp16_sibling(str(models / "avid_256x384_w8.onnx")) or "", 32, (256, 384),
                                                              duration_s, **best))
    step("torch_avid_b1", lambda: torch_model_only(str(models / "avid_256x384.pt"), 1, duration_s))
    step("torch_avid_b32", lambda: torch_model_only(str(models / "avid_256x384.pt"), 32, duration_s))
    step("torch_alocc_b1", lambda: torch_model_only(str(models / "alocc_240x360.pt"), 1, duration_s))
    report["verdict"] = verdict(report)
    out.write_text(json.dumps(report, indent=2, default=str))
    return report


def _best_variant(report: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    done = [report[n] for n in names if isinstance(report.get(n), dict) and "end_to_end_ms" in report[n]]
    return min(done, key=lambda r: r["end_to_end_ms"]["p50"])["variant"] if done else None


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Each aim: the measured value and whether it is met (None where the step failed)."""

    def get(*path):
        value: Any = report
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    def best_of(names, *path):
        values = [get(n, *path) for n in names]
        return min([v for v in values if v is not None], default=None)

    b1 = [f"latency_avid_fp16_b1_v{k}" for k in range(3)]
    rows = {
        "kernels_match_reference": get("kernels", "all_ok"),
        "avid_b1_p50_ms": best_of(b1, "end_to_end_ms", "p50"),
        "avid_b1_p50_ms_pinned": best_of(b1, "pinned_end_to_end_ms", "p50"),
        "avid_b32_frames_per_s": get("latency_avid_fp16_b32", "frames_per_s"),
        "avid_b32_frames_per_s_pinned": get("latency_avid_fp16_b32", "pinned_frames_per_s"),
        "alocc_b1_p50_ms": get("latency_alocc_fp16_b1", "end_to_end_ms", "p50"),
        "alocc_b1_p50_ms_pinned": get("latency_alocc_fp16_b1", "pinned_end_to_end_ms", "p50"),
        "preprocess_us": get("preprocessing_timing", "streams1_device_resident_us_per_frame"),
        "preprocess_us_b32": get("preprocessing_timing", "streams32_device_resident_us_per_frame"),
        "preprocess_speedup_vs_torch": get("preprocessing_timing", "streams1_speedup_vs_torch"),
        "preprocess_speedup_vs_torch_b32": get("preprocessing_timing", "streams32_speedup_vs_torch"),
    }
    agreements = [r.get("decision_agreement") for key in ("agreement_avid", "agreement_alocc")
                  for r in (get(key, "backends") or []) if r.get("backend") == "ort-cuda-fp16" and r.get("decision_agreement") is not None]
    rows["fp16_decision_agreement"] = min(agreements) if agreements else None
    met = {}
    for key, value in rows.items():
        if value is None or isinstance(value, str):
            met[key] = None
        elif key == "kernels_match_reference":
            met[key] = bool(value)
        else:
            aim = next(a for a in sorted(AIMS, key=len, reverse=True) if key.startswith(a))
            higher_is_better = aim in ("avid_b32_frames_per_s", "preprocess_speedup_vs_torch", "fp16_decision_agreement")
            met[key] = value >= AIMS[aim] if higher_is_better else value <= AIMS[aim]
    return {"measured": rows, "met": met}
