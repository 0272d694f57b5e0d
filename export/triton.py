"""A Triton Inference Server model repository for an exported occ model.

    DIR/<name>/config.pbtxt          validated against Triton's ModelConfig protobuf (tritonclient)
    DIR/<name>/1/model.onnx          the graph Triton serves (see below)
    DIR/<name>/occ_manifest.json     the manifest, also inside config.pbtxt's parameters

Triton batches requests along the first dimension of every input, so AVID's α and ζ (graph
inputs of shape (1,) in the deployed graph) become per-request inputs of shape (batch, 1): the
served graph is the exported one with each threshold unsqueezed to (batch, 1, 1) where it is
used, so every camera's request carries its own α and ζ (its manifest's values unless retuned)
and one dynamic batch mixes cameras with different thresholds. ALOCC's τ is applied by the
client to the fused location scores, exactly as in the local runtime (the graph has no τ).
A client finds the manifest in the model configuration (``parameters["occ.manifest"]``).

Instances are ``KIND_AUTO`` unless asked otherwise: Triton puts them on every GPU when the server
has one and on the CPU when it has none (``KIND_GPU`` makes a server without a GPU refuse the
model: "has kind KIND_GPU but no GPUs are available").

Checked here: the schema, tensor names against the ONNX graph, the served graph against the
exported one with ONNX Runtime, and a real tritonserver (PyTriton's, Python backend; see
``occ.benchmarks.triton_server``) loading the repository with only its backend line changed.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from occ.runtime.backends.triton import THRESHOLD_INPUTS
from occ.runtime.manifest import Manifest, manifest_from_metadata

INSTANCE_KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}
_TRITON_TYPES = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16", TensorProto.BOOL: "TYPE_BOOL",
                 TensorProto.UINT8: "TYPE_UINT8", TensorProto.INT32: "TYPE_INT32", TensorProto.INT64: "TYPE_INT64"}


class TritonExportError(RuntimeError):
    """The repository cannot be written or does not validate; one line says why."""


@dataclass
class TritonRepository:
    model_dir: Path
    config_path: Path
    onnx_path: Path
    max_batch_size: int


def served_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The exported graph with AVID's α/ζ as per-request inputs of shape (batch, 1)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    present = [i.name for i in graph.input if i.name in THRESHOLD_INPUTS]
    if not present:
        return model
    keep = [init for init in graph.initializer if init.name not in present]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    axes = numpy_helper.from_array(np.array([2], np.int64), "occ_threshold_axes")
    graph.initializer.append(axes)
    for value in graph.input:
        if value.name in present:
            value.CopyFrom(helper.make_tensor_value_info(value.name, TensorProto.FLOAT, ["batch", 1]))
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in present:
                node.input[i] = f"{name}__per_sample"
    unsqueezes = [helper.make_node("Unsqueeze", [name, "occ_threshold_axes"], [f"{name}__per_sample"],
                                   name=f"occ_{name}_per_sample") for name in present]
    nodes = unsqueezes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model, full_check=True)
    return model


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    """Per-sample dims (the batch dimension dropped); a scalar per sample is [1] with reshape []."""
    shape = value.type.tensor_type.shape.dim
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in shape[1:]]
    if any(d <= 0 for d in dims):
        raise TritonExportError(f"{value.name}: only the batch dimension may be dynamic for Triton, got {[d for d in shape]}")
    return dims


def _tensor_config(value: onnx.ValueInfoProto, optional: bool = False) -> str:
    elem = value.type.tensor_type.elem_type
    if elem not in _TRITON_TYPES:
        raise TritonExportError(f"{value.name}: ONNX element type {elem} has no Triton counterpart here")
    dims = _dims(value)
    lines = [f'    name: "{value.name}"', f"    data_type: {_TRITON_TYPES[elem]}"]
    if dims:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    else:
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    if optional:
        lines.append("    optional: true")
    return "  {\n" + "\n".join(lines) + "\n  }"


def config_text(name: str, model: onnx.ModelProto, manifest: Manifest, max_batch_size: int, instances: int,
                queue_delay_us: int, instance_kind: str = "auto") -> str:
    """``config.pbtxt`` for the served graph: names, types and shapes from the graph itself."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    manifest_json = json.dumps(manifest.to_dict(), sort_keys=True)
    escaped = manifest_json.replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        f'name: "{name}"',
        'backend: "onnxruntime"',
        f"max_batch_size: {max_batch_size}",
        "input [",
        ",\n".join(_tensor_config(i) for i in inputs),
        "]",
        "output [",
        ",\n".join(_tensor_config(o) for o in graph.output),
        "]",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {queue_delay_us}",
        "}",
        "instance_group [",
        f"  {{ count: {instances} kind: {INSTANCE_KINDS[instance_kind]} }}",
        "]",
        "parameters [",
        f'  {{ key: "occ.manifest" value: {{ string_value: "{escaped}" }} }}',
        "]",
        "",
    ])


def parse_config(text: str, where: str):
    """Parse ``config.pbtxt`` with Triton's own ModelConfig message (strict: unknown fields fail)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise TritonExportError(f"{where}: validating a Triton configuration needs tritonclient: pip install 'occ[triton]'") from None
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise TritonExportError(f"{where}: not a valid Triton model configuration ({exc})") from None
    return config


def check_config_against_graph(config, model: onnx.ModelProto, where: str) -> None:
    """Every configured tensor exists in the served graph with the same type and per-sample shape."""
    from tritonclient.grpc import model_config_pb2

    graph = model.graph
    initializers = {i.name for i in graph.input} & {i.name for i in graph.initializer}
    graph_inputs = {i.name: i for i in graph.input if i.name not in initializers}
    graph_outputs = {o.name: o for o in graph.output}
    for kind, configured, actual in (("input", config.input, graph_inputs), ("output", config.output, graph_outputs)):
        names = [t.name for t in configured]
        if sorted(names) != sorted(actual):
            raise TritonExportError(f"{where}: config {kind}s {sorted(names)} do not match the graph's {sorted(actual)}")
        for tensor in configured:
            value = actual[tensor.name]
            want_type = _TRITON_TYPES[value.type.tensor_type.elem_type]
            if model_config_pb2.DataType.Name(tensor.data_type) != want_type:
                raise TritonExportError(f"{where}: {tensor.name} is {model_config_pb2.DataType.Name(tensor.data_type)} "
                                        f"in the config but {want_type} in the graph")
            dims = _dims(value)
            configured_dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
            if configured_dims != dims:
                raise TritonExportError(f"{where}: {tensor.name} has per-sample shape {configured_dims} in the config, {dims} in the graph")


def write_triton_repository(onnx_path: str | Path, repository: str | Path, name: str | None = None,
                            max_batch_size: int | None = None, instances: int = 1, queue_delay_us: int = 500,
                            instance_kind: str = "auto") -> TritonRepository:
    """Write and validate ``repository/<name>/`` for an exported occ ONNX model.

    Args:
        onnx_path: the exported model (``.onnx``, or its ``.fp16.onnx`` sibling).
        repository: the model repository folder (created; other models in it are left alone).
        name: model name in Triton (default: the file's stem).
        max_batch_size: Triton's batch limit (default: 32 frames for AVID; for ALOCC, whose batch
            is patches, 8 frames' worth of patches).
        instances: model instances (per GPU when they run on GPUs).
        queue_delay_us: how long the dynamic batcher waits to fill a batch, microseconds.
        instance_kind: ``auto`` (every GPU of the server, or its CPU when it has none), ``gpu`` or ``cpu``.
    """
    onnx_path = Path(onnx_path)
    if instance_kind not in INSTANCE_KINDS:
        raise TritonExportError(f"instance kind must be one of {', '.join(INSTANCE_KINDS)}, got {instance_kind!r}")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise TritonExportError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__})") from None
    metadata = {p.key: p.value for p in model.metadata_props}
    manifest = manifest_from_metadata(metadata, str(onnx_path))
    name = name or onnx_path.name.split(".")[0]
    if not name.replace("_", "").replace("-", "").isalnum():
        raise TritonExportError(f"{name!r}: a Triton model name here is letters, digits, '_' and '-'")
    if max_batch_size is None:
        if manifest.method == "alocc":
            max_batch_size = 8 * manifest.patches.count(manifest.input)
        else:
            max_batch_size = 32
    served = served_graph(model)
    text = config_text(name, served, manifest, max_batch_size, instances, queue_delay_us, instance_kind)
    where = f"{repository}/{name}/config.pbtxt"
    config = parse_config(text, where)
    check_config_against_graph(config, served, where)
    if config.max_batch_size != max_batch_size or config.name != name:
        raise TritonExportError(f"{where}: the written configuration does not read back as written")

    model_dir = Path(repository) / name
    Path(repository).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repository))  # same file system: the rename is atomic
    try:
        (staging / "1").mkdir()
        onnx.save(served, str(staging / "1" / "model.onnx"))
        (staging / "config.pbtxt").write_text(text)
        (staging / "occ_manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2))
        if model_dir.exists():
            shutil.rmtree(model_dir)
        os.replace(staging, model_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return TritonRepository(model_dir, model_dir / "config.pbtxt", model_dir / "1" / "model.onnx", max_batch_size)
