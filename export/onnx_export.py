"""Checkpoint → one verified ONNX graph with the manifest embedded.

The export checks itself before anything is written: the graph passes ``onnx.checker`` (full
check), and ONNX Runtime reproduces PyTorch on the real validation samples stored in the
checkpoint (score max abs difference within tolerance, identical decisions at the stored
thresholds). Otherwise :class:`ExportError` carries the report and no file is left behind.
"""
from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from occ import __version__
from occ.runtime.files import now_iso, write_atomic
from occ.runtime.manifest import METADATA_KEY, Manifest
from occ.train.common import Checkpoint, load_checkpoint

from .calibration import calibration_to_keep, carry_calibration
from .samples import samples_from_data
from .verify import DecisionComparison, ExportError, ExportResult, OutputComparison, compare_outputs, decision_comparisons, frames_at_gate, mask_iou, run_onnx

DEFAULT_OPSET = 17
SCORE_TOLERANCE = 1e-4


def build_graph(checkpoint: Checkpoint) -> tuple[torch.nn.Module, list[str], list[str], dict]:
    """The module to export, its input and output names, and ONNX dynamic axes."""
    if checkpoint.method == "alocc":
        from occ.train.train_alocc import build_scorer

        scorer = build_scorer(checkpoint.architecture, checkpoint.state_dicts, str(checkpoint.path))
        outputs = scorer.output_names()
        axes = {name: {0: "batch"} for name in ["patches", *outputs]}
        return scorer, ["patches"], outputs, axes
    from occ.train.train_avid import build_graph as build_avid

    graph = build_avid(checkpoint.architecture, checkpoint.state_dicts, checkpoint.manifest, str(checkpoint.path))
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
    return samples_from_data(checkpoint.manifest, data_spec)


def _to_onnx_bytes(module: torch.nn.Module, inputs: tuple, input_names: list[str], output_names: list[str], axes: dict, opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes, do_constant_folding=True)
    return buffer.getvalue()


def _embed(model: onnx.ModelProto, manifest: Manifest) -> onnx.ModelProto:
    """Put the manifest in metadata_props and describe the model for tools such as Netron.

    AVID's α and ζ are plain graph inputs without initializer defaults: every runtime feeds the
    manifest's values (a default would make ONNX Runtime hide them from its inputs and warn, and
    TensorRT's parser would freeze them into the engine as constants).
    """
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, manifest.to_json()
    model.producer_name, model.producer_version = "occ", __version__
    config = manifest.training.get("config") or {}
    thresholds = "; ".join(f"{name} = {t.value:.6g} ({t.method}, {t.n_samples} samples of {t.data})"
                           for name, t in manifest.thresholds.items())
    model.doc_string = (f"{manifest.method.upper()}, recipe {config.get('recipe', '?')}, trained on {manifest.training.get('data', '?')}; "
                        f"thresholds: {thresholds}. The occ manifest ({METADATA_KEY}) says how outputs become a decision.")
    model.model_version = int(time.strftime("%Y%m%d%H%M%S", time.gmtime()))
    return model


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
        frames = samples  # (F, P, C, s, s)
        flat = np.ascontiguousarray(frames.reshape(-1, *frames.shape[2:]))
        reference = _run_torch(module, (torch.from_numpy(flat),), output_names)
        candidate = run_onnx(model_bytes, {"patches": flat}, output_names)
        outputs = compare_outputs(reference, candidate, {"score": tolerance}, default_tolerance=max(tolerance, 1e-3))
        extra["verified_on"] = f"{frames.shape[0]} frames × {frames.shape[1]} patches"
        return outputs, decision_comparisons(manifest, reference, candidate), extra
    alpha, zeta = np.float32(manifest.threshold("alpha")), np.float32(manifest.threshold("zeta"))
    x = np.ascontiguousarray(samples)
    inputs = (torch.from_numpy(x), torch.tensor([alpha]), torch.tensor([zeta]))
    reference = _run_torch(module, inputs, output_names)
    candidate = run_onnx(model_bytes, {"frames": x, "alpha": np.array([alpha]), "zeta": np.array([zeta])}, output_names)
    compared = ~frames_at_gate(manifest, reference["region_anomaly"])
    if not compared.any():
        raise ExportError(f"{checkpoint.path}: every verification frame holds a region at the gate's threshold ζ; nothing to compare")
    if not compared.all():
        extra["frames with a region at ζ, not compared"] = int((~compared).sum())
        reference = {name: value[compared] for name, value in reference.items()}
        candidate = {name: value[compared] for name, value in candidate.items()}
    numeric = {k: v for k, v in reference.items() if k != "mask"}
    outputs = compare_outputs(numeric, candidate, {"score": tolerance}, default_tolerance=max(tolerance, 1e-3))
    decisions = decision_comparisons(manifest, reference, candidate)
    iou = mask_iou(reference["mask"], candidate["mask"])
    extra["mask IoU"] = round(iou, 6)
    extra["verified_on"] = f"{int(compared.sum())} frames"
    if iou < 1.0:
        decisions.append(DecisionComparison("mask IoU", iou, 1.0, int(reference["mask"].size)))
    return outputs, decisions, extra


def export_onnx(
    checkpoint_path: str | Path,
    out: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    data_spec: str | None = None,
    tolerance: float = SCORE_TOLERANCE,
    force: bool = False,
) -> ExportResult:
    """Export a checkpoint to ONNX, verify it, and write it atomically.

    Args:
        checkpoint_path: the ``.pt`` written by ``occ train``.
        out: the ``.onnx`` path (default: beside the checkpoint, same stem).
        opset: ONNX opset.
        data_spec: verify on this data instead of the samples stored in the checkpoint.
        tolerance: maximum absolute score difference between PyTorch and ONNX Runtime.
        force: replace a calibrated ``out`` of another checkpoint (see :mod:`occ.export.calibration`;
            one of the same checkpoint keeps its calibration).

    Raises:
        ExportError: verification failed (its ``report`` says how); nothing is written.
        CalibrationWouldBeLost: ``out`` holds a calibration of another checkpoint, and no ``force``.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    out = Path(out) if out else checkpoint.path.with_suffix(".onnx")
    calibrated = calibration_to_keep(out, checkpoint.path, force)
    module, input_names, output_names, axes = build_graph(checkpoint)
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
    if calibrated is not None:
        manifest = carry_calibration(manifest, calibrated)
    model = _embed(onnx.load_from_string(model_bytes), manifest)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{checkpoint.path}: exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    model_bytes = model.SerializeToString()

    outputs, decisions, extra = verify(checkpoint, module, model_bytes, samples, output_names, tolerance)
    result = ExportResult(path=out, manifest=manifest, outputs=outputs, decisions=decisions, extra=extra, samples=samples)
    if not all(outputs) or not all(decisions):
        raise ExportError(f"{checkpoint.path}: ONNX Runtime disagrees with PyTorch; nothing written", result.report)
    write_atomic(out, model_bytes)
    return result
