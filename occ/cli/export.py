"""``occ-export`` (also ``occ export``): a checkpoint or an ONNX model → verified deployment artifacts."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import JsonOption, OneLineCommand, QuietOption, check_outputs, console, export_failures, one_line_errors, report

TENSORRT = "TensorRT"
SERVING = "Serving"


def export(
    model: Annotated[Path, typer.Argument(help="A checkpoint from `occ train` (.pt), or an exported model (.onnx): then no torch is needed.")],
    out: Annotated[Optional[Path], typer.Option(help="ONNX file to write from a checkpoint (default: beside it, .onnx).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    data: Annotated[Optional[str], typer.Option(help="Verify on the first frames of this data spec's test clips (normal footage: "
                                                     "of its validation part) instead of the samples stored in the checkpoint.")] = None,
    tolerance: Annotated[float, typer.Option(help="Largest |score difference| allowed between PyTorch and ONNX Runtime.")] = 1e-4,
    fp16: Annotated[bool, typer.Option(help="Also write <name>.fp16.onnx (FP16 bodies, FP32 islands), verified against FP32.")] = False,
    int8: Annotated[bool, typer.Option(help="Also write <name>.int8.onnx (explicit Q/DQ INT8 convolutions, FP32 islands), calibrated on "
                                            "--calib-data and verified against FP32; with --engine the engine is built from it.")] = False,
    calib_data: Annotated[Optional[str], typer.Option(help="Normal data that calibrates --int8: footage (its calibration part, the last "
                                                           "20 %; docs/data.md), a UCSD-layout folder (its Train clips; Test/ not needed) "
                                                           "or walkway[:options].")] = None,
    calib_frames: Annotated[int, typer.Option(help="Normal frames to calibrate --int8 on, spread over the clips.")] = 128,
    engine: Annotated[bool, typer.Option(help="Also build a TensorRT engine <name>.engine (+ .engine.json): FP16, or INT8 with --int8; "
                                              "needs TensorRT.", rich_help_panel=TENSORRT)] = False,
    batch: Annotated[str, typer.Option(help="Engine batch profile MIN,OPT,MAX in frames (an ALOCC frame is all its patches).",
                                       rich_help_panel=TENSORRT)] = "1,8,32",
    workspace_mb: Annotated[int, typer.Option(help="Builder workspace limit, MiB.", rich_help_panel=TENSORRT)] = 1024,
    timing_cache: Annotated[Optional[Path], typer.Option(help="Timing cache file (read and updated).", rich_help_panel=TENSORRT)] = None,
    dla_core: Annotated[Optional[int], typer.Option(help="Jetson DLA core to build for, with GPU fallback (layers DLA cannot run go to "
                                                               "the GPU; the sidecar lists them). Needs a fixed --batch N,N,N and a "
                                                               "TensorRT with DLA (10.7 or older, or 11.4+). Default: none (GPU only).",
                                                          rich_help_panel=TENSORRT)] = None,
    version_compatible: Annotated[bool, typer.Option(help="Build a version-compatible engine: it also runs on later TensorRT "
                                                               "versions of the same major (and 10 → 11), a little slower. Default: off "
                                                               "(the engine runs only on the TensorRT version that built it).",
                                                          rich_help_panel=TENSORRT)] = False,
    triton: Annotated[Optional[Path], typer.Option(help="Also write a Triton model repository entry DIR/<name>/ (config.pbtxt validated against Triton's schema).", rich_help_panel=SERVING)] = None,
    triton_max_batch: Annotated[Optional[int], typer.Option(help="Triton max_batch_size (default: 32 frames for AVID, 8 frames of patches for ALOCC).", rich_help_panel=SERVING)] = None,
    triton_instances: Annotated[int, typer.Option(help="Triton model instances (per GPU when they run on GPUs).", rich_help_panel=SERVING)] = 1,
    triton_instance_kind: Annotated[str, typer.Option(help="Where Triton runs the instances: auto (every GPU of the server, its CPU when it "
                                                          "has none), gpu (refused by a server without one) or cpu.", rich_help_panel=SERVING)] = "auto",
    deepstream: Annotated[Optional[Path], typer.Option(help="Also write a DeepStream nvinfer configuration, an FP32 model with the "
                                                                "manifest's α and ζ folded in, and a probe into DIR (AVID only; write it "
                                                                "again after thresholds change). Default: none.", rich_help_panel=SERVING)] = None,
    force: Annotated[bool, typer.Option("--force", help="Export a checkpoint over a model that holds a calibration of another "
                                                        "checkpoint (refused otherwise; one of the same checkpoint keeps its "
                                                        "calibration). Default: off.")] = False,
    json_path: JsonOption = None,
    quiet: QuietOption = False,
) -> None:
    """Export a checkpoint to one ONNX graph verified against PyTorch on real samples, and any other artifact asked for.
    Given an exported .onnx instead, build the other artifacts from it without torch (an engine on the Jetson itself)."""
    from occ.export.engine import EngineBuildError
    from occ.export.workflow import ExportOptions, export_model, parse_batch

    check_outputs({"--json": json_path}, {"model": model})
    with one_line_errors(EngineBuildError, RuntimeError):
        options = ExportOptions(out=out, opset=opset, data=data, tolerance=tolerance, fp16=fp16, int8=int8, calib_data=calib_data,
                                calib_frames=calib_frames, engine=engine, batch=parse_batch(batch),
                                workspace_mb=workspace_mb, timing_cache=timing_cache, dla_core=dla_core,
                                version_compatible=version_compatible, triton=triton, triton_max_batch=triton_max_batch,
                                triton_instances=triton_instances, triton_instance_kind=triton_instance_kind, deepstream=deepstream,
                                force=force)
        with export_failures():
            summary = export_model(model, options)

    def show(result: dict) -> None:
        for step, lines in result["reports"].items():
            for line in lines:
                console.print(f"{step}: {line}", highlight=False, markup=False)
        for step, path in result["written"].items():
            console.print(f"wrote {path} ({step})", highlight=False, markup=False)

    report(summary.to_json(), json_path, quiet, show)


app = typer.Typer(name="occ-export", add_completion=False, pretty_exceptions_enable=False, help=export.__doc__)
app.command(cls=OneLineCommand)(export)


def main() -> None:
    app()
