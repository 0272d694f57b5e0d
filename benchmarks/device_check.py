"""One script that checks everything GPU-side and writes one JSON (run it on a machine with a GPU).

    python -m occ.benchmarks.device_check --out device_check.json [--alocc m.onnx --avid v.onnx]

1. CUDA preprocessing kernels against the numpy reference (every temporal rule, FP32 and FP16,
   patch extraction, NV12 luma), with the tolerance of runtime/gpu/preprocess.py;
2. preprocessing time per 240×360 frame with CUDA events, and the same steps in PyTorch ops;
3. ONNX Runtime CUDA FP32 / FP16 decisions against ONNX Runtime CPU FP32 on the walkway test set;
4. end-to-end latency, uint8 frame in host memory → score (and AVID mask) in host memory: AVID at
   256×384 (batch 1 and 32) and ALOCC on one 240×360 frame as its patch batch, on every backend
   present (TensorRT when importable).

Without ``--alocc``/``--avid`` it trains small models on the walkway first (needs torch). Nothing
here has been run in this project's workplace (no GPU there); see the README.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _walkway(height: int, width: int, frames: int = 60):
    from occ.runtime.datasets import WalkwayConfig, generate_walkway

    return generate_walkway(WalkwayConfig(height=height, width=width, train_clips=3, test_clips=3, frames_per_clip=frames))


def kernels_vs_reference() -> dict[str, Any]:
    from occ.runtime.gpu.cuda import Context, PinnedBuffer, bindings, check
    from occ.runtime.gpu.preprocess import GpuPreprocessor
    from occ.runtime.manifest import InputSpec, PatchSpec
    from occ.runtime.preprocess import FramePreprocessor, PatchGrid

    context = Context()
    driver, _ = bindings()
    rng = np.random.default_rng(0)
    results = {"gpu": context.name, "arch": context.arch}
    for temporal, channels in (("avid_triplet", 3), ("frame_diff", 2), ("none", 1)):
        for precision in ("fp32", "fp16"):
            spec = InputSpec(height=240, width=352, channels=channels, temporal=temporal)
            gpu = GpuPreprocessor(spec, (480, 720, 3), precision=precision, context=context)
            cpu = FramePreprocessor(spec)
            dtype = np.float16 if precision == "fp16" else np.float32
            host = PinnedBuffer((channels, 240, 352), dtype)
            worst = 0.0
            for _ in range(8):
                frame = rng.integers(0, 256, (480, 720, 3), dtype=np.uint8)
                pointer = gpu.push(frame)
                check(driver.cuMemcpyDtoHAsync(host.array.ctypes.data, pointer, host.nbytes, gpu.stream.handle), "cuMemcpyDtoHAsync")
                gpu.stream.synchronize()
                worst = max(worst, float(np.abs(host.array.astype(np.float32) - cpu.push(frame)).max()))
            results[f"{temporal}_{precision}_max_abs"] = worst
            gpu.free()
            host.free()
    spec = InputSpec(height=240, width=360, channels=2, temporal="frame_diff")
    patches = PatchSpec(size=30, stride=15)
    gpu = GpuPreprocessor(spec, (240, 360, 1), patches=patches, context=context)
    cpu = FramePreprocessor(spec)
    grid = PatchGrid.from_spec(patches, spec)
    host = PinnedBuffer((grid.count, 2, 30, 30), np.float32)
    frame = rng.integers(0, 256, (240, 360, 1), dtype=np.uint8)
    pointer = gpu.push(frame)
    check(driver.cuMemcpyDtoHAsync(host.array.ctypes.data, pointer, host.nbytes, gpu.stream.handle), "cuMemcpyDtoHAsync")
    gpu.stream.synchronize()
    results["patches_max_abs"] = float(np.abs(host.array - grid.extract(cpu.push(frame[:, :, 0]))).max())
    results["tolerance"] = "1e-3 grey levels before normalization (FP32); FP16 adds 2^-11 relative"
    results["nv12_reference"] = "luma plane, limited range expanded: cv2.COLOR_YUV2GRAY_NV12 differs by that expansion"
    return results


def preprocessing_timing(iterations: int = 500) -> dict[str, Any]:
    from occ.runtime.gpu.cuda import Context, DeviceBuffer, Event
    from occ.runtime.gpu.preprocess import GpuPreprocessor
    from occ.runtime.manifest import InputSpec

    context = Context()
    spec = InputSpec(height=240, width=352, channels=3, temporal="avid_triplet")
    gpu = GpuPreprocessor(spec, (240, 360, 1), precision="fp16", context=context)
    frame = np.random.default_rng(0).integers(0, 256, (240, 360, 1), dtype=np.uint8)
    device_frame = DeviceBuffer(frame.nbytes)
    device_frame.upload(frame, gpu.stream)
    start, stop = Event(), Event()
    for _ in range(50):
        gpu.push(device_frame=device_frame)
    start.record(gpu.stream)
    for _ in range(iterations):
        gpu.push(device_frame=device_frame)
    stop.record(gpu.stream)
    kernels_us = stop.elapsed_ms(start) * 1000 / iterations
    start.record(gpu.stream)
    for _ in range(iterations):
        gpu.push(frame)
    stop.record(gpu.stream)
    with_upload_us = stop.elapsed_ms(start) * 1000 / iterations
    out = {"frame": "240x360 uint8 → 3×240×352 FP16", "device_resident_us": kernels_us, "with_host_upload_us": with_upload_us,
           "aim_us": 15}
    try:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(frame[:, :, 0]).cuda()
        ring = [torch.zeros(240, 352, device="cuda") for _ in range(5)]
        previous = torch.zeros(240, 352, device="cuda")

        def torch_step(t: int) -> torch.Tensor:
            nonlocal previous
            resized = F.interpolate(x[None, None].float(), size=(240, 352), mode="bilinear", align_corners=False)[0, 0]
            ring[t % 5] = (resized + previous) * 0.5
            previous = resized
            return ((torch.stack([ring[(t - 4) % 5], ring[(t - 2) % 5], ring[t % 5]]) - 127.5) / 127.5).half()

        for t in range(50):
            torch_step(t)
        torch.cuda.synchronize()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for t in range(iterations):
            torch_step(t)
        end.record()
        torch.cuda.synchronize()
        out["torch_ops_us"] = begin.elapsed_time(end) * 1000 / iterations
        out["speedup_vs_torch"] = out["torch_ops_us"] / kernels_us
    except Exception as exc:  # torch without CUDA: the comparison is skipped and says why
        out["torch_ops_us"] = f"skipped: {type(exc).__name__}: {exc}"
    gpu.free()
    device_frame.free()
    return out


def _train_models(workdir: Path) -> tuple[str, str]:
    from rich.console import Console

    from occ.export.onnx_export import export_fp16, export_onnx
    from occ.runtime.datasets.spec import VideoData
    from occ.train.train_alocc import AloccConfig, train_alocc
    from occ.train.train_alocc import video_data as alocc_video
    from occ.train.train_avid import AvidConfig, train_avid
    from occ.train.train_avid import video_data as avid_video

    quiet = Console(file=io.StringIO())
    data = _walkway(240, 360)
    video = VideoData("walkway 240x360", data.train, data.test)
    alocc_cfg = AloccConfig(height=240, width=360, patch_size=30, stride=15, epochs=2)
    train_alocc(alocc_video(video.train, alocc_cfg, video.description), alocc_cfg, workdir / "alocc.pt", quiet)
    avid_cfg = AvidConfig(height=256, width=384, epochs=2, base_width=32)
    train_avid(avid_video(video.train, avid_cfg, video.description), avid_cfg, workdir / "avid.pt", quiet)
    for name in ("alocc", "avid"):
        export_fp16(export_onnx(workdir / f"{name}.pt").path, checkpoint_path=workdir / f"{name}.pt")
    return str(workdir / "alocc.onnx"), str(workdir / "avid.onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alocc", help="exported ALOCC model (240x360 frames); trained when absent")
    parser.add_argument("--avid", help="exported AVID model (256x384 frames); trained when absent")
    parser.add_argument("--workdir", default="runs/device_check")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per latency measurement")
    parser.add_argument("--out", default="device_check.json")
    args = parser.parse_args()
    from .device_state import device_state
    from .latency import run_latency, validate

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": device_state(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    def step(name: str, fn) -> None:
        started = time.monotonic()
        try:
            report[name] = fn()
        except Exception as exc:  # every step reports its own failure; the others still run
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        report.setdefault("seconds", {})[name] = round(time.monotonic() - started, 1)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(f"{name}: done", flush=True)

    step("kernels", kernels_vs_reference)
    step("preprocessing_timing", preprocessing_timing)
    alocc, avid = args.alocc, args.avid
    if not (alocc and avid):
        alocc, avid = _train_models(workdir)
    walkway = "walkway:height=240,width=360,train_clips=1,test_clips=5,frames_per_clip=100"
    step("agreement_avid", lambda: validate(avid, walkway))
    step("agreement_alocc", lambda: validate(alocc, walkway))
    step("latency_avid_256x384", lambda: run_latency(avid, None, [1, 32], 1.0, args.duration, (256, 384)))
    step("latency_alocc_240x360", lambda: run_latency(alocc, None, [1], 1.0, args.duration, (240, 360)))
    print(json.dumps({k: v for k, v in report.items() if k != "device"}, indent=2, default=str)[:4000])


if __name__ == "__main__":
    main()
