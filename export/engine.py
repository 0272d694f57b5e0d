"""ONNX → FP16 TensorRT engine, with the manifest and build facts in ``<name>.engine.json``.

TensorRT 10 (JetPack 6 ships 10.3): the FP32 ONNX is parsed into a weakly typed network, the FP16
builder flag is set and the layers outside the convolutional bodies (residual, threshold,
reductions, logits, sigmoids, comparisons) are pinned to FP32 with precision constraints.
TensorRT 11+: strongly typed only; the engine is built from ``<name>.fp16.onnx`` (written by
``occ-export --fp16``), whose types already carry the same FP32 islands.

Engines are built where they run, on the Jetson or GPU box, which has no torch: nothing here
imports torch. The ``.engine`` file stays a plain TensorRT plan (trtexec can load it). TensorRT is
never a pip dependency: JetPack and desktop installs provide it. This path was written against
the TensorRT 10 and 11 Python API documentation and has never run (no TensorRT was available
where occ was developed); its tests skip where TensorRT is missing.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occ.runtime.files import now_iso, write_atomic
from occ.runtime.manifest import Manifest, read_manifest

class EngineBuildError(RuntimeError):
    """TensorRT is missing or the build failed; one line with what to do."""


@dataclass
class BuildOptions:
    """Engine build settings.

    Args:
        batch: ``(min, opt, max)`` of the dynamic batch dimension (frames for AVID, patches for ALOCC).
        workspace_mb: builder workspace limit in MiB.
        timing_cache: file to load and save the timing cache (faster rebuilds).
        dla_core: Jetson DLA core to build for (with GPU fallback), or None.
        version_compatible: build a version-compatible engine (runs on later TensorRT versions).
    """

    batch: tuple[int, int, int] = (1, 8, 32)
    workspace_mb: int = 1024
    timing_cache: str | None = None
    dla_core: int | None = None
    version_compatible: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineBuildError("TensorRT is not installed here (it comes with JetPack or NVIDIA's TensorRT packages, "
                               "never from pip in occ); the ONNX model still runs with --backend ort-cpu/ort-cuda") from None
    return trt


def rebuild_command(onnx_path: str | Path, options: BuildOptions) -> str:
    batch = ",".join(str(b) for b in options.batch)
    return f"occ-export {onnx_path} --engine --batch {batch}" + (f" --dla-core {options.dla_core}" if options.dla_core is not None else "")


def build_engine(onnx_path: str | Path, out: str | Path | None = None, options: BuildOptions | None = None) -> Path:
    """Build ``<name>.engine`` and ``<name>.engine.json`` from an occ ONNX model."""
    trt = import_tensorrt()
    options = options or BuildOptions()
    onnx_path = Path(onnx_path)
    out = Path(out) if out else onnx_path.with_suffix(".engine")
    major = int(trt.__version__.split(".")[0])
    strongly_typed = major >= 11
    source = onnx_path
    if strongly_typed:
        source = onnx_path.with_name(onnx_path.stem + ".fp16.onnx")
        if not source.is_file():
            raise EngineBuildError(f"{onnx_path}: TensorRT {trt.__version__} builds strongly typed engines from "
                                   f"{source.name}; run occ-export --fp16 first")
    model_bytes = source.read_bytes()
    manifest: Manifest = read_manifest(source)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the default in TensorRT 10+; strong typing in 11
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{source}: TensorRT cannot parse the model: {errors[:400]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # lets the inspector report each layer's precision
    if not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        _pin_fp32_islands(trt, network)
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    profile = builder.create_optimization_profile()
    low, opt, high = options.batch
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        if shape and shape[0] == -1:
            rest = shape[1:]
            profile.set_shape(tensor.name, [low, *rest], [opt, *rest], [high, *rest])
    config.add_optimization_profile(profile)
    cache = None
    if options.timing_cache:
        path = Path(options.timing_cache)
        cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"{source}: TensorRT build failed (see the TensorRT log above)")
    plan_bytes = bytes(plan)
    if cache is not None:
        write_atomic(Path(options.timing_cache), bytes(config.get_timing_cache().serialize()))
    layers = _layer_precisions(trt, logger, plan_bytes)
    sidecar = {
        "manifest": json.loads(manifest.to_json()),
        "tensorrt_version": trt.__version__,
        "strongly_typed": strongly_typed,
        "cuda_version": _cuda_version(),
        "gpu": _gpu_identity(),
        "onnx": source.name,
        "onnx_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "batch_profile": list(options.batch),
        "dla_core": options.dla_core,
        "version_compatible": options.version_compatible,
        "layer_precisions": layers,
        "built": now_iso(),
        "rebuild": rebuild_command(onnx_path, options),
    }
    write_atomic(out, plan_bytes)
    write_atomic(out.with_name(out.name + ".json"), json.dumps(sidecar, indent=2).encode())
    return out


def _pin_fp32_islands(trt, network) -> None:
    """TensorRT 10: keep every layer outside the convolutional bodies in FP32."""
    body = {trt.LayerType.CONVOLUTION, trt.LayerType.DECONVOLUTION, trt.LayerType.POOLING, trt.LayerType.CONCATENATION,
            trt.LayerType.SCALE, trt.LayerType.NORMALIZATION}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in body:
            continue
        if layer.type == trt.LayerType.ACTIVATION:
            layer.__class__ = trt.IActivationLayer  # the base ILayer hides the activation kind
            if layer.type != trt.ActivationType.SIGMOID:
                continue  # ReLU, LeakyReLU and tanh belong to the bodies; sigmoids stay FP32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in (trt.float32, trt.float16):
                layer.precision = trt.float32
                layer.set_output_type(j, trt.float32)


def _layer_precisions(trt, logger, plan: bytes) -> list[dict[str, Any]]:
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(plan)
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    out = []
    for layer in info.get("Layers", []):
        if isinstance(layer, dict):
            outputs = layer.get("Outputs", [])
            out.append({"name": layer.get("Name"), "type": layer.get("LayerType"),
                        "output_types": [o.get("Format/Datatype") for o in outputs if isinstance(o, dict)]})
    return out


def _cuda_version() -> str | None:
    try:
        from occ.runtime.cuda.driver import bindings, check

        driver, _ = bindings()
        version = check(driver.cuDriverGetVersion(), "cuDriverGetVersion")
        return f"{version // 1000}.{version % 1000 // 10}"
    except Exception:  # informational only
        return None


def _gpu_identity() -> dict[str, Any] | None:
    try:
        from occ.runtime.cuda.driver import Context

        context = Context()
        return {"name": context.name, "compute_capability": context.arch}
    except Exception:  # informational only
        return None
