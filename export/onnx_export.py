"""Checkpoint → one verified ONNX graph with the manifest embedded.

The export checks itself before anything is written: the graph passes ``onnx.checker`` (full
check), and ONNX Runtime reproduces PyTorch on the real validation samples stored in the
checkpoint (score max abs difference within tolerance, identical decisions at the stored
thresholds). Otherwise :class:`ExportError` carries the report and no file is left behind.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from occ.runtime.manifest import METADATA_KEY, Manifest, now_iso, write_atomic
from occ.train.common import Checkpoint, load_checkpoint

from .verify import DecisionComparison, OutputComparison, compare_decisions, compare_output, compare_outputs, mask_iou

DEFAULT_OPSET = 17
SCORE_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """Export failed; ``report`` holds the verification lines when there are any."""

    def __init__(self, message: str, report: list[str] | None = None):
        super().__init__(message)
        self.report = report or []


@dataclass
class ExportResult:
    path: Path
    manifest: Manifest
    outputs: list[OutputComparison] = field(default_factory=list)
    decisions: list[DecisionComparison] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def report(self) -> list[str]:
        lines = [c.line() for c in self.outputs] + [d.line() for d in self.decisions]
        lines += [f"{k}: {v}" for k, v in self.extra.items()]
        return lines


def build_graph(checkpoint: Checkpoint, with_d_of_x: bool = False, with_reconstruction: bool = False) -> tuple[torch.nn.Module, list[str], list[str], dict]:
    """The module to export, its input and output names, and ONNX dynamic axes."""
    if checkpoint.method == "alocc":
        from occ.train.train_alocc import build_scorer

        scorer = build_scorer(checkpoint.architecture, checkpoint.state_dicts)
        scorer.with_d_of_x, scorer.with_reconstruction = with_d_of_x, with_reconstruction
        outputs = scorer.output_names()
        axes = {name: {0: "batch"} for name in ["patches", *outputs]}
        return scorer, ["patches"], outputs, axes
    from occ.train.train_avid import build_graph as build_avid

    graph = build_avid(checkpoint.architecture, checkpoint.state_dicts, checkpoint.manifest)
    outputs = graph.output_names()
    axes = {name: {0: "batch"} for name in ["frames", *outputs]}
    return graph, ["frames", "alpha", "zeta"], outputs, axes


def example_inputs(checkpoint: Checkpoint, samples: np.ndarray) -> tuple[torch.Tensor, ...]:
    x = torch.from_numpy(samples[:2])
    if checkpoint.method == "alocc":
        return (x,)
    return (x, torch.tensor([checkpoint.manifest.threshold("alpha")]), torch.tensor([checkpoint.manifest.threshold("zeta")]))


def verification_samples(checkpoint: Checkpoint, data_spec: str | None = None) -> np.ndarray:
    """Real normal samples to verify on: those stored in the checkpoint, or read from ``data_spec``."""
    if data_spec is None:
        stored = checkpoint.state_dicts.get("verification", {}).get("inputs")
        if stored is None:
            raise ExportError(f"{checkpoint.path}: the checkpoint holds no verification samples; pass --data")
        return stored.numpy()
    from occ.runtime.datasets.spec import load_video_data
    from occ.runtime.preprocess import PatchGrid, preprocess_clip

    manifest = checkpoint.manifest
    clips = load_video_data(data_spec, splits=("test",)).test[:2]
    frames = np.concatenate([preprocess_clip(c.frames[:16], manifest.input) for c in clips])
    if checkpoint.method == "alocc":
        grid = PatchGrid.from_spec(manifest.patches, manifest.input)
        return grid.extract_clip(frames)
    return frames


def _to_onnx_bytes(module: torch.nn.Module, inputs: tuple, input_names: list[str], output_names: list[str], axes: dict, opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes, do_constant_folding=True)
    return buffer.getvalue()


def _embed(model: onnx.ModelProto, manifest: Manifest, defaults: dict[str, float]) -> onnx.ModelProto:
    """Put the manifest in metadata_props and give threshold inputs their calibrated defaults.

    An initializer with the same name as a graph input is that input's default value (ONNX IR ≥ 4),
    so a deployed model runs with its stored α, ζ and can still be retuned without re-export.
    """
    for name, value in defaults.items():
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([value], np.float32), name))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, manifest.to_json()
    model.producer_name = "occ"
    return model


def _run_ort(model_bytes: bytes, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    return dict(zip(outputs, session.run(outputs, feed)))


def _run_torch(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], outputs: list[str]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        values = module(*inputs)
    return {name: v.numpy() for name, v in zip(outputs, values)}


def verify(checkpoint: Checkpoint, module: torch.nn.Module, model_bytes: bytes, samples: np.ndarray,
           output_names: list[str], tolerance: float) -> tuple[list[OutputComparison], list[DecisionComparison], dict]:
    """Compare PyTorch and ONNX Runtime on ``samples``; see the module docstring for the rules."""
    manifest = checkpoint.manifest
    extra: dict[str, Any] = {}
    if checkpoint.method == "alocc":
        from occ.runtime.scoring import fused_location_scores, reduce_frame

        frames = samples  # (F, P, C, s, s)
        flat = np.ascontiguousarray(frames.reshape(-1, *frames.shape[2:]))
        reference = _run_torch(module, (torch.from_numpy(flat),), output_names)
        candidate = _run_ort(model_bytes, {"patches": flat}, output_names)
        tolerances = {"score": tolerance, "d_of_r": tolerance}
        outputs = compare_outputs(reference, candidate, tolerances, default_tolerance=max(tolerance, 1e-3))
        tau = manifest.threshold("tau")
        shape = frames.shape[:2]
        per_patch = [k for k in reference if reference[k].ndim == 1]  # not R(X)
        ref_patches = fused_location_scores({k: reference[k].reshape(shape) for k in per_patch}, manifest.scoring)
        cand_patches = fused_location_scores({k: candidate[k].reshape(shape) for k in per_patch}, manifest.scoring)
        ref_frames, cand_frames = reduce_frame(ref_patches), reduce_frame(cand_patches)
        decisions = [
            compare_decisions("patch decisions at tau", ref_patches > tau, cand_patches > tau),
            compare_decisions("frame decisions at tau", ref_frames > tau, cand_frames > tau),
        ]
        extra["verified_on"] = f"{shape[0]} frames × {shape[1]} patches"
        return outputs, decisions, extra
    alpha, zeta = np.float32(manifest.threshold("alpha")), np.float32(manifest.threshold("zeta"))
    x = np.ascontiguousarray(samples)
    inputs = (torch.from_numpy(x), torch.tensor([alpha]), torch.tensor([zeta]))
    reference = _run_torch(module, inputs, output_names)
    candidate = _run_ort(model_bytes, {"frames": x, "alpha": np.array([alpha]), "zeta": np.array([zeta])}, output_names)
    numeric = {k: v for k, v in reference.items() if k not in ("mask", "decision")}
    outputs = compare_outputs(numeric, candidate, {"score": tolerance}, default_tolerance=max(tolerance, 1e-3))
    iou = mask_iou(reference["mask"], candidate["mask"])
    decisions = [
        compare_decisions("frame decisions", reference["decision"], candidate["decision"]),
        compare_decisions("mask pixels", reference["mask"], candidate["mask"]),
    ]
    extra["mask IoU"] = round(iou, 6)
    extra["verified_on"] = f"{len(x)} frames"
    if iou < 1.0:
        decisions.append(DecisionComparison("mask IoU", iou, 1.0, int(reference["mask"].size)))
    return outputs, decisions, extra


def export_onnx(
    checkpoint_path: str | Path,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    with_d_of_x: bool = False,
    with_reconstruction: bool = False,
    data_spec: str | None = None,
    tolerance: float = SCORE_TOLERANCE,
) -> ExportResult:
    """Export a checkpoint to ONNX, verify it, and write it atomically.

    Args:
        checkpoint_path: the ``.pt`` written by ``occ train``.
        out: the ``.onnx`` path (default: beside the checkpoint, same stem).
        opset: ONNX opset.
        with_d_of_x: ALOCC only: also output D(X).
        with_reconstruction: ALOCC only: also output R(X).
        data_spec: verify on this data instead of the samples stored in the checkpoint.
        tolerance: maximum absolute score difference between PyTorch and ONNX Runtime.

    Raises:
        ExportError: verification failed (its ``report`` says how); nothing is written.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    out = Path(out) if out else checkpoint.path.with_suffix(".onnx")
    module, input_names, output_names, axes = build_graph(checkpoint, with_d_of_x, with_reconstruction)
    samples = verification_samples(checkpoint, data_spec)
    flat_example = samples.reshape(-1, *samples.shape[2:]) if checkpoint.method == "alocc" else samples
    model_bytes = _to_onnx_bytes(module, example_inputs(checkpoint, flat_example), input_names, output_names, axes, opset)

    manifest = Manifest.from_dict(checkpoint.manifest.to_dict(), str(checkpoint.path))
    manifest.export = {
        "opset": opset,
        "precision": "fp32",
        "source_checkpoint_sha256": checkpoint.sha256,
        "source_checkpoint": checkpoint.path.name,
        "created": now_iso(),
        "inputs": input_names,
        "outputs": output_names,
    }
    defaults = {}
    if checkpoint.method == "avid":
        defaults = {"alpha": manifest.threshold("alpha"), "zeta": manifest.threshold("zeta")}
    model = _embed(onnx.load_from_string(model_bytes), manifest, defaults)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{checkpoint.path}: exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    model_bytes = model.SerializeToString()

    outputs, decisions, extra = verify(checkpoint, module, model_bytes, samples, output_names, tolerance)
    result = ExportResult(path=out, manifest=manifest, outputs=outputs, decisions=decisions, extra=extra)
    if not all(outputs) or not all(decisions):
        raise ExportError(f"{checkpoint.path}: ONNX Runtime disagrees with PyTorch; nothing written", result.report)
    write_atomic(out, model_bytes)
    return result


FP16_AGREEMENT = 0.995


def export_fp16(fp32_path: str | Path, out: str | Path | None = None, samples: np.ndarray | None = None,
                checkpoint_path: str | Path | None = None) -> ExportResult:
    """Write ``<name>.fp16.onnx`` (FP16 bodies, FP32 islands; see :mod:`export.fp16`) and verify it.

    Verification runs both ONNX files with ONNX Runtime on the checkpoint's validation samples
    and requires ≥ 99.5 % identical decisions (frames and, for AVID, mask pixels); the score
    error is reported. Fails with :class:`ExportError` and writes nothing otherwise.
    """
    from occ.runtime.manifest import manifest_from_metadata

    from .fp16 import precision_summary, to_mixed_fp16

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
        checkpoint = load_checkpoint(checkpoint_path or fp32_path.with_suffix(".pt"))
        samples = verification_samples(checkpoint)
    outputs = [o.name for o in model.graph.output]
    if manifest.method == "alocc":
        feed = {"patches": np.ascontiguousarray(samples.reshape(-1, *samples.shape[2:]))}
    else:
        feed = {"frames": np.ascontiguousarray(samples)}
    reference = _run_ort(model.SerializeToString(), feed, outputs)
    candidate = _run_ort(mixed_bytes, feed, outputs)
    comparisons = [compare_output("score", reference["score"], candidate["score"], tolerance=float("inf"))]
    if manifest.method == "alocc":
        from occ.runtime.scoring import fused_location_scores

        shape = samples.shape[:2]
        terms = [k for k in outputs if reference[k].ndim == 1]
        ref = fused_location_scores({k: reference[k].reshape(shape) for k in terms}, manifest.scoring)
        cand = fused_location_scores({k: candidate[k].reshape(shape) for k in terms}, manifest.scoring)
        tau = manifest.threshold("tau")
        decisions = [compare_decisions("patch decisions at tau", ref > tau, cand > tau, FP16_AGREEMENT)]
    else:
        decisions = [compare_decisions("frame decisions", reference["decision"], candidate["decision"], FP16_AGREEMENT),
                     compare_decisions("mask pixels", reference["mask"], candidate["mask"], FP16_AGREEMENT)]
    result = ExportResult(path=out, manifest=manifest, outputs=comparisons, decisions=decisions,
                          extra={"mask IoU": round(mask_iou(reference["mask"], candidate["mask"]), 6)} if "mask" in reference else {})
    if not all(decisions):
        raise ExportError(f"{fp32_path}: the FP16 graph disagrees with FP32 beyond budget; nothing written", result.report)
    write_atomic(out, mixed_bytes)
    return result
