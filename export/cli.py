"""``occ-export model.pt``: checkpoint → verified ONNX with the manifest embedded."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def export_command(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint written by `occ train` (.pt).")],
    out: Annotated[Optional[Path], typer.Option(help="ONNX file to write (default: beside the checkpoint, .onnx).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    with_d_of_x: Annotated[bool, typer.Option(help="ALOCC: also output D(X) (logit).")] = False,
    with_reconstruction: Annotated[bool, typer.Option(help="ALOCC: also output R(X).")] = False,
    data: Annotated[Optional[str], typer.Option(help="Verify on this data spec instead of the samples stored in the checkpoint.")] = None,
    tolerance: Annotated[float, typer.Option(help="Maximum |score difference| between PyTorch and ONNX Runtime.")] = 1e-4,
    fp16: Annotated[bool, typer.Option(help="Also write <name>.fp16.onnx (FP16 bodies, FP32 islands), verified against FP32.")] = False,
    engine: Annotated[bool, typer.Option(help="Also build an FP16 TensorRT engine <name>.engine (+ .engine.json); needs TensorRT.", rich_help_panel="TensorRT")] = False,
    batch: Annotated[str, typer.Option(help="Engine batch profile MIN,OPT,MAX (frames for AVID, patches for ALOCC).", rich_help_panel="TensorRT")] = "1,8,32",
    workspace_mb: Annotated[int, typer.Option(help="Builder workspace limit, MiB.", rich_help_panel="TensorRT")] = 1024,
    timing_cache: Annotated[Optional[Path], typer.Option(help="Timing cache file (read and updated).", rich_help_panel="TensorRT")] = None,
    dla_core: Annotated[Optional[int], typer.Option(help="Jetson DLA core, with GPU fallback.", rich_help_panel="TensorRT")] = None,
    version_compatible: Annotated[bool, typer.Option(help="Version-compatible engine.", rich_help_panel="TensorRT")] = False,
    triton: Annotated[Optional[Path], typer.Option(help="Also write a Triton model repository entry DIR/<name>/ (config.pbtxt validated against Triton's schema).", rich_help_panel="Serving")] = None,
    triton_max_batch: Annotated[Optional[int], typer.Option(help="Triton max_batch_size (default: 32 frames for AVID, 8 frames of patches for ALOCC).", rich_help_panel="Serving")] = None,
    triton_instances: Annotated[int, typer.Option(help="Triton model instances on the GPU.", rich_help_panel="Serving")] = 1,
    deepstream: Annotated[Optional[Path], typer.Option(help="Also write a DeepStream nvinfer configuration, the model and a probe example into DIR.", rich_help_panel="Serving")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export a checkpoint to one ONNX graph, verify it against PyTorch on real samples, write it atomically."""
    from occ.runtime.datasets import DatasetError
    from occ.runtime.manifest import ManifestError
    from occ.train.common import CheckpointError

    from .onnx_export import ExportError, export_fp16, export_onnx

    try:
        result = export_onnx(checkpoint, out, opset, with_d_of_x, with_reconstruction, data, tolerance)
        half = export_fp16(result.path, checkpoint_path=checkpoint) if (fp16 or engine) else None
        if engine:
            from occ.runtime.backends.tensorrt_build import BuildOptions, EngineBuildError, build_engine

            try:
                sizes = tuple(int(v) for v in batch.split(","))
                if len(sizes) != 3 or not 0 < sizes[0] <= sizes[1] <= sizes[2]:
                    raise ValueError
            except ValueError:
                err_console.print(f"[red]error:[/red] --batch must be MIN,OPT,MAX with 0 < MIN <= OPT <= MAX, got {batch!r}")
                raise typer.Exit(2)
            try:
                engine_path = build_engine(result.path, options=BuildOptions(sizes, workspace_mb, str(timing_cache) if timing_cache else None,
                                                                             dla_core, version_compatible))
                console.print(f"wrote {engine_path} and {engine_path}.json")
            except EngineBuildError as exc:
                err_console.print(f"[red]error:[/red] {exc}", highlight=False)
                raise typer.Exit(2)
    except ExportError as exc:
        for line in exc.report:
            err_console.print(line, highlight=False, markup=False)
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1)
    except (CheckpointError, ManifestError, DatasetError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2)
    serving: dict[str, str] = {}
    try:
        if triton is not None:
            from .triton import write_triton_repository

            repository = write_triton_repository(result.path, triton, max_batch_size=triton_max_batch, instances=triton_instances)
            serving["triton"] = str(repository.model_dir)
        if deepstream is not None:
            from .deepstream import write_deepstream_config

            serving["deepstream"] = str(write_deepstream_config(result.path, deepstream).config_path)
    except RuntimeError as exc:  # TritonExportError, DeepStreamExportError: one line each
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2)
    if json_out:
        payload = {"path": str(result.path), "report": result.report, "manifest": result.manifest.to_dict(), **serving}
        if half:
            payload["fp16"] = {"path": str(half.path), "report": half.report}
        print(json.dumps(payload, indent=2))
        return
    for line in result.report:
        console.print(line, highlight=False, markup=False)
    console.print(f"wrote {result.path} ({result.manifest.method}, opset {opset}, manifest embedded)")
    if half:
        for line in half.report:
            console.print(line, highlight=False, markup=False)
        console.print(f"wrote {half.path} (FP16 with FP32 islands: {half.manifest.export['fp16_nodes']} FP16 nodes, "
                      f"{half.manifest.export['fp32_nodes']} FP32)")
    if "triton" in serving:
        console.print(f"wrote Triton model {serving['triton']} (config.pbtxt validated against Triton's ModelConfig schema)")
    if "deepstream" in serving:
        console.print(f"wrote DeepStream nvinfer configuration {serving['deepstream']} (never run under DeepStream here)")


def main() -> None:
    typer.run(export_command)


if __name__ == "__main__":
    main()
