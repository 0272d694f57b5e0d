"""ONNX → TensorRT engine, with the manifest and build facts in ``<name>.engine.json``; and the
sidecar for an engine built elsewhere (``occ engine attach``).

FP16, TensorRT 10 (JetPack 6 ships 10.3): the FP32 ONNX is parsed into a weakly typed network, the
FP16 builder flag is set and the layers outside the convolutional bodies (residual, threshold,
reductions, logits, sigmoids, comparisons) are pinned to FP32 with precision constraints.
FP16, TensorRT 11+: strongly typed only; the engine is built from ``<name>.fp16.onnx`` (written by
``occ-export --fp16``), whose types already carry the same FP32 islands.
INT8, both: a strongly typed network from ``<name>.int8.onnx`` (explicit Q/DQ, ``occ-export --int8``).

The batch profile counts frames; for ALOCC the ``patches`` input's profile is that times the
frame's patch count. Engines are built where they run, on the Jetson or GPU box, which has no
torch: nothing here imports torch. The ``.engine`` file stays a plain TensorRT plan (trtexec can
load it). TensorRT is never a pip dependency: JetPack and desktop installs provide it. The
TensorRT calls were written against the TensorRT 10 and 11 Python API documentation and have never
run against a real TensorRT (none was available where occ was developed): tests/test_tensorrt_fake.py
drives them through a recording fake of the documented API (calls, not results), the parity tests
skip where TensorRT is missing, and benchmarks/tensorrt_check.py runs them for real. The pure parts
(sources, profiles, the binding check, the DLA and version rules) are tested everywhere.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occ.runtime.backends.base import BackendError
from occ.runtime.backends.tensorrt import deserialize_engine, numpy_dtype, version_tuple
from occ.runtime.files import now_iso, write_atomic
from occ.runtime.manifest import Manifest, read_manifest

class EngineBuildError(RuntimeError):
    """TensorRT is missing or the build failed; one line with what to do."""


ENGINE_PRECISIONS = ("fp16", "int8")


@dataclass
class BuildOptions:
    """Engine build settings.

    Args:
        batch: ``(min, opt, max)`` of the batch profile in frames (an ALOCC frame is all its patches:
            the profile of the ``patches`` input is these times the frame's patch count).
        precision: ``fp16`` (FP16 with FP32 islands) or ``int8`` (from ``<name>.int8.onnx``, Q/DQ).
        workspace_mb: builder workspace limit in MiB.
        timing_cache: file to load and save the timing cache (faster rebuilds).
        dla_core: Jetson DLA core to build for (with GPU fallback), or None; needs a fixed batch.
        version_compatible: build a version-compatible engine (runs on later TensorRT versions; the
            plan then carries TensorRT's lean runtime, which every loader must allow).
    """

    batch: tuple[int, int, int] = (1, 8, 32)
    precision: str = "fp16"
    workspace_mb: int = 1024
    timing_cache: str | None = None
    dla_core: int | None = None
    version_compatible: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def import_tensorrt(where: str | Path | None = None):
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineBuildError((f"{where}: " if where else "") + "TensorRT is not installed here (it comes with JetPack or NVIDIA's TensorRT packages, "
                               "never from pip in occ); the ONNX model still runs with --backend ort-cpu/ort-cuda") from None
    return trt


def check_precision(precision: str) -> None:
    if precision not in ENGINE_PRECISIONS:
        raise EngineBuildError(f"engine precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {precision!r}")


def tensorrt_major(version: str) -> int:
    return int(version.split(".")[0])


def rebuild_command(onnx_path: str | Path, options: BuildOptions) -> str:
    batch = ",".join(str(b) for b in options.batch)
    return (f"occ export {onnx_path} --engine --batch {batch}" + (" --int8 --calib-data SPEC" if options.precision == "int8" else "")
            + (f" --dla-core {options.dla_core}" if options.dla_core is not None else "")
            + (" --version-compatible" if options.version_compatible else ""))


def dla_problem(tensorrt_version: str, batch: tuple[int, int, int], dla_cores: int | None = None, dla_core: int = 0) -> str | None:
    """Why a DLA build cannot work, or None.

    - DLA runs static shapes only, so the batch profile must be fixed (min = opt = max): TensorRT
      docs, "DLA Supported Layers and Restrictions" (dynamic dimensions are not supported).
    - TensorRT 10.7 was the last 10.x release with DLA, and 11.0 to 11.3 have none: TensorRT 11.3
      docs, "Building and Launching the Loadable".
    - The builder's own count (``IBuilder.num_DLA_cores``) settles the rest: 0 on a GPU without DLA.
    """
    if len(set(batch)) != 1:
        return f"--dla-core needs a fixed batch (DLA runs static shapes only): --batch N,N,N, got {','.join(map(str, batch))}"
    version = version_tuple(tensorrt_version)[:2]
    if (10, 8) <= version < (11, 0) or (11, 0) <= version < (11, 4):
        return (f"TensorRT {tensorrt_version} has no DLA support (10.7 was the last 10.x release with DLA; 11.0 to 11.3 have none); "
                "build without --dla-core")
    if dla_cores is not None and not 0 <= dla_core < dla_cores:
        have = "no DLA core" if dla_cores == 0 else f"DLA cores 0 to {dla_cores - 1}"
        return f"--dla-core {dla_core}: this device has {have}"
    return None


def engine_source(onnx_path: Path, precision: str, strongly_typed: bool) -> Path:
    """The ONNX file TensorRT parses: the Q/DQ ``.int8.onnx`` for INT8; for FP16 the FP32 model
    (TensorRT 10: FP16 flag, FP32 layers pinned) or the FP16-typed ``.fp16.onnx`` (strongly typed)."""
    check_precision(precision)
    if precision == "int8":
        source = onnx_path.with_name(onnx_path.stem + ".int8.onnx")
        if not source.is_file():
            raise EngineBuildError(f"{onnx_path}: an INT8 engine is built from {source.name}; run occ-export --int8 --calib-data SPEC")
        return source
    if not strongly_typed:
        return onnx_path
    source = onnx_path.with_name(onnx_path.stem + ".fp16.onnx")
    if not source.is_file():
        raise EngineBuildError(f"{onnx_path}: strongly typed TensorRT builds FP16 engines from {source.name}; run occ-export --fp16 first")
    return source


def profile_shapes(manifest: Manifest, batch: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Optimization profile ``{input: (min, opt, max shapes)}`` for a batch of frames: AVID's
    ``frames`` are frames; ALOCC's ``patches`` count each frame's patches (one 240×360 frame is 40
    to 345 patches, so a profile in patches would not hold one frame)."""
    from occ.runtime.backends.base import expected_input, samples_per_frame

    name, sample = expected_input(manifest)
    per_frame = samples_per_frame(manifest)
    return {name: tuple((b * per_frame, *sample) for b in batch)}


def create_network(trt, builder, strongly_typed: bool):
    """A network definition; strongly typed where asked (TensorRT 11 builds only those; TensorRT 10
    needs the creation flag, which TensorRT 11 may no longer list)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed and flag is not None:
        return builder.create_network(1 << int(flag))
    return builder.create_network(0)  # explicit batch is the default in TensorRT 10+


def build_engine(onnx_path: str | Path, out: str | Path | None = None, options: BuildOptions | None = None) -> Path:
    """Build ``<name>.engine`` and ``<name>.engine.json`` from an occ ONNX model.

    FP16: TensorRT 10 parses the FP32 model, sets the FP16 flag and pins the layers outside the
    convolutional bodies to FP32; TensorRT 11 (strongly typed only) parses ``<name>.fp16.onnx``.
    INT8: both parse ``<name>.int8.onnx`` as a strongly typed network (explicit quantization:
    TensorRT's guidance is no precision flags with Q/DQ), whose float parts carry their own types.
    """
    options = options or BuildOptions()
    onnx_path = Path(onnx_path)
    out = Path(out) if out else onnx_path.with_suffix(".engine")
    check_precision(options.precision)  # before TensorRT: a wrong precision is refused anywhere
    trt = import_tensorrt(onnx_path)
    if options.dla_core is not None:
        problem = dla_problem(trt.__version__, options.batch, dla_core=options.dla_core)
        if problem:
            raise EngineBuildError(f"{onnx_path}: {problem}")
    strongly_typed = tensorrt_major(trt.__version__) >= 11 or options.precision == "int8"
    source = engine_source(onnx_path, options.precision, strongly_typed)
    model_bytes = source.read_bytes()
    manifest: Manifest = read_manifest(source)
    shapes = profile_shapes(manifest, options.batch)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = create_network(trt, builder, strongly_typed)
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
    gpu_fallback: list[str] = []
    if options.dla_core is not None:
        problem = dla_problem(trt.__version__, options.batch, builder.num_DLA_cores, options.dla_core)
        if problem:
            raise EngineBuildError(f"{onnx_path}: {problem}")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        # layers DLA cannot run (the FP32 islands, INT8's float parts) fall back to the GPU silently: name them
        gpu_fallback = [network.get_layer(i).name for i in range(network.num_layers) if not config.can_run_on_DLA(network.get_layer(i))]
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name in shapes:
            profile.set_shape(tensor.name, *shapes[tensor.name])
        elif -1 in tuple(tensor.shape):
            raise EngineBuildError(f"{source}: input {tensor.name} has a dynamic shape {tuple(tensor.shape)} occ has no profile for")
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
    try:  # read back as the runtime will: a version-compatible plan needs host code allowed, a DLA plan its core
        # the runtime stays referenced while the engine is used (TensorRT: a runtime must outlive its engines)
        runtime, engine = deserialize_engine(trt, plan_bytes, str(source), options.version_compatible, options.dla_core, logger)
    except BackendError as exc:
        raise EngineBuildError(f"the build succeeded but {exc}; no engine was written") from None
    layers = _layer_precisions(trt, engine)
    sidecar = {
        "manifest": json.loads(manifest.to_json()),
        "tensorrt_version": trt.__version__,
        "strongly_typed": strongly_typed,
        "precision": options.precision,
        "cuda_version": _cuda_version(),
        "gpu": _gpu_identity(),
        "onnx": source.name,
        "onnx_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "batch_profile": list(options.batch),
        "batch_unit": "frames",
        "bindings": [dataclasses.asdict(t) for t in engine_tensors(trt, engine, source)],
        "dla_core": options.dla_core,
        "dla": None if options.dla_core is None else {"gpu_fallback_layers": gpu_fallback, "dla_layers": _dla_layers(layers)},
        "version_compatible": options.version_compatible,
        "layer_precisions": layers,
        "built": now_iso(),
        "built_by": "occ-export",
        "rebuild": rebuild_command(onnx_path, options),
    }
    write_atomic(out, plan_bytes)
    write_atomic(out.with_name(out.name + ".json"), json.dumps(sidecar, indent=2).encode())
    return out


# ---- engines built elsewhere (trtexec, Polygraphy): check their bindings, write the sidecar ----------
@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a graph or engine. ``shape`` has -1 for a dynamic dimension;
    ``profile`` is an engine input's ``(min, opt, max)`` shapes of optimization profile 0."""

    name: str
    mode: str  # "input" or "output"
    dtype: str  # numpy's name: float32, float16, bool, int8...
    shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], ...] | None = None


def onnx_tensors(model) -> list[TensorInfo]:
    """The graph's inputs and outputs."""
    from onnx import helper

    def info(value, mode: str) -> TensorInfo:
        kind = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
        return TensorInfo(value.name, mode, str(helper.tensor_dtype_to_np_dtype(kind.elem_type)), dims)

    return [info(v, "input") for v in model.graph.input] + [info(v, "output") for v in model.graph.output]


def engine_tensors(trt, engine, where: str | Path = "engine") -> list[TensorInfo]:
    """An engine's I/O tensors through TensorRT's name-based API (TensorRT 10 and 11).

    Raises:
        EngineBuildError: a tensor numpy cannot hold (BF16, FP8, FP4, INT4 I/O).
    """
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        profile = None
        if is_input and -1 in tuple(engine.get_tensor_shape(name)):
            profile = tuple(tuple(int(d) for d in shape) for shape in engine.get_tensor_profile_shape(name, 0))
        try:
            dtype = numpy_dtype(trt, engine, name, str(where))
        except BackendError as exc:
            raise EngineBuildError(str(exc)) from None
        tensors.append(TensorInfo(name, "input" if is_input else "output", str(dtype), tuple(int(d) for d in engine.get_tensor_shape(name)),
                                  profile))
    return tensors


FLOATS = ("float32", "float16")


def binding_problems(engine: list[TensorInfo], graph: list[TensorInfo]) -> tuple[list[str], list[str]]:
    """``(problems, notes)`` from comparing an engine's bindings with the ONNX graph's: every name
    with the same direction, a dtype that is the graph's (or the other float width, which
    ``--inputIOFormats``/``--outputIOFormats`` give and the runtime converts), and a shape whose
    fixed dimensions are the graph's (the engine may fix the graph's dynamic batch)."""
    problems, notes = [], []
    ours = {t.name: t for t in engine}
    for tensor in graph:
        other = ours.pop(tensor.name, None)
        if other is None:
            problems.append(f"the engine has no {tensor.mode} '{tensor.name}'")
            continue
        if other.mode != tensor.mode:
            problems.append(f"'{tensor.name}' is an {other.mode} of the engine but an {tensor.mode} of the graph")
        if other.dtype != tensor.dtype:
            if other.dtype in FLOATS and tensor.dtype in FLOATS:
                notes.append(f"{tensor.mode} '{tensor.name}' is {other.dtype} in the engine, {tensor.dtype} in the graph")
            else:
                problems.append(f"{tensor.mode} '{tensor.name}' is {other.dtype} in the engine but {tensor.dtype} in the graph")
        if len(other.shape) != len(tensor.shape) or any(g != -1 and e != g for e, g in zip(other.shape, tensor.shape)):
            problems.append(f"{tensor.mode} '{tensor.name}' has shape {list(other.shape)} in the engine but {list(tensor.shape)} "
                            "in the graph")
    problems += [f"the engine's {t.mode} '{t.name}' is not in the graph" for t in ours.values()]
    return problems, notes


def frames_profile(manifest: Manifest, tensors: list[TensorInfo]) -> list[int] | None:
    """The engine's batch profile in frames (ALOCC: patches / patches per frame, rounded down),
    or None when its batch is fixed."""
    from occ.runtime.backends.base import expected_input, samples_per_frame

    name, _ = expected_input(manifest)
    tensor = next((t for t in tensors if t.name == name), None)
    if tensor is None or tensor.profile is None:
        return None
    return [shape[0] // samples_per_frame(manifest) for shape in tensor.profile]


def attach_engine(engine_path: str | Path, onnx_path: str | Path, version_compatible: bool = False) -> tuple[Path, list[str]]:
    """Adopt an engine built elsewhere (``trtexec --onnx=model.onnx ...``, Polygraphy): check its
    bindings against the occ ONNX model it was built from (names, dtypes, shapes), then write
    ``<engine>.json`` with the ONNX model's manifest and the engine's facts. Refuses to replace an
    existing sidecar. ``version_compatible``: the engine was built so (``trtexec --versionCompatible``),
    and loading it needs host code allowed. Returns the sidecar and the notes of the check.

    Raises:
        EngineBuildError: TensorRT missing, an unreadable engine, or bindings that do not match.
    """
    import onnx

    engine_path, onnx_path = Path(engine_path), Path(onnx_path)
    sidecar_path = engine_path.with_name(engine_path.name + ".json")
    if not engine_path.is_file():
        raise EngineBuildError(f"{engine_path}: engine file not found")
    if engine_path.suffix != ".engine":
        raise EngineBuildError(f"{engine_path}: the runtime finds engines by the .engine suffix; rename the file")
    if sidecar_path.exists():
        raise EngineBuildError(f"{sidecar_path}: a sidecar already exists; remove it to attach again")
    manifest = read_manifest(onnx_path)
    graph = onnx_tensors(onnx.load(str(onnx_path), load_external_data=False))
    trt = import_tensorrt(engine_path)
    try:
        runtime, engine = deserialize_engine(trt, engine_path.read_bytes(), str(engine_path), version_compatible)
    except BackendError as exc:
        raise EngineBuildError(f"{exc} (built by another TensorRT version or for another GPU?)") from None
    tensors = engine_tensors(trt, engine, engine_path)
    problems, notes = binding_problems(tensors, graph)
    if problems:
        raise EngineBuildError(f"{engine_path}: does not match {onnx_path.name}: " + "; ".join(problems))
    notes += threshold_rounding_notes(manifest, tensors)
    sidecar = {
        "manifest": json.loads(manifest.to_json()),
        "tensorrt_version": trt.__version__,
        "precision": manifest.export.get("precision", "fp32"),
        "cuda_version": _cuda_version(),
        "gpu": _gpu_identity(),
        "onnx": onnx_path.name,
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "batch_profile": frames_profile(manifest, tensors),
        "batch_unit": "frames",
        "bindings": [dataclasses.asdict(t) for t in tensors],
        "version_compatible": version_compatible,
        "layer_precisions": _layer_precisions(trt, engine),
        "built": now_iso(),
        "built_by": "attached: built outside occ (trtexec, Polygraphy...)",
        "attach_notes": notes,
        "rebuild": (f"occ export {onnx_path.name} --engine, or rebuild with the tool that built it and run: occ engine attach "
                    f"{engine_path.name} --onnx {onnx_path.name}" + (" --version-compatible" if version_compatible else "")),
    }
    write_atomic(sidecar_path, json.dumps(sidecar, indent=2).encode())
    return sidecar_path, notes


def threshold_rounding_notes(manifest: Manifest, tensors: list[TensorInfo]) -> list[str]:
    """Threshold inputs the engine takes in FP16 (``trtexec --inputIOFormats=fp16``): the runtime
    feeds them in the engine's dtype, so say what the thresholds become."""
    import numpy as np

    notes = []
    for tensor in tensors:
        if tensor.mode == "input" and tensor.name in manifest.thresholds and tensor.dtype == "float16":
            value = manifest.threshold(tensor.name)
            notes.append(f"input {tensor.name} is float16: the threshold {value:.8g} runs as {float(np.float16(value)):.8g}")
    return notes


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


def output_type(output: dict[str, Any]) -> str | None:
    """A layer output's type in the engine inspector's JSON: TensorRT 10 writes one
    ``Format/Datatype`` string; TensorRT 11 splits it into ``Format`` and ``DataType`` (the
    TensorRT 10.x → 11.x IEngineInspector migration guide; the spelling of the split keys is
    confirmed by benchmarks/tensorrt_check.py, which records the keys a real engine gives)."""
    if "Format/Datatype" in output:
        return output["Format/Datatype"]
    kind = output.get("DataType", output.get("Datatype"))
    form = output.get("Format")
    return " ".join(str(part) for part in (form, kind) if part) or None


def _layer_precisions(trt, engine) -> list[dict[str, Any]]:
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    out = []
    for layer in info.get("Layers", []):
        if isinstance(layer, dict):
            outputs = layer.get("Outputs", [])
            out.append({"name": layer.get("Name"), "type": layer.get("LayerType"),
                        "output_types": [output_type(o) for o in outputs if isinstance(o, dict)]})
    return out


def _dla_layers(layers: list[dict[str, Any]]) -> list[str]:
    """The inspector's layers that name the DLA (their type or name says so); unconfirmed on a
    real DLA engine: benchmarks/tensorrt_check.py records the inspector output to settle it."""
    return [str(layer["name"]) for layer in layers if "DLA" in f"{layer.get('type')} {layer.get('name')}".upper()]


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
