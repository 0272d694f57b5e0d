"""INT8 ONNX with explicit Q/DQ nodes (``<name>.int8.onnx``), for TensorRT and ONNX Runtime.

TensorRT 11 has no implicit INT8 (no calibrator in the builder): INT8 lives in the graph as
QuantizeLinear/DequantizeLinear pairs, which TensorRT 10 also reads (explicit quantization).
The graph is quantized with ONNX Runtime's static quantizer, the way TensorRT wants it:

- only the convolutions of the network bodies (``Conv``, ``ConvTranspose``) are quantized; their
  activation inputs per tensor, their weights per output channel, both symmetric INT8 (zero point
  0: TensorRT's only INT8 form); biases and outputs stay float (TensorRT fuses them itself);
- calibrated on normal frames only (the data spec's training clips), as everything else in occ;
- the sensitive parts stay FP32: every convolution whose output leaves the body (the logits of D,
  the last layer of R or I, whose output becomes the residual), and everything after the bodies
  (residual, thresholds, reductions, sigmoids, comparisons). Where a quantized tensor is also read
  by a float op (the input frames feed both I and the residual), the float op reads the original.

Then it is verified like the FP16 export: the INT8 and FP32 graphs run on ONNX Runtime CPU (which
runs Q/DQ graphs) on real frames of the data spec's test clips; decisions must agree on
:data:`INT8_AGREEMENT` of frames (and of ALOCC's patches, AVID's mask pixels), the score error is
reported. Otherwise nothing is written. None of this imports torch: a camera box can calibrate on
its own footage.

Why ONNX Runtime's quantizer and not NVIDIA ModelOpt (``benchmarks/int8_quantizers.py``, same
calibration frames and exclusions, UCSD Ped2 CPU-size ALOCC, all 1,020 test frames): percentile
calibration kept 99.0 % of frame decisions (micro AUC 0.932 against FP32's 0.931), ModelOpt 97.8 %
(max) and 98.8 % (entropy), ONNX Runtime's min-max and entropy 98.1 %. ModelOpt also needs torch,
cupy and onnxruntime-gpu, which a camera box does not have, and folds α and ζ into constants.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from occ.evaluation.datasets.footage import is_footage
from occ.evaluation.datasets.spec import load_video_data
from occ.runtime.detector import graph_feed
from occ.runtime.files import write_atomic
from occ.runtime.manifest import METADATA_KEY, Manifest, manifest_from_metadata
from occ.runtime.preprocess import preprocess_clip

from .samples import sample_feed
from .verify import ExportError, ExportResult, compare_output, decision_comparisons, mask_iou, run_onnx_batches

# share of decisions (frames; patches or mask pixels) that must agree between the INT8 and FP32 graphs
INT8_AGREEMENT = 0.99
# test frames verified on: 1 % of 128 frames is one frame, too brittle a budget; 512 spread over
# every clip measure it to about half a point
VERIFY_FRAMES = 512
QUANTIZED_OPS = ("Conv", "ConvTranspose")
# ops that pass a convolution's output on inside a network body; anything else reading it is the
# body's boundary (residual, logit, sigmoid...), so the convolution producing it stays float
_BODY_OPS = frozenset({"Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "MaxPool", "Concat", "Tanh",
                       "Resize", "Upsample", "AveragePool", "Identity",
                       "QuantizeLinear", "DequantizeLinear"})  # a quantized graph's pairs pass values on too
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclass
class CalibrationSet:
    """Network inputs of normal frames, batched as the graph takes them."""

    description: str
    frames: int
    batches: list[dict[str, np.ndarray]]


def spread_frames(manifest: Manifest, clips, frames: int) -> np.ndarray:
    """Network inputs ``(N, C, H, W)`` of ``frames`` frames spread evenly over ``clips``, each
    preprocessed with its clip's temporal context."""
    total = sum(len(clip) for clip in clips)
    wanted = sorted(set(np.linspace(0, total - 1, min(frames, total)).round().astype(int).tolist()))
    chosen, offset = [], 0
    for clip in clips:
        picks = [i - offset for i in wanted if offset <= i < offset + len(clip)]
        if picks:
            chosen.append(preprocess_clip(clip.frames, manifest.input)[picks])
        offset += len(clip)
    return np.concatenate(chosen)


def calibration_set(manifest: Manifest, data_spec: str, frames: int = 128, batch_frames: int = 4) -> CalibrationSet:
    """``frames`` frames spread evenly over the normal clips of ``data_spec`` (a data set's training
    clips, footage's calibration part), as ``[{"patches"|"frames": array}, ...]`` of ``batch_frames``
    frames each (equal batches: the histogram calibrators stack them)."""
    if frames < 1:
        raise ExportError(f"calibration needs at least one frame, got {frames}")
    if is_footage(data_spec):
        data = load_video_data(data_spec, splits=("calibration",), size=(manifest.input.height, manifest.input.width))
        normal, what = data.calibration, "calibration part of the footage"
    else:
        data = load_video_data(data_spec, splits=("train",))
        normal, what = data.train, "normal training frames"
    if not normal:
        raise ExportError(f"{data_spec}: no normal clips to calibrate INT8 on")
    inputs = spread_frames(manifest, normal, frames)
    batch_frames = max(1, min(batch_frames, len(inputs)))
    inputs = inputs[:len(inputs) - len(inputs) % batch_frames]
    batches = [graph_feed(inputs[start:start + batch_frames], manifest) for start in range(0, len(inputs), batch_frames)]
    return CalibrationSet(f"{data.description}, {len(inputs)} frames of its {what}", len(inputs), batches)


def verification_frames(manifest: Manifest, data_spec: str, frames: int = VERIFY_FRAMES) -> tuple[np.ndarray, str]:
    """``frames`` test frames spread over every test clip of ``data_spec`` (normal and anomalous:
    decisions near the threshold are where INT8 flips them); normal footage without test clips:
    frames of its validation part (a data set's: of its training clips)."""
    size = (manifest.input.height, manifest.input.width) if is_footage(data_spec) else None
    data = load_video_data(data_spec, splits=("test", "validation"), size=size)
    clips, what = data.test, "test"
    if not clips:
        clips, what = data.validation or load_video_data(data_spec, splits=("train",), size=size).train, "normal"
    if not clips:
        raise ExportError(f"{data_spec}: no clips to verify the INT8 model on")
    inputs = spread_frames(manifest, clips, frames)
    return inputs, f"{len(inputs)} {what} frames of {data.description}"


def boundary_convolutions(model: onnx.ModelProto) -> list[str]:
    """Names of the convolutions whose output leaves a network body (through body ops only): D's
    logits, the last layer of R or I. They stay FP32."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}

    def leaves_body(tensor: str, seen: set[str]) -> bool:
        if tensor in outputs:
            return True
        for node in consumers.get(tensor, []):
            if node.op_type not in _BODY_OPS:
                return True
            if node.op_type in QUANTIZED_OPS:
                continue  # the next convolution reads it: still inside the body
            for out in node.output:
                if out not in seen:
                    seen.add(out)
                    if leaves_body(out, seen):
                        return True
        return False

    return [node.name for node in model.graph.node if node.op_type in QUANTIZED_OPS and leaves_body(node.output[0], set())]


def input_convolutions(model: onnx.ModelProto) -> list[str]:
    """Names of the convolutions that read a graph input (the normalized frames or patches)."""
    inputs = {i.name for i in model.graph.input}
    return [node.name for node in model.graph.node if node.op_type in QUANTIZED_OPS and node.input[0] in inputs]


def quantize_ort(model: onnx.ModelProto, calibration: CalibrationSet, method: str = "percentile",
                 float_input_convolutions: bool = False) -> onnx.ModelProto:
    """ONNX Runtime's static quantizer, QDQ format, placed for TensorRT (see the module docstring);
    ``float_input_convolutions`` also keeps the convolutions reading the input frames in FP32."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[dict[str, np.ndarray]] = iter(calibration.batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    onnxruntime.set_default_logger_severity(3)  # the calibration sessions' notes about alpha/zeta inputs are expected
    with tempfile.TemporaryDirectory(prefix="occ-int8-") as folder, contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
        source, prepared, target = Path(folder) / "fp32.onnx", Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        onnx.save(model, str(source))
        # batch norm folded into the convolutions first: TensorRT quantizes the folded weights
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        prepared_model = onnx.load(str(prepared))
        for node_index, node in enumerate(prepared_model.graph.node):
            if not node.name:  # the quantizer and the exclusion list address nodes by name
                node.name = f"{node.op_type}_{node_index}"
        onnx.save(prepared_model, str(prepared))
        excluded = boundary_convolutions(prepared_model) + (input_convolutions(prepared_model) if float_input_convolutions else [])
        quantize_static(
            str(prepared), str(target), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=excluded, per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=methods[method],
            extra_options={
                "ActivationSymmetric": True, "WeightSymmetric": True,  # zero points 0: TensorRT's INT8
                "QuantizeBias": False,  # TensorRT fuses float biases into its INT8 kernels
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),  # Q/DQ on inputs only; TensorRT propagates
                "QDQKeepRemovableActivations": True,  # the graph's activations stay as they are
                "CalibPercentile": 99.999,
            })
        quantized = onnx.load(str(target))
    return restore_float_inputs(quantized)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer logs advice on the root logger; the export reports its own lines."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def restore_float_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Let every op that is not quantized read the original float tensor instead of its
    quantize-dequantize copy (the quantizer rewires all readers of a quantized tensor: the
    residual would otherwise compare I(X) with an INT8-rounded X), and drop unused pairs."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    original: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            q = producer.get(node.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                original[node.output[0]] = q.input[0]
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            if name in original:
                node.input[i] = original[name]
    outputs = {o.name for o in graph.output}
    while True:  # remove Q/DQ nodes nobody reads any more
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [node for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(out in used for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for initializer in [init for init in graph.initializer if init.name not in used]:
        graph.initializer.remove(initializer)
    return model


def quantization_summary(model: onnx.ModelProto) -> dict[str, int]:
    """Convolutions that read a dequantized (INT8) input, and those left float."""
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in model.graph.node if node.op_type in QUANTIZED_OPS]
    int8 = sum(1 for node in convs if node.input[0] in dequantized and node.input[1] in dequantized)
    return {"int8_convolutions": int8, "float_convolutions": len(convs) - int8,
            "qdq_pairs": sum(1 for node in model.graph.node if node.op_type == "QuantizeLinear")}


def export_int8(fp32_path: str | Path, calib_data: str, out: str | Path | None = None, samples: np.ndarray | None = None,
                data_spec: str | None = None, calib_frames: int = 128, method: str = "percentile",
                required: float = INT8_AGREEMENT, verify_frames: int = VERIFY_FRAMES) -> ExportResult:
    """Write ``<name>.int8.onnx`` (Q/DQ, see the module docstring) and verify it against FP32.

    Args:
        fp32_path: the exported FP32 model.
        calib_data: data spec whose normal (training) clips calibrate the activation ranges.
        out: where to write (default: beside the model, ``.int8.onnx``).
        samples: real inputs to verify on (``(N, C, H, W)`` frames or ``(N, P, C, s, s)`` patch grids);
            default: ``verify_frames`` frames spread over the test clips of ``data_spec``, else of ``calib_data``.
        calib_frames: normal frames to calibrate on.
        method: activation range calibration, one of :data:`CALIBRATION_METHODS`.
        required: the share of agreeing decisions below which nothing is written.

    Raises:
        ExportError: when the decisions disagree beyond :data:`INT8_AGREEMENT` (nothing written).
    """
    fp32_path = Path(fp32_path)
    out = Path(out) if out else fp32_path.with_name(fp32_path.stem + ".int8.onnx")
    model = onnx.load(str(fp32_path))
    manifest = manifest_from_metadata({p.key: p.value for p in model.metadata_props}, str(fp32_path))
    if manifest.export.get("precision", "fp32") != "fp32":
        raise ExportError(f"{fp32_path}: INT8 is calibrated from the FP32 model, this one is {manifest.export['precision']}")
    calibration = calibration_set(manifest, calib_data, calib_frames)
    quantized = quantize_ort(model, calibration, method)
    summary = quantization_summary(quantized)
    if summary["int8_convolutions"] == 0:
        raise ExportError(f"{fp32_path}: no convolution could be quantized; nothing written")
    manifest.export = {**manifest.export, "precision": "int8", "fp32_model": fp32_path.name,
                       "quantizer": "onnxruntime.quantization static QDQ, INT8 symmetric, weights per channel",
                       "calibration": {"data": calibration.description, "frames": calibration.frames, "method": method},
                       "fp32_islands": "boundary convolutions (logits, last R/I layer), residual, thresholds, reductions, sigmoids, "
                                       "comparisons", **summary}
    del quantized.metadata_props[:]
    for entry in model.metadata_props:
        quantized.metadata_props.add(key=entry.key, value=manifest.to_json() if entry.key == METADATA_KEY else entry.value)
    quantized.producer_name, quantized.producer_version = model.producer_name, model.producer_version
    onnx.checker.check_model(quantized, full_check=True)
    quantized_bytes = quantized.SerializeToString()
    outputs = [o.name for o in model.graph.output]
    if samples is not None:
        checked = f"{len(samples)} given samples"
        feeds = [sample_feed(manifest, samples)]
    else:
        frames, checked = verification_frames(manifest, data_spec or calib_data, verify_frames)
        feeds = [graph_feed(frames[start:start + 32], manifest) for start in range(0, len(frames), 32)]
    reference = run_onnx_batches(model.SerializeToString(), feeds, outputs)
    candidate = run_onnx_batches(quantized_bytes, feeds, outputs)
    comparisons = [compare_output("score", reference["score"], candidate["score"], tolerance=float("inf"))]
    decisions = decision_comparisons(manifest, reference, candidate, required)
    extra = {"calibration": calibration.description, "verified on": checked, **summary}
    if "mask" in reference:
        extra["mask IoU"] = round(mask_iou(reference["mask"], candidate["mask"]), 6)
    result = ExportResult(path=out, manifest=manifest, outputs=comparisons, decisions=decisions, extra=extra)
    if not all(decisions):
        raise ExportError(f"{fp32_path}: the INT8 graph disagrees with FP32 beyond budget; nothing written", result.report)
    write_atomic(out, quantized_bytes)
    return result

