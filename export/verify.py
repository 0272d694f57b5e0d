"""Output comparison between two backends, reported per output in the manner of Polygraphy, and
decision agreement under the model's own scoring contract."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from occ.runtime.manifest import Manifest
from occ.runtime.scoring import alocc_fires, alocc_patch_map, decide, frame_threshold
from occ.runtime.scoring.thresholds import region_multiple

# a region whose evidence lies within this share of the binary gate's threshold ζ is a tie: ζ is a quantile
# of the calibration frames' regions, so a verification frame drawn from them can hold the very region
# that set it, where a last-bit difference between backends opens or shuts the gate on a whole block
GATE_TIE_BAND = 1e-4


@dataclass
class OutputComparison:
    """How far one output of a candidate backend lies from the reference."""

    name: str
    max_abs: float
    mean_abs: float
    median_abs: float
    max_rel: float
    tolerance: float
    shape: tuple[int, ...]

    def __bool__(self) -> bool:
        return self.max_abs <= self.tolerance

    def line(self) -> str:
        status = "PASSED" if self else "FAILED"
        return (f"{status} {self.name} {self.shape}: max abs {self.max_abs:.3g} (tolerance {self.tolerance:.3g}), "
                f"mean abs {self.mean_abs:.3g}, median abs {self.median_abs:.3g}, max rel {self.max_rel:.3g}")


@dataclass
class DecisionComparison:
    """Agreement of thresholded decisions (or masks) between two backends."""

    name: str
    agreement: float
    required: float
    count: int
    ties: int = 0  # decisions whose reference value lay in the tie band at the threshold (not counted)

    def __bool__(self) -> bool:
        return self.agreement >= self.required

    def line(self) -> str:
        status = "PASSED" if self else "FAILED"
        ties = f", {self.ties} at the threshold not counted" if self.ties else ""
        return (f"{status} {self.name}: {self.agreement * 100:.2f} % agree over {self.count}{ties} "
                f"(required {self.required * 100:.2f} %)")


def compare_output(name: str, reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> OutputComparison:
    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ValueError(f"output {name}: shape {candidate.shape} differs from the reference {reference.shape}")
    diff = np.abs(reference - candidate)
    rel = diff / np.maximum(np.abs(reference), 1e-12)
    return OutputComparison(
        name=name, max_abs=float(diff.max(initial=0)), mean_abs=float(diff.mean()) if diff.size else 0.0,
        median_abs=float(np.median(diff)) if diff.size else 0.0, max_rel=float(rel.max(initial=0)),
        tolerance=tolerance, shape=tuple(reference.shape),
    )


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    tolerances: dict[str, float], default_tolerance: float) -> list[OutputComparison]:
    """Compare every output the two share; raise when they share none (never silently pass)."""
    shared = [name for name in reference if name in candidate]
    if not shared:
        raise ValueError(f"nothing to compare: reference outputs {sorted(reference)}, candidate outputs {sorted(candidate)}")
    return [compare_output(n, reference[n], candidate[n], tolerances.get(n, default_tolerance)) for n in shared]


def compare_decisions(name: str, reference: np.ndarray, candidate: np.ndarray, required: float = 1.0,
                      tied: np.ndarray | None = None) -> DecisionComparison:
    """Share of equal decisions; ``tied`` marks decisions left out because the reference value sat
    at the threshold, where any change of precision may flip them."""
    reference = np.asarray(reference, bool)
    candidate = np.asarray(candidate, bool)
    if reference.shape != candidate.shape:
        raise ValueError(f"{name}: shape {candidate.shape} differs from the reference {reference.shape}")
    counted = np.ones(reference.shape, bool) if tied is None else ~np.asarray(tied, bool)
    agreement = float((reference == candidate)[counted].mean()) if counted.any() else 1.0
    return DecisionComparison(name=name, agreement=agreement, required=required, count=int(counted.sum()),
                              ties=int(reference.size - counted.sum()))


def at_threshold(values: np.ndarray, threshold: float, band: float) -> np.ndarray:
    """Values within ``band`` (relative) of ``threshold``: ties for a lower-precision graph."""
    return np.abs(np.asarray(values, np.float64) - threshold) <= band * max(abs(threshold), np.finfo(np.float32).tiny)


def frames_at_gate(manifest: Manifest, region_anomaly: np.ndarray) -> np.ndarray:
    """AVID frames (``(N, rows, cols)`` of ``1 − O`` in) holding a region at the binary gate's
    threshold ζ: two backends may differ there by a whole gated block of the maps and the mask."""
    region_anomaly = np.asarray(region_anomaly)
    if manifest.scoring.gate != "binary":
        return np.zeros(len(region_anomaly), bool)
    multiple = region_multiple(region_anomaly, manifest.threshold("zeta"))
    return (np.abs(multiple - 1.0) <= GATE_TIE_BAND).reshape(len(region_anomaly), -1).any(axis=1)


def mask_iou(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Intersection over union of two boolean masks; 1.0 when both are empty."""
    reference = np.asarray(reference, bool)
    candidate = np.asarray(candidate, bool)
    union = np.logical_or(reference, candidate).sum()
    return float(np.logical_and(reference, candidate).sum() / union) if union else 1.0


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
    samples: np.ndarray | None = None  # the real inputs it was verified on (the next export step reuses them)

    @property
    def report(self) -> list[str]:
        lines = [c.line() for c in self.outputs] + [d.line() for d in self.decisions]
        lines += [f"{k}: {v}" for k, v in self.extra.items()]
        return lines


def decision_comparisons(manifest: Manifest, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                         required: float = 1.0, tie_band: float = 0.0) -> list[DecisionComparison]:
    """How often two backends' outputs lead to the same decisions under the manifest's scoring
    contract: frames (and ALOCC's patches, AVID's mask pixels). Frames and patches whose reference
    score lies within ``tie_band`` (relative) of the threshold are ties and are not counted: a
    verification on a few frames must not hinge on one that sits at the threshold."""
    decided = decide(reference, manifest)
    frame_scores = np.array([r.score for r in decided])
    frames = [compare_decisions("frame decisions", np.array([r.decision for r in decided]),
                                np.array([r.decision for r in decide(candidate, manifest)]), required,
                                at_threshold(frame_scores, frame_threshold(manifest), tie_band))]
    if manifest.method == "alocc":
        tau = manifest.threshold("tau")
        patches = alocc_patch_map(reference, manifest)
        return frames + [compare_decisions("patch decisions at tau", alocc_fires(patches, tau),
                                           alocc_fires(alocc_patch_map(candidate, manifest), tau), required,
                                           at_threshold(patches, tau, tie_band))]
    return frames + [compare_decisions("mask pixels", reference["mask"], candidate["mask"], required)]


def _cpu_session(model: bytes | str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=options,
                                providers=["CPUExecutionProvider"])


def run_onnx(model: bytes | str | Path, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    """One run of an ONNX model (bytes or a file) on ONNX Runtime's CPU provider."""
    return dict(zip(outputs, _cpu_session(model).run(outputs, feed)))


def run_onnx_batches(model: bytes | str | Path, feeds: list[dict[str, np.ndarray]], outputs: list[str]) -> dict[str, np.ndarray]:
    """:func:`run_onnx` over batches on one session, outputs joined (bounded memory on large verification sets)."""
    session = _cpu_session(model)
    parts = [dict(zip(outputs, session.run(outputs, feed))) for feed in feeds]
    return {name: np.concatenate([part[name] for part in parts]) for name in outputs}
