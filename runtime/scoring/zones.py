"""Ignore zones and per-zone sensitivity: polygons in source-frame pixels, rasterised once per camera
to the network's geometry and applied by :func:`~occ.runtime.scoring.decide.decide`.

- An **ignore** zone's pixels never make a decision, a box or an event. AVID: a network pixel is
  ignored when its centre lies inside the polygon; ignored pixels leave the mask. ALOCC: a patch is
  ignored when more than :data:`PATCH_COVER` of its pixels are ignored; its score leaves the frame
  score and the mask.
- A **sensitivity** zone multiplies the threshold inside it by ``factor`` (2: twice as hard to fire;
  0.5: twice as easy). ALOCC: a patch over more than :data:`PATCH_COVER` covered by such a zone is
  held against ``factor · τ`` (its score is divided by ``factor``, so the frame score stays in units
  of τ). AVID's mask is made inside the graph from α, so AVID honours ignore zones only.

Numpy only: a camera box rasterises with the even-odd rule on pixel centres, no drawing library.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..manifest import Manifest
from ..preprocess.reference import PatchGrid

PATCH_COVER = 0.5  # an ALOCC patch follows a zone that covers more than this share of its pixels


class ZoneError(ValueError):
    """A zone that cannot be applied to a frame (one line: the zone and the problem)."""


@dataclass(frozen=True)
class Zone:
    """One polygon in source-frame pixels ``[(x, y), ...]`` (``x`` to the right, ``y`` down).

    Attributes:
        name: the zone's name in errors and overlays.
        points: the polygon's corners, at least 3.
        ignore: True: nothing inside is ever flagged; False: a sensitivity zone.
        factor: a sensitivity zone's threshold multiplier (> 0).
        profile: the profile the zone applies in (``day``, ``night``); "": in every one.
    """

    name: str
    points: tuple[tuple[float, float], ...]
    ignore: bool = True
    factor: float = 1.0
    profile: str = ""

    def outside(self, frame_size: tuple[int, int]) -> list[tuple[float, float]]:
        """The corners outside a frame of ``(height, width)`` (corners on its far edge are in)."""
        height, width = frame_size
        return [(x, y) for x, y in self.points if not (0 <= x <= width and 0 <= y <= height)]

    def outside_problem(self, frame_size: tuple[int, int]) -> str | None:
        """``zone NAME: point [x, y] is outside the WxH frame`` for the first corner outside, or None."""
        outside = self.outside(frame_size)
        if not outside:
            return None
        point = [int(v) if float(v).is_integer() else v for v in outside[0]]
        return f"zone {self.name}: point {point} is outside the {frame_size[1]}x{frame_size[0]} frame"


@dataclass
class ZoneMaps:
    """Zones at the network's geometry, for :func:`~occ.runtime.scoring.decide.decide`.

    Attributes:
        ignored: network pixels ``(H, W)`` that never count.
        patch_ignored: ALOCC: patches ``(P,)`` that never count; None for AVID.
        patch_factor: ALOCC: each patch's threshold multiplier ``(P,)``; None for AVID.
    """

    ignored: np.ndarray
    patch_ignored: np.ndarray | None = None
    patch_factor: np.ndarray | None = None
    zones: list[Zone] = field(default_factory=list)


def polygon_mask(points, height: int, width: int, scale_x: float = 1.0, scale_y: float = 1.0) -> np.ndarray:
    """Pixels ``(height, width)`` whose centre, times ``scale`` (a network pixel's size in source
    pixels), lies inside the polygon ``points`` in source pixels (even-odd rule)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    px, py = (xs + 0.5) * scale_x, (ys + 0.5) * scale_y
    inside = np.zeros((height, width), bool)
    corners = np.asarray(points, np.float64)
    for (x1, y1), (x2, y2) in zip(corners, np.roll(corners, -1, axis=0)):
        if y1 == y2:  # a horizontal edge never crosses a horizontal ray
            continue
        crosses = (y1 > py) != (y2 > py)
        at_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < at_x)
    return inside


def rasterise(zones: list[Zone], frame_size: tuple[int, int], manifest: Manifest) -> ZoneMaps:
    """Zones in source pixels of a ``(height, width)`` frame → :class:`ZoneMaps` at the network size.

    Raises:
        ZoneError: a zone with a corner outside the frame.
    """
    height, width = manifest.input.height, manifest.input.width
    scale_x, scale_y = frame_size[1] / width, frame_size[0] / height
    for zone in zones:
        problem = zone.outside_problem(frame_size)
        if problem:
            raise ZoneError(problem)
    masks = [polygon_mask(zone.points, height, width, scale_x, scale_y) for zone in zones]
    ignored = np.zeros((height, width), bool)
    for zone, mask in zip(zones, masks):
        if zone.ignore:
            ignored |= mask
    if manifest.method != "alocc":
        return ZoneMaps(ignored=ignored, zones=list(zones))
    boxes = PatchGrid.from_spec(manifest.patches, manifest.input).boxes()  # [top, left, bottom, right]

    def cover(mask: np.ndarray) -> np.ndarray:
        return np.array([mask[top:bottom, left:right].mean() for top, left, bottom, right in boxes])

    factor = np.ones(len(boxes))
    for zone, mask in zip(zones, masks):
        if not zone.ignore:
            factor[cover(mask) > PATCH_COVER] = zone.factor  # where zones overlap, the later one listed holds
    return ZoneMaps(ignored=ignored, patch_ignored=cover(ignored) > PATCH_COVER, patch_factor=factor, zones=list(zones))
