"""Day and night profiles: which zones and thresholds a camera runs with, switched by the local
clock or by the frame's measured brightness. The active profile is recorded in each event.

A zone with ``profile = "day"`` (or ``"night"``) applies in that profile only; a zone without one
applies in both. ``[profiles.day]`` and ``[profiles.night]`` hold threshold overrides on top of
``[thresholds]``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..scoring.zones import Zone

PROFILES = ("day", "night")
SWITCHES = ("schedule", "brightness")


def clock_minutes(text: str) -> int | None:
    """``"HH:MM"`` (24 h) → minutes after midnight; None when it is not such a time."""
    hours, colon, minutes = text.partition(":")
    if not (colon and hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        return None
    value = int(hours) * 60 + int(minutes)
    return value if int(hours) < 24 and int(minutes) < 60 else None


@dataclass
class ProfileConfig:
    """How a camera switches between its day and night profiles.

    Attributes:
        switch: ``schedule`` (local clock times) or ``brightness`` (the frame's mean gray level).
        day_from: schedule: local time ``HH:MM`` the day profile starts.
        night_from: schedule: local time ``HH:MM`` the night profile starts.
        night_below: brightness: mean gray level (0–255) under which night starts.
        day_above: brightness: mean gray level over which day comes back (>= night_below: a
            frame between the two keeps the profile, so a flickering light does not toggle it).
        thresholds: per profile, threshold overrides on top of ``[thresholds]``.
    """

    switch: str = "schedule"
    day_from: str = "07:00"
    night_from: str = "19:00"
    night_below: float = 40.0
    day_above: float = 50.0
    thresholds: dict[str, dict[str, float]] = field(default_factory=lambda: {name: {} for name in PROFILES})


class ProfileSwitch:
    """The active profile of one camera, frame by frame."""

    def __init__(self, config: ProfileConfig):
        self.config = config
        self.active: str | None = None

    def update(self, image: np.ndarray, now: float | None = None) -> str:
        """The profile for this frame (``now``: Unix time, for the schedule; default: the clock)."""
        if self.config.switch == "schedule":
            self.active = self.scheduled(time.time() if now is None else now)
        else:
            level = float(np.asarray(image)[::4, ::4].mean())  # every 16th pixel: the mean of a frame, cheaply
            if self.active is None:
                self.active = "night" if level < self.config.night_below else "day"
            elif self.active == "day" and level < self.config.night_below:
                self.active = "night"
            elif self.active == "night" and level > self.config.day_above:
                self.active = "day"
        return self.active

    def scheduled(self, now: float) -> str:
        """``day`` or ``night`` at Unix time ``now`` by the local clock."""
        local = time.localtime(now)
        minute = local.tm_hour * 60 + local.tm_min
        day, night = clock_minutes(self.config.day_from), clock_minutes(self.config.night_from)
        if day < night:
            return "day" if day <= minute < night else "night"
        return "night" if night <= minute < day else "day"


def zones_in(zones: list[Zone], profile: str | None) -> list[Zone]:
    """The zones that apply in ``profile`` (None: no profiles, only the zones without one)."""
    return [zone for zone in zones if zone.profile in ("", profile)]
