"""FP16-typed ONNX with FP32 islands (``<name>.fp16.onnx``), for TensorRT 11 and ONNX Runtime CUDA.

TensorRT 11 builds strongly typed networks only (no FP16 builder flag), so the precision lives in
the graph. The network bodies (convolutions, batch norm, activations, pooling, concatenation,
resizing) run in FP16; everything after them stays FP32: the |X − I(X)| residual and its
threshold, the reductions, the logits and sigmoids, the comparisons. Graph inputs and outputs
keep their FP32 types, so callers and manifests do not change.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from occ.runtime.files import write_atomic
from occ.runtime.manifest import METADATA_KEY, manifest_from_metadata

from .samples import sample_feed, samples_from_data
from .verify import ExportError, ExportResult, compare_output, decision_comparisons, mask_iou, run_onnx

# Ops that run in FP16: the convolutional bodies of R, D, I and the FCN.
FP16_OPS = frozenset({"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "MaxPool", "Concat", "Tanh"})
# Ops whose numerics never depend on the float type (they pass values through).
_SHAPE_OPS = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Reshape", "Flatten", "Constant"})


def to_mixed_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with FP16 bodies and FP32 islands, Cast nodes at every boundary."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # a Concat (or any body op) of integer shape pieces stays as it is
    float_tensors = _float_tensors(model)
    half_nodes = {id(node) for node in graph.node if node.op_type in FP16_OPS and node.input[0] in float_tensors}
    # which tensors are FP16: outputs of FP16 nodes, and FP16 nodes' weights
    half_tensors: set[str] = set()
    for node in graph.node:
        if id(node) in half_nodes:
            half_tensors.update(node.output)
    for name, init in initializers.items():
        users = consumers.get(name, [])
        if init.data_type == TensorProto.FLOAT and users and all(id(u) in half_nodes for u in users):
            array = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(array, name))
            half_tensors.add(name)
    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=casts[key]))
        return casts[key]

    for node in graph.node:
        wants_half = id(node) in half_nodes
        for i, name in enumerate(node.input):
            if not name or name in initializers and (name in half_tensors) == wants_half:
                continue
            if node.op_type in _SHAPE_OPS and i > 0:
                continue  # shape/index operands keep their integer types
            is_half = name in half_tensors
            if wants_half and not is_half and name in float_tensors:
                node.input[i] = cast(name, TensorProto.FLOAT16)
            elif not wants_half and is_half and node.op_type not in _SHAPE_OPS:
                node.input[i] = cast(name, TensorProto.FLOAT)
        if node.op_type in _SHAPE_OPS and node.input and node.input[0] in half_tensors:
            # a reshape of FP16 data is FP16 data; a Shape of it stays int64
            half_tensors.update(name for name in node.output if name in float_tensors)
        new_nodes.append(node)
    outputs = {o.name for o in graph.output}
    for name in sorted(outputs & half_tensors):
        fp32 = cast(name, TensorProto.FLOAT)
        for node in new_nodes:  # rename the producer's output so the graph output keeps its name
            for j, out in enumerate(node.output):
                if out == name:
                    node.output[j] = f"{name}__fp16"
            for j, inp in enumerate(node.input):
                if inp == name:
                    node.input[j] = f"{name}__fp16"
        for node in new_nodes:
            if node.name == fp32:
                node.output[0] = name
    del graph.node[:]
    graph.node.extend(_topological(new_nodes, {i.name for i in graph.input} | set(initializers)))
    del graph.value_info[:]
    return model


def _topological(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    ready, ordered, pending = set(available), [], list(nodes)
    while pending:
        progressed = False
        for node in list(pending):
            if all(not name or name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
                pending.remove(node)
                progressed = True
        if not progressed:
            raise ValueError(f"graph has a cycle or a missing input near {pending[0].name or pending[0].op_type}")
    return ordered


def precision_summary(model: onnx.ModelProto) -> dict[str, int]:
    """How many compute nodes run in FP16 and FP32 (Cast and shape nodes not counted)."""
    half = sum(1 for n in model.graph.node if n.op_type in FP16_OPS)
    other = sum(1 for n in model.graph.node if n.op_type not in FP16_OPS | _SHAPE_OPS | {"Cast"})
    return {"fp16_nodes": half, "fp32_nodes": other}


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of the FP32 tensors of ``model`` (inputs, initializers and intermediates, by ONNX type inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    typed.update({init.name: init.data_type for init in inferred.graph.initializer})
    return {name for name, kind in typed.items() if kind == TensorProto.FLOAT}


# share of decisions (frames; patches or mask pixels) that must agree between the FP16 and FP32 graphs
FP16_AGREEMENT = 0.995
# frames and patches whose FP32 score lies within this share of the threshold are ties, not counted:
# FP16 bodies move a frame score by up to a few tenths of a percent, and a checkpoint's 8 verification
# frames would otherwise fail the 99.5 % budget on one frame that happens to sit at the threshold
FP16_TIE_BAND = 0.01


def export_fp16(fp32_path: str | Path, out: str | Path | None = None, samples: np.ndarray | None = None,
                data_spec: str | None = None) -> ExportResult:
    """Write ``<name>.fp16.onnx`` (FP16 bodies, FP32 islands) and verify it against the FP32 graph.

    Verification runs both graphs on ONNX Runtime CPU on real normal samples (``samples``: the
    export's own, else the first frames of ``data_spec``) and requires 99.5 % identical
    decisions, frames and patches within 1 % of the threshold not counted; the score error is reported. Fails with :class:`ExportError` and writes nothing
    otherwise.
    """
    fp32_path = Path(fp32_path)
    out = Path(out) if out else fp32_path.with_name(fp32_path.stem + ".fp16.onnx")
    model = onnx.load(str(fp32_path))
    manifest = manifest_from_metadata({p.key: p.value for p in model.metadata_props}, str(fp32_path))
    mixed = to_mixed_fp16(model)
    manifest.export = {**manifest.export, "precision": "fp16", "fp32_model": fp32_path.name,
                       "fp32_islands": "residual, thresholds, reductions, logits, sigmoids, comparisons",
                       **precision_summary(mixed)}
    for entry in mixed.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = manifest.to_json()
    onnx.checker.check_model(mixed, full_check=True)
    mixed_bytes = mixed.SerializeToString()
    if samples is None:
        if data_spec is None:
            raise ExportError(f"{fp32_path}: give --data SPEC: real normal frames to verify the FP16 model on")
        samples = samples_from_data(manifest, data_spec)
    outputs = [o.name for o in model.graph.output]
    feed = sample_feed(manifest, samples)
    reference = run_onnx(model.SerializeToString(), feed, outputs)
    candidate = run_onnx(mixed_bytes, feed, outputs)
    comparisons = [compare_output("score", reference["score"], candidate["score"], tolerance=float("inf"))]
    decisions = decision_comparisons(manifest, reference, candidate, FP16_AGREEMENT, FP16_TIE_BAND)
    result = ExportResult(path=out, manifest=manifest, outputs=comparisons, decisions=decisions,
                          extra={"mask IoU": round(mask_iou(reference["mask"], candidate["mask"]), 6)} if "mask" in reference else {})
    if not all(decisions):
        raise ExportError(f"{fp32_path}: the FP16 graph disagrees with FP32 beyond budget; nothing written", result.report)
    write_atomic(out, mixed_bytes)
    return result
