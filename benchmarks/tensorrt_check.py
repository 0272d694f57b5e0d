"""The checks for the day TensorRT is present: run it first on a Jetson or GPU box, and send the JSON.

    python -m occ.benchmarks.tensorrt_check --alocc alocc.onnx --avid avid.onnx --out tensorrt_check.json

occ's TensorRT code was written against NVIDIA's documentation and driven in the test suite only
through a fake of the ``tensorrt`` module (tests/test_tensorrt_fake.py), which checks calls, never
results. These steps settle what the fake cannot, in this order, each reporting its own failure
without stopping the others; the JSON is rewritten after every step:

1. ``engines``: FP16 and INT8 engines for both methods (batch profile 1,2,4 frames), each run on the
   walkway test clips through the ``tensorrt`` backend and compared with ONNX Runtime CPU FP32
   (decision agreement, largest score difference, AVID mask IoU);
2. ``version_compatible``: an AVID engine built version-compatible, loaded back and run;
3. ``attach_fp16_io``: a trtexec engine with FP16 I/O (``--inputIOFormats=fp16:chw`` for every
   input), through ``occ engine attach``, then the GPU pipeline's TensorRT branch against the CPU
   detector (α and ζ fed in FP16);
4. ``inspector_keys``: the keys the engine inspector's JSON really has (TensorRT 11 splits
   ``Format/Datatype``), with the first layers verbatim;
5. ``int8_convtranspose``: AVID's INT8 engine's deconvolution layers and the types the inspector
   gives them (whether TensorRT runs the Q/DQ ConvTranspose in INT8).

Needs TensorRT, cuda-python and an NVIDIA GPU; no torch (the ONNX models come from a workstation:
``occ export model.pt``). FP16 and INT8 siblings are written beside copies of the models in
``--work`` (INT8 calibrated on the walkway's normal clips).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .device_check import run_step

WALKWAY = "walkway"
BATCH = (1, 2, 4)


def _clips():
    from occ.evaluation.datasets.spec import load_video_data

    return load_video_data(WALKWAY, splits=("test",)).test


def compare(onnx_path: Path, engine: Path, gpu_pipeline: bool = False) -> dict[str, Any]:
    """An engine against ONNX Runtime CPU FP32, frame by frame over the walkway test clips."""
    from occ.runtime.detector import open_detector

    reference = open_detector(str(onnx_path), "ort-cpu")
    candidate = open_detector(str(engine), "tensorrt", preprocess="gpu" if gpu_pipeline else "cpu")
    decisions, scores, ious = [], [], []
    for clip in _clips():
        for want, got in zip(reference.process_clip(clip.frames), candidate.process_clip(clip.frames)):
            decisions.append(want.decision == got.decision)
            scores.append(abs(want.score - got.score))
            if want.mask is not None and got.mask is not None:
                union = np.logical_or(want.mask, got.mask).sum()
                ious.append(1.0 if union == 0 else float(np.logical_and(want.mask, got.mask).sum() / union))
    reference.close()
    candidate.close()
    return {"frames": len(decisions), "decision_agreement": float(np.mean(decisions)), "score_max_abs": float(np.max(scores)),
            "mask_iou_mean": float(np.mean(ious)) if ious else None,
            "sidecar": json.loads(engine.with_name(engine.name + ".json").read_text())}


def build_and_compare(onnx_path: Path, precision: str) -> dict[str, Any]:
    import tensorrt as trt

    from occ.export.engine import BuildOptions, build_engine, tensorrt_major
    from occ.export.fp16 import export_fp16
    from occ.export.int8 import export_int8

    if precision == "int8":
        export_int8(onnx_path, WALKWAY, calib_frames=64)
    elif tensorrt_major(trt.__version__) >= 11:  # strongly typed only: FP16 comes from the .fp16.onnx
        export_fp16(onnx_path, data_spec=WALKWAY)
    out = onnx_path.with_name(f"{onnx_path.stem}.{precision}.engine")
    engine = build_engine(onnx_path, out, BuildOptions(batch=BATCH, precision=precision))
    return compare(onnx_path, engine)


def version_compatible(onnx_path: Path) -> dict[str, Any]:
    from occ.export.engine import BuildOptions, build_engine

    engine = build_engine(onnx_path, onnx_path.with_name(f"{onnx_path.stem}.vc.engine"), BuildOptions(batch=BATCH, version_compatible=True))
    return compare(onnx_path, engine)


def trtexec() -> str | None:
    return shutil.which("trtexec") or next((p for p in ("/usr/src/tensorrt/bin/trtexec",) if Path(p).is_file()), None)


def attach_fp16_io(onnx_path: Path) -> dict[str, Any]:
    import onnx

    from occ.export.engine import attach_engine, onnx_tensors
    from occ.runtime.manifest import read_manifest
    from occ.runtime.backends.base import expected_input

    tool = trtexec()
    if tool is None:
        return {"skipped": "trtexec not found (JetPack: /usr/src/tensorrt/bin/trtexec)"}
    graph = onnx_tensors(onnx.load(str(onnx_path)))
    inputs = [t for t in graph if t.mode == "input"]
    name, sample = expected_input(read_manifest(onnx_path))
    dims = "x".join(str(d) for d in sample)
    engine = onnx_path.with_name(f"{onnx_path.stem}.trtexec.engine")
    command = [tool, f"--onnx={onnx_path}", f"--saveEngine={engine}", "--fp16", "--profilingVerbosity=detailed",
               "--inputIOFormats=" + ",".join("fp16:chw" for _ in inputs),
               *(f"--{kind}Shapes={name}:{b}x{dims}" for kind, b in zip(("min", "opt", "max"), BATCH))]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        return {"command": command, "error": run.stdout[-2000:] + run.stderr[-2000:]}
    _, notes = attach_engine(engine, onnx_path)
    return {"command": command, "attach_notes": notes, "gpu_pipeline": compare(onnx_path, engine, gpu_pipeline=True)}


def inspector_keys(engine: Path) -> dict[str, Any]:
    import tensorrt as trt

    from occ.runtime.backends.tensorrt import deserialize_engine

    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    _, loaded = deserialize_engine(trt, engine.read_bytes(), str(engine), bool(sidecar.get("version_compatible")))
    info = json.loads(loaded.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = [layer for layer in info.get("Layers", []) if isinstance(layer, dict)]
    output_keys = sorted({key for layer in layers for o in layer.get("Outputs", []) if isinstance(o, dict) for key in o})
    return {"top_level_keys": sorted(info), "layer_keys": sorted({key for layer in layers for key in layer}),
            "output_keys": output_keys, "first_layers": layers[:3], "sidecar_output_types": sidecar["layer_precisions"][:5]}


def int8_convtranspose(engine: Path) -> dict[str, Any]:
    sidecar = json.loads(engine.with_name(engine.name + ".json").read_text())
    deconvolutions = [layer for layer in sidecar["layer_precisions"]
                      if "deconv" in f"{layer['type']} {layer['name']}".lower() or "convtranspose" in f"{layer['name']}".lower()]
    return {"layers": deconvolutions, "int8": [layer["name"] for layer in deconvolutions if "int8" in " ".join(map(str, layer["output_types"])).lower()]}


def run(alocc: Path, avid: Path, work: Path, out: Path) -> dict[str, Any]:
    from .device_state import device_state

    work.mkdir(parents=True, exist_ok=True)
    models = {"alocc": Path(shutil.copy(alocc, work / "alocc.onnx")), "avid": Path(shutil.copy(avid, work / "avid.onnx"))}
    report: dict[str, Any] = {"device": device_state(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": {}}
    try:
        import tensorrt as trt

        report["tensorrt"] = trt.__version__
    except ImportError as exc:
        report["tensorrt"] = f"not importable: {exc}"

    def step(name: str, fn: Callable[[], Any]) -> None:
        run_step(report, out, name, fn)

    for method, path in models.items():
        for precision in ("fp16", "int8"):
            step(f"engines_{method}_{precision}", lambda p=path, q=precision: build_and_compare(p, q))
    step("version_compatible", lambda: version_compatible(models["avid"]))
    step("attach_fp16_io", lambda: attach_fp16_io(models["avid"]))
    step("inspector_keys", lambda: inspector_keys(work / "avid.fp16.engine"))
    step("int8_convtranspose", lambda: int8_convtranspose(work / "avid.int8.engine"))
    return report


def main() -> None:
    import typer

    def command(alocc: Path = typer.Option(..., help="An ALOCC model exported by occ export (.onnx)."),
                avid: Path = typer.Option(..., help="An AVID model exported by occ export (.onnx)."),
                work: Path = typer.Option(Path("tensorrt_check"), help="Folder for the model copies, their siblings and engines."),
                out: Path = typer.Option(Path("tensorrt_check.json"), help="The JSON report, rewritten after every step.")) -> None:
        """Build, load and compare TensorRT engines as occ does; send the JSON with any report."""
        run(alocc, avid, work, out)

    typer.run(command)


if __name__ == "__main__":
    main()
