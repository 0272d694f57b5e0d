"""``occ-export``: a checkpoint (or an exported ONNX model) → every artifact a deployment asks for.

``model.pt`` → ``model.onnx`` (verified against PyTorch), then from that ONNX, as asked:
``model.fp16.onnx`` (verified against FP32), ``model.int8.onnx`` (Q/DQ, calibrated on normal
frames, verified against FP32), a TensorRT engine with its sidecar (FP16, or INT8 from the Q/DQ
model), a Triton model repository entry and a DeepStream configuration. Given an ``.onnx`` instead,
the checkpoint's export is skipped and nothing imports torch: a camera box builds its engine, and
calibrates INT8 on its own footage, this way. The ``.pt`` route then takes the same steps.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occ.runtime.manifest import read_manifest


class ExportUsageError(ValueError):
    """Options that cannot work together; one line, raised before anything is written."""


@dataclass
class ExportOptions:
    """What to write besides the ONNX model (see ``occ-export --help`` for each)."""

    out: Path | None = None
    opset: int = 17
    data: str | None = None
    tolerance: float = 1e-4
    fp16: bool = False
    int8: bool = False
    calib_data: str | None = None
    calib_frames: int = 128
    engine: bool = False
    batch: tuple[int, int, int] = (1, 8, 32)
    workspace_mb: int = 1024
    timing_cache: Path | None = None
    dla_core: int | None = None
    version_compatible: bool = False
    triton: Path | None = None
    triton_max_batch: int | None = None
    triton_instances: int = 1
    triton_instance_kind: str = "auto"
    deepstream: Path | None = None


@dataclass
class ExportSummary:
    """What was written, with each verification's report lines."""

    model: Path
    method: str
    written: dict[str, str] = field(default_factory=dict)
    reports: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"model": str(self.model), "method": self.method, "written": self.written, "reports": self.reports}


def parse_batch(text: str) -> tuple[int, int, int]:
    """``MIN,OPT,MAX`` with ``0 < MIN <= OPT <= MAX``."""
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) != 3 or not 0 < sizes[0] <= sizes[1] <= sizes[2]:
        raise ExportUsageError(f"--batch must be MIN,OPT,MAX with 0 < MIN <= OPT <= MAX, got {text!r}")
    return sizes  # type: ignore[return-value]


def check_options(source: Path, options: ExportOptions) -> None:
    """Refuse what cannot work before any file is written or any training is loaded."""
    if not source.is_file():
        raise ExportUsageError(f"{source}: file not found")
    if source.suffix not in (".pt", ".onnx"):
        raise ExportUsageError(f"{source}: give a checkpoint (.pt) or an exported model (.onnx)")
    if options.opset < 13:
        raise ExportUsageError(f"--opset must be >= 13 (the graphs use its operators), got {options.opset}")
    if not options.tolerance > 0:
        raise ExportUsageError(f"--tolerance must be > 0, got {options.tolerance}")
    if options.workspace_mb < 1 or options.triton_instances < 1 or (options.triton_max_batch is not None and options.triton_max_batch < 1):
        raise ExportUsageError("--workspace-mb, --triton-instances and --triton-max-batch must be >= 1")
    from .triton import INSTANCE_KINDS

    if options.triton_instance_kind not in INSTANCE_KINDS:
        raise ExportUsageError(f"--triton-instance-kind must be one of {', '.join(INSTANCE_KINDS)}, got {options.triton_instance_kind!r}")
    if options.dla_core is not None and options.dla_core < 0:
        raise ExportUsageError(f"--dla-core must be >= 0, got {options.dla_core}")
    if options.dla_core is not None and len(set(options.batch)) != 1:
        from .engine import dla_problem

        raise ExportUsageError(dla_problem("", options.batch))
    if options.int8 and not options.calib_data:
        raise ExportUsageError("--int8 needs --calib-data SPEC: normal footage to calibrate the INT8 ranges on")
    if options.calib_data and not options.int8:
        raise ExportUsageError("--calib-data goes with --int8")
    if options.calib_frames < 1:
        raise ExportUsageError(f"--calib-frames must be >= 1, got {options.calib_frames}")
    if options.calib_data and not options.calib_data.startswith("walkway") and not Path(options.calib_data).is_dir():
        raise ExportUsageError(f"{options.calib_data}: --calib-data must be a data folder (UCSD layout) or walkway[:options]")
    target = onnx_path_for(source, options)
    if source.suffix == ".onnx" and options.out is not None and options.out.resolve() != source.resolve():
        raise ExportUsageError(f"{source}: --out applies to a checkpoint's export; the ONNX model given is used as it is")
    if source.suffix == ".pt" and target.resolve() == source.resolve():
        raise ExportUsageError(f"{target}: the output would overwrite the checkpoint; choose another --out")
    if target.suffix != ".onnx":
        raise ExportUsageError(f"{target}: the exported model's name must end in .onnx")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ExportUsageError(f"{target}: folder {folder} does not exist or is not writable")
    if source.suffix == ".onnx" and options.fp16 and options.data is None:
        raise ExportUsageError(f"{source}: --fp16 from an ONNX model needs --data SPEC: real normal frames to verify it on")
    for what, folder in (("--triton", options.triton), ("--deepstream", options.deepstream)):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise ExportUsageError(f"{folder}: {what} takes a folder, and this is a file")


def onnx_path_for(source: Path, options: ExportOptions) -> Path:
    if source.suffix == ".onnx":
        return source
    return options.out if options.out is not None else source.with_suffix(".onnx")


def export_model(source: str | Path, options: ExportOptions | None = None) -> ExportSummary:
    """Write the artifacts ``options`` ask for from ``source``; see the module docstring."""
    options = options or ExportOptions()
    source = Path(source)
    check_options(source, options)
    if options.engine:  # before anything is written: an engine asked for where TensorRT is missing writes nothing
        from .engine import import_tensorrt

        import_tensorrt(source)
    samples = None
    if source.suffix == ".pt":
        from .onnx_export import export_onnx  # the one step that needs torch

        result = export_onnx(source, onnx_path_for(source, options), options.opset, options.data, options.tolerance)
        onnx_path, manifest, samples = result.path, result.manifest, result.samples
        summary = ExportSummary(onnx_path, manifest.method, {"onnx": str(onnx_path)}, {"onnx": result.report})
    else:
        onnx_path, manifest = source, read_manifest(source)
        summary = ExportSummary(onnx_path, manifest.method)
    if options.deepstream is not None:  # the method is known only now (a checkpoint's): refuse before any other artifact
        from .deepstream import deepstream_problem

        problem = deepstream_problem(manifest)
        if problem:
            raise ExportUsageError(f"{onnx_path}: {problem}")
    if options.fp16 or (options.engine and not options.int8 and _strongly_typed_tensorrt()):
        from .fp16 import export_fp16

        half = export_fp16(onnx_path, samples=samples, data_spec=options.data)
        summary.written["fp16"], summary.reports["fp16"] = str(half.path), half.report
    if options.int8:
        from .int8 import export_int8

        # verified on more frames than the checkpoint stores: INT8 errors are larger and rarer
        quantized = export_int8(onnx_path, options.calib_data, data_spec=options.data, calib_frames=options.calib_frames)
        summary.written["int8"], summary.reports["int8"] = str(quantized.path), quantized.report
    if options.engine:
        from .engine import BuildOptions, build_engine

        engine = build_engine(onnx_path, options=BuildOptions(options.batch, "int8" if options.int8 else "fp16", options.workspace_mb,
                                                              str(options.timing_cache) if options.timing_cache else None,
                                                              options.dla_core, options.version_compatible))
        summary.written["engine"] = str(engine)
    if options.triton is not None:
        from .triton import write_triton_repository

        repository = write_triton_repository(onnx_path, options.triton, max_batch_size=options.triton_max_batch,
                                             instances=options.triton_instances, instance_kind=options.triton_instance_kind)
        summary.written["triton"] = str(repository.model_dir)
    if options.deepstream is not None:
        from .deepstream import write_deepstream_config

        summary.written["deepstream"] = str(write_deepstream_config(onnx_path, options.deepstream).config_path)
    return summary


def _strongly_typed_tensorrt() -> bool:
    """TensorRT 11 builds only strongly typed networks, from the FP16 ONNX."""
    from .engine import tensorrt_major

    try:
        import tensorrt as trt
    except ImportError:
        return False
    return tensorrt_major(trt.__version__) >= 11
