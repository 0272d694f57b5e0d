"""What every source gives: frames with their number and capture time, and counters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


class SourceError(ValueError):
    """A source that cannot be opened or read; one line naming it and the problem."""


@dataclass
class Frame:
    """One captured frame: the image (uint8 gray or BGR), its number and capture time (seconds)."""

    image: np.ndarray
    index: int
    timestamp: float


@dataclass
class SourceStats:
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    connected: bool = False
    unreadable: int = 0  # frames skipped because they could not be decoded (a broken file in a folder)


class Source:
    """Base class: iterate to get :class:`Frame` objects; ``close()`` (or ``with``) releases it."""

    live = False

    def __init__(self, spec: str):
        self.spec = spec
        self.stats = SourceStats()

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask a live source's reader to stop (a file source ends when its consumer stops reading)."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
