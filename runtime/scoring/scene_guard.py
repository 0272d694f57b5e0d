"""Scene guard: tells a change of the whole view (a covered lens, a moved or shaken camera, lost
focus, a lighting jump, a frozen or black stream) apart from a local anomaly, so the first is not
raised as the second. numpy and OpenCV only.

Cheap evidence, measured on a small grey copy of each frame (``GuardLimits.width`` pixels wide):

- ``frozen``: the frame repeats the previous one (mean absolute difference under
  ``frozen_level`` grey levels) for ``frozen_s`` seconds: live sensor noise never repeats;
- ``covered``: a black frame, or almost no contrast left (the coarse image's coefficient of
  variation under ``min_contrast`` of the reference's lowest);
- ``blurred``: the sharpness (variance of the Laplacian over the variance of the image, so a gain
  does not change it) under ``min_sharpness`` of its recent level (a ``baseline_s`` moving
  average: sensor noise adds to it, and the noise rises slowly as the light fades);
- ``lighting``: the mean brightness off its recent level (a ``baseline_s`` moving average) by more
  than the factor ``lighting``; dawn and dusk move it far slower;
- ``moved``: the view shifted against the reference by more than ``moved`` of the width (or
  height) along an axis, measured on the mean profiles of the rows and of the columns (a frame's
  thousands of pixels averaged: sensor noise and walkers hardly move them; a 2-D phase correlation
  whitens the spectrum, so at night the noise's frequencies outvote the scene's), each profile's
  centre matched on the reference's by normalized cross-correlation; an axis whose best
  correlation is under ``min_match`` has too little structure to tell and is left out, and a view
  found along neither axis (both under ``lost_match``) is moved too; and a view that crept by a
  fraction of a pixel: the frame's global shift against the reference by one Lucas–Kanade step
  (:class:`FineAlignment`: the reference's gradients, the pixels that differ from the reference
  by more than ``3 σ`` left out, so walkers do not pull it), reported once it passes ``fine_moved``
  of the width (height), the reference footage's own wander (:attr:`SceneReference.fine_wander`)
  and ``fine_z`` of its own standard error (the sensor noise's, so the night's noise does not fire
  it). The standard error takes the pixels' residuals as independent, and a real camera's frames
  wander by a tenth of a pixel or more at many of them (UCSD Ped2: 0.1–0.3 source pixels, 8–23
  standard errors, on untouched clips), so the wander learnt from the camera's own footage, not the
  standard error, is what tells a creep from the camera's normal sway. A creep only grows against
  the fixed reference: 2 % of the width per minute is 0.07 % after 2 s, over ``fine_moved`` then
  and under ``moved`` for 30 s;
- ``alpha`` (AVID only, when given): more than ``alpha_share`` of the frame over α.

While nothing is seen the guard checks every ``check_every``-th frame (a whole-frame change lasts
far longer than a frame: every other frame at 10 frames per second is 5 checks a second, at half
the cost), a frame in between returning the last check's verdict unmeasured; once a check sees a
reason, every frame is checked until the last ``confirm_window`` checks see none, so a change
whose reason shows on every frame is confirmed at most ``check_every - 1`` frames later than by
checking every frame. A reason counts
once it holds on ``confirm`` of the last ``confirm_window`` checks; the change is over after
``clear_s`` seconds with none. While it lasts the moving averages stay where they were, so a
lasting change (a bump to a new view, a lamp left on) holds until the camera is calibrated
again (``occ calibrate``) and the service restarted.

The reference (:class:`SceneReference`: the mean frame, the lowest contrast, the sub-pixel wander)
comes from normal footage: the calibration footage
(``occ calibrate`` stores it in the manifest's ``scene``, :meth:`SceneReference.from_view`) or,
when the model has none, the first ``reference_s`` seconds of the stream, during which only
``frozen``, black, ``blurred`` and ``lighting`` are checked. A frame of another size than the
reference's is resized to it (the same camera at another resolution).
"""
from __future__ import annotations

import base64
import math
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..files import now_iso
from ..manifest import ManifestError, SceneView
from ..preprocess.reference import to_gray

# the first that holds names the change (blurred before moved: a blur shifts the sub-pixel alignment too)
REASONS = ("frozen", "covered", "blurred", "moved", "lighting", "alpha")
BLACK_LEVEL = 4.0  # grey levels: a frame darker than this is a black stream or a covered lens
COARSE = 8  # the contrast is measured on the frame shrunk this much more (sensor noise averages out)
SEARCH = 0.125  # share of each end of a reference profile left out of its matched centre: the widest shift measured
LUMA = np.array([[0.114, 0.587, 0.299, 0.0]], np.float32)  # to_gray's BT.601 weights of B, G, R (and none of alpha)
AREA_BLOCK = 32  # most output pixels in one repeating block of area weights resized by matrix products


@dataclass(frozen=True)
class GuardLimits:
    """Every limit of the scene guard, with its default (the one place they live).

    Args:
        width: the guard's working frame width, pixels (at most the frame's; the height keeps the aspect).
        moved: a shift against the reference beyond this share of the width (height) is a moved view.
        fine_moved: a sub-pixel shift (:class:`FineAlignment`) beyond this share of the width
            (height) is a moved view too, when it is also beyond ...
        fine_z: ... this many of its standard errors.
        min_match: a profile's best correlation with the reference's under this tells nothing along its axis.
        lost_match: both profiles' best correlations under this: the reference view is not found.
        lighting: a brightness this many times its recent level (or its inverse) is a lighting jump.
        baseline_s: seconds over which the recent brightness and sharpness are averaged.
        min_contrast: contrast under this share of the reference's lowest is a covered lens.
        min_sharpness: sharpness under this share of its recent level is lost focus.
        frozen_s: seconds of repeated frames that make a frozen stream.
        frozen_level: mean absolute difference, grey levels, under which a frame repeats the last.
        alpha_share: AVID: share of the frame over α beyond which the whole view changed.
        check_every: while the last ``confirm_window`` checks saw no reason, the next check comes
            this many frames after the last (the first frame is checked); a frame in between
            returns the last check's verdict (``changed``, ``reason``, ``evidence``; ``suspect``
            false) without measuring anything. Once a check sees a reason, every frame is checked,
            so a change whose reason shows on every frame is confirmed at most ``check_every - 1``
            frames later than with 1. The
            delays stay in seconds (``frozen_s``, ``clear_s``, ``baseline_s``, ``reference_s``
            compare timestamps); ``confirm`` and ``confirm_window`` count checks.
        confirm: a reason holds once it is seen on this many ...
        confirm_window: ... of the last this many checks.
        clear_s: seconds with no reason before the change is over.
        reference_s: with no reference given, seconds of the stream's start it is built from.
        fps: frames per second assumed when frames come without timestamps.
    """

    width: int = 128
    moved: float = 0.01
    fine_moved: float = 0.0005
    fine_z: float = 3.0
    min_match: float = 0.8
    lost_match: float = 0.5
    lighting: float = 1.3
    baseline_s: float = 30.0
    min_contrast: float = 0.4
    min_sharpness: float = 0.5
    frozen_s: float = 1.0
    frozen_level: float = 0.25
    alpha_share: float = 0.5
    check_every: int = 2
    confirm: int = 3
    confirm_window: int = 5
    clear_s: float = 2.0
    reference_s: float = 60.0
    fps: float = 10.0

    def __post_init__(self):
        if self.check_every < 1:
            raise ValueError(f"GuardLimits.check_every must be 1 or more, not {self.check_every}")


def guard_frame(frame: np.ndarray, width: int) -> np.ndarray:
    """The guard's working copy of a raw uint8 frame: grey, float32, ``width`` pixels wide (or
    the frame's own width when smaller: nothing is gained by enlarging it).

    It is ``cv2.resize(to_gray(frame), ..., interpolation=cv2.INTER_AREA)`` to float32's rounding
    (``tests/runtime/test_scene_guard.py`` holds it there: the stored references were made so),
    computed the cheap way: a colour frame's luma in one OpenCV pass, and the area average by
    :func:`area_resize`."""
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] in (3, 4):
        gray = cv2.transform(frame.astype(np.float32), LUMA[:, : frame.shape[2]])  # numpy's three passes take 4 times as long
    else:
        gray = to_gray(frame)
    width = min(width, gray.shape[1])
    height = max(COARSE, int(round(gray.shape[0] * width / gray.shape[1])))
    return area_resize(gray, width, height)


@lru_cache(maxsize=64)
def _area_weights(length: int, size: int) -> np.ndarray | None:
    """INTER_AREA's weights from ``length`` pixels down to ``size``, ``(size, length)`` over the
    greatest common divisor: they repeat every ``length / gcd`` source pixels. ``None`` when a
    block has more than :data:`AREA_BLOCK` outputs (a product then costs more than OpenCV's resize)."""
    common = math.gcd(length, size)
    sources, outputs = length // common, size // common
    if outputs > AREA_BLOCK:
        return None
    edges = np.arange(outputs + 1) * (sources / outputs)
    pixel = np.arange(sources)
    overlap = np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel)
    weights = (np.clip(overlap, 0.0, None) * (outputs / sources)).astype(np.float32)
    weights.flags.writeable = False
    return weights


def area_resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)`` of a float32 H×W
    image, to float32's rounding, at about a third of its cost when shrinking by a ratio that is not an
    integer (OpenCV's general area path; 360 to 128 pixels): the weights repeat in small blocks, so
    each axis is a batch of small matrix products. Other cases (enlarging, long blocks) are OpenCV's."""
    rows, cols = image.shape
    if (rows, cols) == (height, width):
        return image
    down_rows = _area_weights(rows, height) if height <= rows else None
    down_cols = _area_weights(cols, width) if width <= cols else None
    if down_rows is None or down_cols is None:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    out = image.astype(np.float32, copy=False)
    if height != rows:
        out = (down_rows @ out.reshape(-1, down_rows.shape[1], cols)).reshape(height, cols)
    if width != cols:
        # one 2-D product over every block of every row: half the time of a batch of products, one per row
        out = (out.reshape(-1, down_cols.shape[1]) @ down_cols.T).reshape(height, width)
    return out


def contrast(work: np.ndarray) -> float:
    """Coefficient of variation of the frame shrunk by :data:`COARSE` (a gain does not change it)."""
    coarse = area_resize(work, max(2, work.shape[1] // COARSE), max(2, work.shape[0] // COARSE))
    mean, std = cv2.meanStdDev(coarse)
    return float(std[0, 0] / max(float(mean[0, 0]), 1.0))


def brightness_and_sharpness(work: np.ndarray) -> tuple[float, float]:
    """The mean grey level, and the sharpness: the variance of the Laplacian over the variance of
    the frame (a gain does not change it)."""
    mean, spread = cv2.meanStdDev(work)
    edges = float(cv2.meanStdDev(cv2.Laplacian(work, cv2.CV_32F))[1][0, 0])
    spread = float(spread[0, 0])
    return float(mean[0, 0]), edges * edges / max(spread * spread, 1e-6)


@dataclass
class SceneReference:
    """What the normal view looks like: its mean frame, the lowest contrast seen, and how far the
    sub-pixel alignment wanders on the footage it was learnt from.

    ``fine_wander``: ``(x, y)``, shares of the width and height: a sub-pixel shift within it is the
    camera's own (UCSD Ped2's untouched clips sit 0.1–0.3 source pixels off their mean view), so
    only a shift beyond it counts as a creep. ``None``
    (a reference stored before it was learnt): ``GuardLimits.fine_moved`` alone decides.
    """

    frame: np.ndarray
    contrast_low: float
    frames: int = 0
    fine_wander: tuple[float, float] | None = None

    @classmethod
    def from_frames(cls, frames: Iterable[np.ndarray], limits: GuardLimits = GuardLimits()) -> "SceneReference":
        """Build it from normal raw frames (the calibration footage, a subsample is enough).

        The lowest contrast is the 1st percentile, so a rare odd frame of the footage does not set it.
        """
        builder = ReferenceBuilder(limits)
        for frame in frames:
            builder.add(frame)
        reference = builder.reference()
        if reference is None:
            raise ValueError("a scene reference needs at least one frame")
        return reference

    def to_view(self, data: str = "") -> SceneView:
        """The manifest's ``scene``: the mean frame as an 8-bit PNG (a grey level's rounding is far
        under the sensor noise of one frame)."""
        ok, png = cv2.imencode(".png", np.clip(np.round(self.frame), 0, 255).astype(np.uint8))
        if not ok:
            raise ValueError("the scene reference could not be encoded as PNG")
        wander = None if self.fine_wander is None else [round(float(v), 7) for v in self.fine_wander]
        return SceneView(width=int(self.frame.shape[1]), height=int(self.frame.shape[0]), png=base64.b64encode(png.tobytes()).decode(),
                         contrast_low=round(self.contrast_low, 6), frames=max(1, self.frames), data=data, date=now_iso(),
                         fine_wander=wander)

    @classmethod
    def from_view(cls, view: SceneView) -> "SceneReference":
        """From the manifest's ``scene``; :class:`ManifestError` in one line when it does not decode."""
        try:
            frame = cv2.imdecode(np.frombuffer(base64.b64decode(view.png, validate=True), np.uint8), cv2.IMREAD_GRAYSCALE)
        except (ValueError, TypeError):
            frame = None
        if frame is None or frame.shape != (view.height, view.width):
            raise ManifestError(f"scene.png is not a {view.width}x{view.height} grey PNG in base64")
        wander = None if view.fine_wander is None else (float(view.fine_wander[0]), float(view.fine_wander[1]))
        return cls(frame.astype(np.float32), float(view.contrast_low), view.frames, wander)


class ReferenceBuilder:
    """Builds a :class:`SceneReference` from normal frames one at a time (a running sum: minutes of
    frames are never kept, only an evenly spaced sample of at most :attr:`KEPT` working frames,
    whose sub-pixel shifts against the finished mean frame give its ``fine_wander``). A frame of
    another size than the first starts it over.

    Args:
        limits: the guard's limits (its working width).
    """

    KEPT = 200  # working frames kept for the wander: 4 MB at 128x85 in float16
    # the wander is this quantile of a sample's absolute shifts (one odd frame, a truck filling the
    # view, does not set it) times this margin: a few minutes of footage show less of the camera's
    # wander than the hours watched later (on UCSD Ped2 the watched clips' largest shift is up to 1.2 times
    # the calibration clips' 99th percentile)
    WANDER_QUANTILE = 0.99
    WANDER_MARGIN = 1.5

    def __init__(self, limits: GuardLimits = GuardLimits()):
        self.limits = limits
        self._sum: np.ndarray | None = None
        self._contrasts: list[float] = []
        self._kept: list[np.ndarray] = []
        self._keep_every = 1  # doubled, and every other kept frame dropped, each time KEPT are kept

    @property
    def frames(self) -> int:
        return len(self._contrasts)

    def add(self, frame: np.ndarray) -> None:
        """Add a raw uint8 frame."""
        self.add_work(guard_frame(frame, self.limits.width))

    def add_work(self, work: np.ndarray) -> None:
        """Add a frame already made by :func:`guard_frame`."""
        if self._sum is None or self._sum.shape != work.shape:
            self._sum, self._contrasts, self._kept, self._keep_every = np.zeros(work.shape), [], [], 1
        if self.frames % self._keep_every == 0:
            self._kept.append(work.astype(np.float16))  # a step of 1/8 grey level: far under the sensor noise
            if len(self._kept) >= self.KEPT:
                self._kept, self._keep_every = self._kept[::2], 2 * self._keep_every
        self._sum += work
        self._contrasts.append(contrast(work))

    def tapped(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``frames`` passed on unchanged, each added on the way (footage streamed to a scorer)."""
        for frame in frames:
            self.add(frame)
            yield frame

    def reference(self) -> SceneReference | None:
        """The reference of the frames added so far (``None`` before the first)."""
        if self._sum is None:
            return None
        frame = (self._sum / self.frames).astype(np.float32)
        fine = FineAlignment(frame)
        # a shift within fine_z of its standard error counts as none: the guard's z test already
        # takes the sensor noise's scatter (5 times the day's at night) for no creep, and learning it
        # here too would raise the bound by day as far as the night's noise
        lim = self.limits
        shifts = [[abs(m[f"fine_{a}"]) if m[f"fine_z_{a}"] > lim.fine_z else 0.0 for a in "xy"]
                  for m in (fine.measure(w.astype(np.float32)) for w in self._kept) if m]
        wander = None
        if shifts:
            wander = tuple(float(v) for v in self.WANDER_MARGIN * np.quantile(shifts, self.WANDER_QUANTILE, axis=0))
        return SceneReference(frame, float(np.quantile(self._contrasts, 0.01)), self.frames, wander)


@dataclass
class GuardState:
    """The guard's verdict on one frame.

    Attributes:
        changed: the whole view is changed (alarms are held).
        reason: the change's reason (one of :data:`REASONS`), or ``""``.
        started: the change began on this frame.
        ended: the change ended on this frame.
        suspect: a reason is seen on this frame, confirmed or not (hold alarms on it too: an
            anomaly event must not open in the frames before the change is confirmed).
        evidence: this frame's measurements (brightness, contrast, sharpness, shifts, ...).
    """

    changed: bool = False
    reason: str = ""
    started: bool = False
    ended: bool = False
    suspect: bool = False
    evidence: dict[str, float] = field(default_factory=dict)

    @property
    def holds_alarms(self) -> bool:
        return self.changed or self.suspect

    def to_json(self) -> dict:
        """The event line of a change's start or end (``occ calibrate`` re-learns the view)."""
        return {"reason": self.reason, "state": "started" if self.started else "ended" if self.ended else "ongoing",
                "needs": "occ calibrate" if self.changed else "", "evidence": {k: round(v, 4) for k, v in self.evidence.items()}}


class SceneGuard:
    """The scene guard of one camera: :meth:`update` once per frame.

    Args:
        reference: the normal view; ``None`` builds it from the first ``limits.reference_s`` seconds.
        limits: the guard's limits.
    """

    def __init__(self, reference: SceneReference | None = None, limits: GuardLimits = GuardLimits()):
        self.limits, self.reference = limits, reference
        self._learning = ReferenceBuilder(limits)
        self._last: np.ndarray | None = None
        self._repeat_since: float | None = None
        self._baseline: dict[str, float] = {}  # recent brightness and sharpness
        self._baseline_t: float | None = None
        self._followed = 0  # frames the baseline has followed
        self._seen: dict[str, deque[bool]] = {r: deque(maxlen=limits.confirm_window) for r in REASONS}
        self._quiet_since: float | None = None
        self._frames = 0
        self._last_t = 0.0  # timestamp of the last checked frame
        self._last_state = GuardState()  # the last check's verdict
        self._next_check = 0  # frame count at which the next check is due while nothing is seen
        self._fine: FineAlignment | None = None
        self._profiles: ProfileMatch | None = None
        self.changed, self.reason, self.since = False, "", 0.0

    def update(self, frame: np.ndarray, timestamp: float | None = None, alpha_share: float | None = None) -> GuardState:
        """Judge one raw uint8 frame (``timestamp`` in seconds; frame count / ``fps`` when None);
        a frame between checks (``limits.check_every``) returns the last check's verdict, with
        ``started``, ``ended`` and ``suspect`` false (a change starts and ends on a checked frame,
        and once a check sees a reason every frame is checked).

        ``alpha_share``: AVID's share of the frame over α for this frame, when the model is AVID.
        """
        lim = self.limits
        t = self._frames / lim.fps if timestamp is None else float(timestamp)
        due = self._frames >= self._next_check or any(any(seen) for seen in self._seen.values())
        self._frames += 1
        if not due:
            return GuardState(changed=self.changed, reason=self.reason if self.changed else "", evidence=self._last_state.evidence)
        self._next_check = self._frames - 1 + lim.check_every
        work = guard_frame(frame, lim.width)
        if self.reference is not None and work.shape != self.reference.frame.shape:
            work = cv2.resize(work, self.reference.frame.shape[::-1], interpolation=cv2.INTER_AREA)
        evidence = self._measure(work, t, alpha_share)
        flags = self._flags(evidence)
        for reason in REASONS:
            self._seen[reason].append(flags.get(reason, False))
        held = [r for r in REASONS if sum(self._seen[r]) >= lim.confirm]
        state = GuardState(evidence=evidence, suspect=any(flags.values()))
        if held:
            self._quiet_since = None
            if not self.changed:
                self.changed, self.since, state.started = True, t, True
            self.reason = held[0]
        elif self.changed:
            if any(flags.values()):
                self._quiet_since = None
            elif self._quiet_since is None:
                self._quiet_since = t
            if self._quiet_since is not None and t - self._quiet_since >= lim.clear_s:
                self.changed, state.ended, self._quiet_since = False, True, None
        state.changed, state.reason = self.changed, self.reason if (self.changed or state.ended) else ""
        if not self.changed:
            self.reason = ""
            self._follow(evidence, t)
        self._last, self._last_t, self._last_state = work, t, state
        return state

    def _measure(self, work: np.ndarray, t: float, alpha_share: float | None) -> dict[str, float]:
        lim = self.limits
        brightness, sharp = brightness_and_sharpness(work)
        evidence = {"brightness": brightness, "sharpness": sharp}
        if self._last is not None and cv2.norm(work, self._last, cv2.NORM_L1) / work.size < lim.frozen_level:
            # the frame repeats the last checked one: repeated since that one's time
            self._repeat_since = self._last_t if self._repeat_since is None else self._repeat_since
            evidence["frozen_s"] = t - self._repeat_since
        else:
            self._repeat_since = None
            evidence["frozen_s"] = 0.0
        if self.reference is None:
            self._learning.add_work(work)
            if t >= lim.reference_s or self._learning.frames >= lim.reference_s * lim.fps / lim.check_every:
                self.reference, self._learning = self._learning.reference(), ReferenceBuilder(lim)
            return evidence
        evidence["contrast"] = contrast(work)
        evidence.update(self._alignment(work))
        if alpha_share is not None:
            evidence["alpha_share"] = float(alpha_share)
        return evidence

    def _flags(self, e: dict[str, float]) -> dict[str, bool]:
        lim, ref = self.limits, self.reference
        flags = {"frozen": e["frozen_s"] >= lim.frozen_s, "covered": e["brightness"] < BLACK_LEVEL}
        if "match_x" in e:
            # an axis along which the view has too little structure (a walkway's length at night) says nothing
            shifts = [e[f"shift_{a}"] for a in "xy" if e[f"match_{a}"] >= lim.min_match]
            lost = max(e["match_x"], e["match_y"]) < lim.lost_match
            # a creep is a shift beyond the reference footage's own wander as well as beyond fine_moved
            wander = ref.fine_wander if ref is not None and ref.fine_wander is not None else (0.0, 0.0)
            crept = any(abs(e[f"fine_{a}"]) > max(lim.fine_moved, wander[i]) and e[f"fine_z_{a}"] > lim.fine_z
                        for i, a in enumerate("xy") if f"fine_{a}" in e)
            flags["moved"] = lost or crept or max(shifts, default=0.0) > lim.moved
        if self._baseline:
            ratio = (e["brightness"] + 1) / (self._baseline["brightness"] + 1)
            flags["lighting"] = max(ratio, 1 / ratio) > lim.lighting
            flags["blurred"] = e["sharpness"] < lim.min_sharpness * self._baseline["sharpness"]
        if "contrast" in e and ref is not None:
            flags["covered"] |= e["contrast"] < lim.min_contrast * ref.contrast_low
        if "alpha_share" in e:
            flags["alpha"] = e["alpha_share"] > lim.alpha_share
        return flags

    def _alignment(self, work: np.ndarray) -> dict[str, float]:
        """Shift of the view against the reference's, along each axis, from the mean profiles of
        rows and columns (thousands of pixels averaged: sensor noise and walkers hardly move them)."""
        ref = self.reference.frame
        if self._fine is None or self._fine.reference is not ref:
            # the reference's profiles and gradients are computed once, not on every check
            self._fine, self._profiles = FineAlignment(ref), ProfileMatch(ref)
        shift_x, match_x, shift_y, match_y = self._profiles.measure(work)
        out = {"shift_x": shift_x, "match_x": match_x, "shift_y": shift_y, "match_y": match_y}
        out.update(self._fine.measure(work))
        return out

    def _follow(self, evidence: dict[str, float], t: float) -> None:
        """The recent brightness and sharpness: exponential averages over ``baseline_s`` (frozen while changed).

        Until ``baseline_s`` of frames are followed, each weighs at least 1 / frames followed: the plain
        mean so far, so the first frame does not stand for the whole warm-up (a clip's sharpness
        wanders by a factor of 2 in 30 s of normal footage, and half the first frame's is ``blurred``).
        """
        self._followed += 1
        decay = 1.0 if self._baseline_t is None else 1 - math.exp(-max(t - self._baseline_t, 0.0) / self.limits.baseline_s)
        weight = max(decay, 1.0 / self._followed)
        for key in ("brightness", "sharpness"):
            self._baseline[key] = self._baseline.get(key, evidence[key]) + weight * (evidence[key] - self._baseline.get(key, evidence[key]))
        self._baseline_t = t



class ProfileMatch:
    """The shift of a frame's mean profiles (the mean of its columns, along x; of its rows, along y)
    against the reference's: each reference profile's centre (all but :data:`SEARCH` of each end)
    matched by normalized cross-correlation (OpenCV's ``TM_CCOEFF_NORMED``, to float rounding),
    refined to a sub-pixel by a parabola through the peak. The centres' deviations from their means,
    laid at each offset, and the ones that sum each window are one matrix made once, both axes in
    it: a frame costs its two profiles and one product with that matrix.

    Args:
        reference: the reference's working frame (:attr:`SceneReference.frame`).
    """

    def __init__(self, reference: np.ndarray):
        height, width = reference.shape
        # a product: cheaper than cv2.reduce on a frame this small
        self._column_mean = np.full(height, 1.0 / height, np.float32)
        self._row_mean = np.full(width, 1.0 / width, np.float32)
        profiles = self._profiles(reference.astype(np.float32, copy=False))
        self.lengths = (width, height)
        self.margins = tuple(max(1, int(round(SEARCH * n))) for n in self.lengths)
        self._offsets = [2 * m + 1 for m in self.margins]
        self._split = self._offsets[0]  # the x offsets come first, then the y offsets
        # rows: the template at each offset (x, then y); then the ones over each window (x, then y)
        count = sum(self._offsets)
        self._windows = np.zeros((2 * count, width + height))
        self._sizes, self._norms = np.zeros(count), np.zeros(count)
        row, start = 0, 0
        for length, margin, offsets in zip(self.lengths, self.margins, self._offsets):
            centre = profiles[start + margin : start + length - margin]
            template = centre - centre.mean()
            for k in range(offsets):
                self._windows[row + k, start + k : start + k + len(centre)] = template
                self._windows[count + row + k, start + k : start + k + len(centre)] = 1.0
            self._sizes[row : row + offsets], self._norms[row : row + offsets] = len(centre), np.sqrt(template @ template)
            row, start = row + offsets, start + length

    def _profiles(self, work: np.ndarray) -> np.ndarray:
        """The mean of the columns, then the mean of the rows, one after the other (float64)."""
        return np.concatenate((self._column_mean @ work, work @ self._row_mean)).astype(np.float64)

    def measure(self, work: np.ndarray) -> tuple[float, float, float, float]:
        """``(shift_x, match_x, shift_y, match_y)`` of a working frame of the reference's size: each
        shift a share of the width (height), each match the best correlation."""
        profiles = self._profiles(work)
        count = len(self._sizes)
        # a template's mean is 0, so the window's mean drops out of their product
        sums = self._windows @ np.array((profiles, profiles * profiles)).T
        products, totals, squares = sums[:count, 0], sums[count:, 0], sums[count:, 1]
        bound = np.sqrt(np.maximum(squares - totals * totals / self._sizes, 0.0)) * self._norms
        # as OpenCV: a window with no spread (a flat profile) correlates 0
        scores = np.clip(np.divide(products, bound, out=np.zeros(count), where=np.abs(products) < 1.125 * bound), -1.0, 1.0)
        out = []
        for axis_scores, length, margin in zip((scores[:self._split], scores[self._split:]), self.lengths, self.margins):
            best = int(np.argmax(axis_scores))  # the first of equal bests
            offset = 0.0
            if 0 < best < len(axis_scores) - 1:
                left, mid, right = axis_scores[best - 1 : best + 2].tolist()
                curvature = left - 2 * mid + right
                offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
            out += [abs(best + offset - margin) / length, float(axis_scores[best])]
        return tuple(out)


class FineAlignment:
    """The sub-pixel shift of a frame against the reference, and its standard error: one
    Lucas–Kanade step of a global translation, both frames divided by their mean (a gain moves
    nothing). Pixels that differ from the reference by more than 3 robust σ (walkers, a car) are
    left out. The reference's gradients are computed once; a frame costs a few dot products.

    Args:
        reference: the reference's working frame (:attr:`SceneReference.frame`).
    """

    BORDER = 2  # pixels of each edge left out: the gradients there see the border, not the view

    def __init__(self, reference: np.ndarray):
        self.reference = reference
        b = self.BORDER
        ref = reference / max(float(reference.mean()), 1.0)
        # Sobel over 8: the gradient in grey levels per pixel, smoothed across (noise averages out)
        gx = cv2.Sobel(ref, cv2.CV_32F, 1, 0, ksize=3)[b:-b, b:-b].ravel() / 8
        gy = cv2.Sobel(ref, cv2.CV_32F, 0, 1, ksize=3)[b:-b, b:-b].ravel() / 8
        self._ref = np.ascontiguousarray(ref[b:-b, b:-b])
        self._gradients = np.stack([gx, gy])
        # a frame's mask of kept pixels times these: the gradients' products summed over the kept pixels
        self._moments = np.stack([gx * gx, gx * gy, gy * gy])
        self._width, self._height = float(reference.shape[1]), float(reference.shape[0])

    def measure(self, work: np.ndarray) -> dict[str, float]:
        """``fine_x``, ``fine_y``: the shift, shares of the width and height; ``fine_z_x``,
        ``fine_z_y``: each over its standard error. Empty when the frame tells nothing (black)."""
        b = self.BORDER
        live = work[b:-b, b:-b]
        mean = float(cv2.mean(live)[0])
        if mean < BLACK_LEVEL:
            return {}
        diff = live / mean
        diff -= self._ref
        diff = diff.ravel()
        spread = np.abs(diff)
        sigma = 1.4826 * _median(spread[::3])  # every 3rd pixel: as good a σ, a third of the cost
        inliers = spread < 3 * sigma
        used = int(np.count_nonzero(inliers))
        keep = inliers.astype(np.float32)
        xx, xy, yy = (float(v) for v in self._moments @ keep)
        det = xx * yy - xy * xy
        if sigma <= 0 or det <= 1e-12 or used < 16:
            return {}
        kept = diff * keep
        along_x, along_y = (float(v) for v in self._gradients @ kept)
        # the step: shift = -M⁻¹ g, M = [[xx, xy], [xy, yy]], g the gradients' products with the kept differences
        shift_x, shift_y = (xy * along_y - yy * along_x) / det, (xy * along_x - xx * along_y) / det
        # the kept pixels' squared residual after it, Σ keep (diff + gradient · shift)², is Σ keep diff² + shift · g
        variance = max(float(kept @ diff) + shift_x * along_x + shift_y * along_y, 0.0) / (used - 2)
        error_x, error_y = math.sqrt(variance * yy / det), math.sqrt(variance * xx / det)
        return {"fine_x": shift_x / self._width, "fine_y": shift_y / self._height,
                "fine_z_x": abs(shift_x) / max(error_x, 1e-12), "fine_z_y": abs(shift_y) / max(error_y, 1e-12)}


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D float array without NaNs, by its own partition, without its checks.

    An even count's lower middle is the largest of the partition's lower half: one selection,
    a quarter of the time of selecting both middles."""
    half = len(values) // 2
    parted = np.partition(values, half)
    if len(values) % 2:
        return float(parted[half])
    return float((parted[:half].max() + parted[half]) / 2)
