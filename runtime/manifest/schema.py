"""The manifest's schema: its parts as dataclasses, each validating itself, and the schema versions
this occ reads."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..files import now_iso, write_atomic
from .errors import ManifestError
from .typed import _build

SCHEMA_VERSION = "1.5"
METADATA_KEY = "occ.manifest"

METHODS = ("alocc", "avid")
COLORS = ("gray",)
INTERPOLATIONS = ("bilinear", "area", "nearest")
# What each temporal rule stacks into the network input (shown by occ inspect)
TEMPORAL_MEANINGS = {
    "none": "one frame",
    "avid_triplet": "<I'(t-4), I'(t-2), I'(t)> with I'(t) = (I(t) + I(t-1)) / 2",
    "frame_diff": "[I(t), I(t) - I(t-1)]: appearance plus signed motion",
}
TEMPORAL_RULES = tuple(TEMPORAL_MEANINGS)
TEMPORAL_CHANNELS = {"none": 1, "avid_triplet": 3, "frame_diff": 2}
PRECISIONS = ("fp32", "fp16", "int8")
THRESHOLD_NAMES = {"alocc": ("tau",), "avid": ("alpha", "zeta")}

# AVID's scoring vocabulary (see AvidScoring)
REGION_SCORERS = ("detector", "memory")
GATES = ("binary", "soft")
FRAME_SCORES = ("peak", "evidence")
RESIDUALS = ("newest", "mean")
# The gate training deploys with each region scorer (train.train_avid.avid_scoring)
REGION_SCORER_GATES = {"detector": "binary", "memory": "soft"}
# How per-frame decisions become episodes (see EpisodeRule)
EPISODE_RULES = ("k_of_n", "cusum")


@dataclass
class InputSpec:
    """How a raw camera frame becomes the network input.

    Args:
        height: frame height after resize, in pixels.
        width: frame width after resize, in pixels.
        channels: channels of the network input (1 for gray, 2 for ALOCC's frame difference, 3 for
            the AVID triplet).
        color: colour handling of the raw frame; only ``gray`` (luma, BT.601) is supported.
        interpolation: resize interpolation (``bilinear`` = OpenCV INTER_LINEAR).
        norm_mean: value subtracted from 0..255 pixels.
        norm_std: divisor applied after subtracting ``norm_mean``.
        temporal: temporal stacking rule, one of :data:`TEMPORAL_RULES`.
    """

    height: int
    width: int
    channels: int
    color: str = "gray"
    interpolation: str = "bilinear"
    norm_mean: float = 127.5
    norm_std: float = 127.5
    temporal: str = "none"

    def validate(self) -> None:
        _positive_int("input.height", self.height)
        _positive_int("input.width", self.width)
        _positive_int("input.channels", self.channels)
        _choice("input.color", self.color, COLORS)
        _choice("input.interpolation", self.interpolation, INTERPOLATIONS)
        _choice("input.temporal", self.temporal, TEMPORAL_RULES)
        if not (math.isfinite(self.norm_std) and self.norm_std > 0 and math.isfinite(self.norm_mean)):
            raise ManifestError(f"input.norm_mean and norm_std must be finite with norm_std > 0, got {self.norm_mean}, {self.norm_std}")
        expected = TEMPORAL_CHANNELS[self.temporal]
        if self.channels != expected:
            raise ManifestError(f"input.channels is {self.channels} but temporal rule '{self.temporal}' makes {expected}")


@dataclass
class PatchSpec:
    """ALOCC patch geometry on the resized frame.

    Patch origins run from the region's top-left at ``stride`` steps; when the last step does not
    reach the region's bottom or right edge, one more row or column is added flush with that edge,
    so every pixel of the region is covered.

    Args:
        size: patch side in pixels.
        stride: step between patch origins in pixels.
        roi: optional ``[top, bottom, left, right]`` pixel box of the resized frame to cut from.
    """

    size: int
    stride: int
    roi: list[int] | None = None

    def validate(self, spec: InputSpec) -> None:
        _positive_int("patches.size", self.size)
        _positive_int("patches.stride", self.stride)
        top, bottom, left, right = self.box(spec)
        if not (0 <= top < bottom <= spec.height and 0 <= left < right <= spec.width):
            raise ManifestError(f"patches.roi {self.roi} lies outside the {spec.height}x{spec.width} frame")
        if self.size > bottom - top or self.size > right - left:
            raise ManifestError(f"patches.size {self.size} is larger than the region {bottom - top}x{right - left}")

    def box(self, spec: InputSpec) -> tuple[int, int, int, int]:
        if self.roi is not None and len(self.roi) != 4:
            raise ManifestError(f"patches.roi must be [top, bottom, left, right], got {self.roi}")
        top, bottom, left, right = self.roi or (0, spec.height, 0, spec.width)
        return top, bottom, left, right

    def origins(self, spec: InputSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Patch origins ``(tops, lefts)``, row-major order of the patch grid."""
        top, bottom, left, right = self.box(spec)
        return _origins(top, bottom, self.size, self.stride), _origins(left, right, self.size, self.stride)

    def count(self, spec: InputSpec) -> int:
        tops, lefts = self.origins(spec)
        return len(tops) * len(lefts)


@dataclass
class RegionSpec:
    """AVID region geometry: detector cell (i, j) scores the pixel block rows
    ``[i*cell, (i+1)*cell)`` and columns ``[j*cell, (j+1)*cell)``.

    Args:
        cell: block side in pixels (the detector's total stride).
        rows: number of cell rows (height / cell).
        cols: number of cell columns (width / cell).
    """

    cell: int
    rows: int
    cols: int

    def validate(self, spec: InputSpec) -> None:
        _positive_int("regions.cell", self.cell)
        if self.rows * self.cell != spec.height or self.cols * self.cell != spec.width:
            raise ManifestError(f"regions {self.rows}x{self.cols} of {self.cell}px do not tile the {spec.height}x{spec.width} input")


@dataclass
class LocationStats:
    """Mean and standard deviation of a graph output on normal frames, one value per patch location."""

    mean: list[float]
    std: list[float]


@dataclass
class AloccScoring:
    """ALOCC's scoring contract (applied by :func:`occ.runtime.scoring.decide`).

    - patch score ``s_p = Σ_k terms[k] · (y_k[p] − mean_k[p]) / std_k[p]`` over the graph outputs
      ``y_k`` named in ``terms`` (``score`` = −logit D(R(X)), ``reconstruction_error`` =
      mean (X − R(X))²); a term without ``location_stats`` enters raw;
    - frame score: the largest patch score;
    - decision: frame score ``> tau``;
    - mask: the union of the patches whose score ``> tau``; boxes: one per connected part of it.

    Args:
        terms: graph output name → weight.
        location_stats: graph output name → its per-location statistics on normal frames.
    """

    terms: dict[str, float]
    location_stats: dict[str, LocationStats] = field(default_factory=dict)

    def validate(self, patch_count: int) -> None:
        if not self.terms:
            raise ManifestError("scoring.terms is empty: the patch score needs at least one graph output")
        for name, weight in self.terms.items():
            if not math.isfinite(weight):
                raise ManifestError(f"scoring.terms.{name} is not a finite number: {weight}")
        for name, stats in self.location_stats.items():
            if name not in self.terms:
                raise ManifestError(f"scoring.location_stats.{name} belongs to no term (terms: {', '.join(self.terms)})")
            if len(stats.mean) != patch_count or len(stats.std) != patch_count:
                raise ManifestError(f"scoring.location_stats.{name} has {len(stats.mean)} means and {len(stats.std)} "
                                    f"deviations for {patch_count} patch locations")
            if not all(math.isfinite(s) and s > 0 for s in stats.std) or not all(math.isfinite(m) for m in stats.mean):
                raise ManifestError(f"scoring.location_stats.{name} needs finite means and positive deviations")

    @property
    def outputs(self) -> list[str]:
        return list(self.terms)


@dataclass
class AvidScoring:
    """AVID's scoring contract. The graph computes all of it; this records how, so that
    calibration, evaluation and every backend agree with the graph.

    - residual ``r = |X − I(X)|`` of the ``residual`` channel (``newest``: I predicts the newest
      frame from the older two, which it never sees; ``mean``: all channels averaged), averaged
      over a ``residual_kernel``² window;
    - region evidence ``odds(1 − O) / odds(1 − ζ)`` per block, ``O`` from the ``region_scorer``
      (``detector``: D; ``memory``: the distance to the nearest normal training region);
    - the ``gate`` makes the intersection ``v`` in units of α: ``binary`` (Eq. 4) ``r / α`` inside
      the blocks with ``O <= ζ``, 0 elsewhere; ``soft`` the weighted geometric mean
      ``(r / α)^w · min(region evidence, e^10)^(1 − w)``, ``w`` = ``residual_weight``;
    - frame score: ``peak`` the largest ``v``; ``evidence`` ``Σ_blocks max(0, v_b − f) / (1 − f)``
      over each block's largest value, ``f`` = ``evidence_floor``;
    - decision: frame score ``>= 1``;
    - mask: ``v >= 1``, each part extended over the connected residual object it belongs to
      within ``mask_reach`` pixels (0: Eq. 4's blocks exactly).

    Training deploys six of these contracts, and validation refuses the rest: ``detector`` with
    the ``binary`` gate and either residual, or ``memory`` with the ``soft`` gate and the ``mean``
    residual (single images), each with either frame score.

    Args:
        region_scorer: ``detector`` or ``memory``.
        gate: ``binary`` or ``soft``.
        residual_weight: the soft gate's weight on the residual, in (0, 1); None for ``binary``.
        frame_score: ``peak`` or ``evidence``.
        evidence_floor: the evidence score's floor, in [0, 1); None for ``peak``.
        mask_reach: pixels the mask follows a residual object out of its gated blocks.
        residual_kernel: side of the residual's averaging window, pixels (odd).
        residual: ``newest`` or ``mean``.
        region_quantile: binary gate: ζ is set so that this fraction of normal regions is vetoed.
    """

    region_scorer: str = "detector"
    gate: str = "binary"
    residual_weight: float | None = None
    frame_score: str = "peak"
    evidence_floor: float | None = None
    mask_reach: int = 0
    residual_kernel: int = 1
    residual: str = "newest"
    region_quantile: float | None = 0.2

    def validate(self) -> None:
        _choice("scoring.region_scorer", self.region_scorer, REGION_SCORERS)
        _choice("scoring.gate", self.gate, GATES)
        _choice("scoring.frame_score", self.frame_score, FRAME_SCORES)
        _choice("scoring.residual", self.residual, RESIDUALS)
        # training pairs each region scorer with one gate, and the memory with single images
        gate = REGION_SCORER_GATES[self.region_scorer]
        if self.gate != gate:
            raise ManifestError(f"scoring.gate must be '{gate}' with region_scorer '{self.region_scorer}', got '{self.gate}'")
        if self.region_scorer == "memory" and self.residual != "mean":
            raise ManifestError(f"scoring.residual must be 'mean' with region_scorer 'memory' (single images), got '{self.residual}'")
        soft = self.gate == "soft"
        if soft != (self.residual_weight is not None) or (soft and not 0 < self.residual_weight < 1):
            raise ManifestError(f"scoring.residual_weight must be in (0, 1) for the soft gate and absent otherwise, "
                                f"got {self.residual_weight} with gate '{self.gate}'")
        evidence = self.frame_score == "evidence"
        if evidence != (self.evidence_floor is not None) or (evidence and not 0 <= self.evidence_floor < 1):
            raise ManifestError(f"scoring.evidence_floor must be in [0, 1) for the evidence score and absent otherwise, "
                                f"got {self.evidence_floor} with frame_score '{self.frame_score}'")
        binary = self.gate == "binary"
        if binary != (self.region_quantile is not None) or (binary and not 0 < self.region_quantile < 1):
            raise ManifestError(f"scoring.region_quantile must be in (0, 1) for the binary gate and absent otherwise, "
                                f"got {self.region_quantile} with gate '{self.gate}'")
        if self.mask_reach < 0:
            raise ManifestError(f"scoring.mask_reach must be >= 0, got {self.mask_reach}")
        if self.residual_kernel < 1 or self.residual_kernel % 2 == 0:
            raise ManifestError(f"scoring.residual_kernel must be a positive odd number, got {self.residual_kernel}")

    @property
    def outputs(self) -> list[str]:
        return ["score", "mask", "region_anomaly"]


SCORING_SPECS: dict[str, type] = {"alocc": AloccScoring, "avid": AvidScoring}


@dataclass
class EpisodeRule:
    """When frame decisions open and close an episode (an event, what an operator is woken for);
    applied by :class:`occ.runtime.events.EpisodeTracker`.

    - ``k_of_n``: an episode opens at the first frame with at least ``k`` firing frames among the
      last ``n`` (``k = n``: ``k`` in a row);
    - ``cusum``: one-sided CUSUM of the frame score in units of the threshold,
      ``S_t = min(max(0, S_{t-1} + s_t / θ − reference), decision + 1)``; an episode opens when
      ``S_t > decision`` (``reference = 1, decision = 0``: the first firing frame). The cap keeps a
      long event from delaying the end of its episode;
    - an episode closes after ``close_after`` quiet frames in a row: frames that do not fire
      (``k_of_n``) or with ``S_t <= decision`` (``cusum``).

    The defaults are the rule training stores: 4 firing frames in a row open, 20 quiet frames
    (2 s at 10 frames/s) close. A pause shorter than 2 s is one incident to an operator, not two
    alarms: on Ped2's held-out folds 20 quiet frames raised about half the false episodes of 5, with
    every event flagged as early; 4 in a row raised half the false episodes of 3 (both methods, six
    runs each), at the same events caught, each a frame later (docs/accuracy-log.md, 2026-12-07).

    Args:
        kind: ``k_of_n`` or ``cusum``.
        k: firing frames that open an episode (``k_of_n``); None for ``cusum``.
        n: the window those ``k`` frames lie in, frames (``k_of_n``); None for ``cusum``.
        close_after: quiet frames in a row that close an episode.
        reference: ``cusum``: the score, in units of the threshold, that adds no evidence; None for ``k_of_n``.
        decision: ``cusum``: the evidence, in units of the threshold, that opens an episode; None for ``k_of_n``.
    """

    kind: str = "k_of_n"
    k: int | None = 4
    n: int | None = 4
    close_after: int = 20
    reference: float | None = None
    decision: float | None = None

    def validate(self) -> "EpisodeRule":
        _choice("episodes.kind", self.kind, EPISODE_RULES)
        _positive_int("episodes.close_after", self.close_after)
        if self.kind == "k_of_n":
            _positive_int("episodes.k", self.k)
            _positive_int("episodes.n", self.n)
            if self.k > self.n:
                raise ManifestError(f"episodes.k ({self.k}) must be <= episodes.n ({self.n})")
            if self.reference is not None or self.decision is not None:
                raise ManifestError("episodes.reference and episodes.decision belong to the cusum rule, not k_of_n")
        else:
            if self.k is not None or self.n is not None:
                raise ManifestError("episodes.k and episodes.n belong to the k_of_n rule, not cusum")
            for name, value in (("reference", self.reference), ("decision", self.decision)):
                if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                    raise ManifestError(f"episodes.{name} must be a finite number >= 0 for the cusum rule, got {value!r}")
        return self

    def describe(self) -> str:
        """The rule in words, for reports and ``occ inspect``."""
        if self.kind == "k_of_n":
            opens = f"{self.k} firing frames in a row" if self.k == self.n else f"{self.k} firing frames of {self.n}"
            return f"opens at {opens}, closes after {self.close_after} quiet frames"
        return (f"opens when the CUSUM of score/threshold − {self.reference:g} exceeds {self.decision:g}, "
                f"closes after {self.close_after} frames at or below it")


@dataclass
class AlarmRate:
    """Episode openings counted on normal footage: the alarm rate a calibration expects.

    Args:
        alarms: episodes opened on the footage.
        hours: the footage's length, hours (frames / frame rate).
        per_hour: ``alarms / hours``; ``per_hour_low``, ``per_hour_high``: its exact 95 % Poisson interval.
        per_day: ``24 · per_hour``, with ``per_day_low`` and ``per_day_high``.
    """

    alarms: int
    hours: float
    per_hour: float
    per_hour_low: float
    per_hour_high: float
    per_day: float
    per_day_low: float
    per_day_high: float


@dataclass
class Threshold:
    """A decision threshold with where it came from.

    Args:
        value: the threshold.
        data: the normal data it was computed on.
        target_false_alarm_rate: the false-alarm rate it was set for, on that data.
        n_samples: how many normal scores it was computed from.
        date: ISO date-time of the calibration.
        method: how it was computed (e.g. ``quantile``).
        by: who calibrated it, ``user@host`` (empty for training).
        minutes: the normal footage's length, minutes.
        fps: the footage's frame rate, frames per second.
        alarms_per_day_budget: the alarm budget it was solved for (None: set by a frame rate).
        expected_alarms: episodes opened on that footage at these thresholds and episode rule.
        episodes: the episode rule it was set with.
        episodes_choice: why that rule (an alarm budget compares several).
    """

    value: float
    data: str = ""
    target_false_alarm_rate: float | None = None
    n_samples: int | None = None
    date: str = ""
    method: str = "quantile"
    by: str = ""
    minutes: float | None = None
    fps: float | None = None
    alarms_per_day_budget: float | None = None
    expected_alarms: AlarmRate | None = None
    episodes: EpisodeRule | None = None
    episodes_choice: str = ""



@dataclass
class SceneView:
    """The scene guard's reference view, learnt by ``occ calibrate`` from the calibration footage
    (:class:`occ.runtime.scoring.scene_guard.SceneReference` reads and writes it).

    Args:
        width: the reference frame's width, pixels (the guard's working size).
        height: its height, pixels.
        png: the footage's mean working frame, an 8-bit grey PNG in base64 (6 to 8 kB at 128x85).
        contrast_low: the footage's 1st percentile of the guard's contrast.
        frames: frames it was learnt from.
        data: the footage it was learnt from.
        date: when (ISO 8601).
        fine_wander: ``[x, y]``, shares of the width and height: how far the guard's sub-pixel
            alignment wanders on the footage (a shift within it is no creep); ``null`` in a view
            stored before schema 1.5: ``GuardLimits.fine_moved`` alone decides.
    """

    width: int
    height: int
    png: str
    contrast_low: float
    frames: int
    data: str = ""
    date: str = ""
    fine_wander: list[float] | None = None

    def validate(self) -> None:
        _positive_int("scene.width", self.width)
        _positive_int("scene.height", self.height)
        _positive_int("scene.frames", self.frames)
        if not math.isfinite(self.contrast_low) or self.contrast_low < 0:
            raise ManifestError(f"scene.contrast_low must be a finite number >= 0, got {self.contrast_low}")
        wander = self.fine_wander
        if wander is not None and (len(wander) != 2 or not all(math.isfinite(v) and 0 <= v < 1 for v in wander)):
            raise ManifestError(f"scene.fine_wander must be 2 numbers >= 0 and < 1 (shares of the width and height), got {wander}")


@dataclass
class DriftView:
    """The drift watch's reference, learnt by ``occ calibrate`` from the calibration footage
    (:class:`occ.runtime.scoring.drift.DriftReference` reads and writes it): the footage's frame
    scores at each light.

    Args:
        every: one frame in this many was kept.
        window: kept frames per test.
        stride: kept frames between tests.
        light_edges: edges of the brightness bins (grey levels, increasing; the outer two the
            darkest and brightest kept frames).
        score_quantiles: per bin, the frame score's quantiles from the lowest to the highest, evenly spaced.
        spread: the root mean square of the footage's own window statistics over the Kolmogorov
            distribution's: the test threshold's scale.
        frames: frames it was learnt from.
        data: the footage it was learnt from.
        date: when (ISO 8601).
    """

    every: int
    window: int
    stride: int
    light_edges: list[float]
    score_quantiles: list[list[float]]
    spread: float
    frames: int
    data: str = ""
    date: str = ""

    def validate(self) -> None:
        for name in ("every", "window", "stride", "frames"):
            _positive_int(f"drift.{name}", getattr(self, name))
        edges = self.light_edges
        if len(edges) < 2 or not all(math.isfinite(v) for v in edges) or any(b < a for a, b in zip(edges, edges[1:])):
            raise ManifestError("drift.light_edges must be at least 2 finite, increasing numbers")
        rows = self.score_quantiles
        if len(rows) != len(edges) - 1 or any(len(row) != len(rows[0]) or len(row) < 2 for row in rows):
            raise ManifestError(f"drift.score_quantiles must be {len(edges) - 1} rows (one per light bin) of one length >= 2")
        if any(not all(math.isfinite(v) for v in row) or any(b < a for a, b in zip(row, row[1:])) for row in rows):
            raise ManifestError("drift.score_quantiles: each row must be finite, increasing numbers")
        if not math.isfinite(self.spread) or self.spread <= 0:
            raise ManifestError(f"drift.spread must be a finite number > 0, got {self.spread}")


@dataclass
class Manifest:
    """Everything a deployed model needs. See the module docstring."""

    method: str
    input: InputSpec
    patches: PatchSpec | None = None
    regions: RegionSpec | None = None
    scoring: AloccScoring | AvidScoring | None = None
    thresholds: dict[str, Threshold] = field(default_factory=dict)
    episodes: EpisodeRule = field(default_factory=EpisodeRule)
    threshold_history: list[dict[str, Any]] = field(default_factory=list)
    scene: SceneView | None = None
    drift: DriftView | None = None
    training: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    occ_version: str = ""
    schema_version: str = SCHEMA_VERSION

    def validate(self) -> "Manifest":
        _choice("method", self.method, METHODS)
        self.input.validate()
        if self.method == "alocc":
            if self.patches is None:
                raise ManifestError("an alocc manifest needs 'patches'")
            self.patches.validate(self.input)
        if self.method == "avid":
            if self.regions is None:
                raise ManifestError("an avid manifest needs 'regions'")
            self.regions.validate(self.input)
        expected = SCORING_SPECS[self.method]
        if not isinstance(self.scoring, expected):
            raise ManifestError(f"an {self.method} manifest needs an {expected.__name__} 'scoring', got {type(self.scoring).__name__}")
        if self.method == "alocc":
            self.scoring.validate(self.patches.count(self.input))
        else:
            self.scoring.validate()
            _check_avid_input(self.scoring, self.input)
        allowed = THRESHOLD_NAMES[self.method]
        for name, threshold in self.thresholds.items():
            _choice(f"threshold name for {self.method}", name, allowed)
            if not isinstance(threshold.value, (int, float)) or not math.isfinite(threshold.value):
                raise ManifestError(f"threshold '{name}' is not a finite number: {threshold.value!r}")
        if "zeta" in self.thresholds and not 0 < self.thresholds["zeta"].value < 1:
            raise ManifestError(f"threshold 'zeta' must lie in (0, 1), got {self.thresholds['zeta'].value}")
        if "alpha" in self.thresholds and not self.thresholds["alpha"].value > 0:
            raise ManifestError(f"threshold 'alpha' must be > 0, got {self.thresholds['alpha'].value}")
        self.episodes.validate()
        if self.scene is not None:
            self.scene.validate()
        if self.drift is not None:
            self.drift.validate()
        _choice("export.precision", self.export.get("precision", "fp32"), PRECISIONS)
        return self

    def threshold(self, name: str) -> float:
        if name not in self.thresholds:
            raise ManifestError(f"the manifest has no '{name}' threshold; run `occ calibrate` first")
        return float(self.thresholds[name].value)

    def set_threshold(self, name: str, threshold: Threshold, replaced_by: dict[str, Any] | None = None) -> None:
        """Set a threshold, keeping the value it replaces in ``threshold_history``; ``replaced_by``
        (e.g. the hard-normal clips the new value was set with) goes into that history entry."""
        if name in self.thresholds:
            old = dataclasses.asdict(self.thresholds[name])
            self.threshold_history.append({"name": name, "replaced_on": now_iso(), **old,
                                           **({"replaced_by": replaced_by} if replaced_by else {})})
        self.thresholds[name] = threshold

    def with_thresholds(self, values: dict[str, float], data: str = "site override") -> "Manifest":
        """A copy whose thresholds are replaced by ``values`` (the running model's, not stored)."""
        copy = Manifest.from_dict(self.to_dict())
        for name, value in values.items():
            copy.set_threshold(name, Threshold(value=float(value), data=data, date=now_iso(), method="given"))
        return copy.validate()

    # ---- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> "Manifest":
        try:
            if not isinstance(data, dict):
                raise ManifestError("is not a JSON object")
            _check_schema(data.get("schema_version"))
            data = dict(data)
            method = data.get("method")
            _choice("method", method, METHODS)
            data["scoring"] = _build(SCORING_SPECS[method], data.get("scoring"), "scoring")
            return _build(cls, data, "manifest").validate()
        except ManifestError as exc:
            raise ManifestError(f"{source}: invalid manifest: {exc}") from None

    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> "Manifest":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{source}: manifest is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, source)

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``<path>`` atomically."""
        return write_atomic(Path(path), self.to_json().encode())


# ---- schema -----------------------------------------------------------------------------------------
def _check_schema(version: Any) -> None:
    """A schema this occ reads: its own major version, minor 1 or later (1.0, before occ 0.2, is not)."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
        raise ManifestError(f"schema_version missing or malformed: {version!r}")
    major, minor = (int(part) for part in version.split("."))
    ours = int(SCHEMA_VERSION.split(".")[0])
    if major > ours:
        raise ManifestError(f"schema {version} is newer than this occ understands ({SCHEMA_VERSION}); upgrade occ")
    if major < ours or minor < 1:
        raise ManifestError(f"schema {version} (occ before 0.2) is no longer read; export the model again with this occ")


def _check_avid_input(scoring: AvidScoring, spec: InputSpec) -> None:
    """The residual and region scorer the input allows, as training pairs them: the ``newest``
    residual predicts the triplet's newest frame; the region memory scores single images."""
    if scoring.residual == "newest" and spec.temporal != "avid_triplet":
        raise ManifestError(f"scoring.residual 'newest' needs the 'avid_triplet' input, got input.temporal '{spec.temporal}'")
    if scoring.region_scorer == "memory" and spec.temporal != "none":
        raise ManifestError(f"scoring.region_scorer 'memory' needs single images (input.temporal 'none'), got '{spec.temporal}'")


def _origins(start: int, stop: int, size: int, stride: int) -> tuple[int, ...]:
    origins = list(range(start, stop - size + 1, stride))
    if origins[-1] + size < stop:
        origins.append(stop - size)
    return tuple(origins)


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ManifestError(f"{name} must be a positive integer, got {value!r}")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ManifestError(f"{name} is {value!r}; allowed: {', '.join(allowed)}")
