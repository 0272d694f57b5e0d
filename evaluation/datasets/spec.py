"""``--data SPEC``: one string that names where video data comes from.

- ``walkway`` or ``walkway:seed=3,height=120,width=180,train_clips=6,...``: the built-in synthetic
  walkway, generated in memory (any :class:`WalkwayConfig` field can be set);
- a folder in the UCSD layout (``.../UCSDped2``, or a walkway written by ``occ data generate``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .common import Clip, DatasetError, clip_rows
from .ucsd import load_ucsd
from .walkway import WalkwayConfig, generate_walkway


@dataclass
class VideoData:
    """Train (normal only) and test clips, with a provenance string for manifests and reports."""

    description: str
    train: list[Clip] = field(default_factory=list)
    test: list[Clip] = field(default_factory=list)


def parse_walkway_spec(spec: str) -> WalkwayConfig:
    config = WalkwayConfig()
    _, _, options = spec.partition(":")
    types = {f.name: f.type for f in dataclasses.fields(WalkwayConfig)}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in types or key == "anomalies":
            raise DatasetError(f"{spec}: bad walkway option {item!r}; options: {', '.join(k for k in types if k != 'anomalies')}")
        cast = float if "float" in str(types[key]) else int
        try:
            setattr(config, key, cast(value))
        except ValueError:
            raise DatasetError(f"{spec}: walkway option {key} needs a number, got {value!r}") from None
    config.validate()
    return config


def load_video_data(spec: str, splits: tuple[str, ...] = ("train", "test"), size: tuple[int, int] | None = None) -> VideoData:
    """Resolve a data spec into clips.

    Args:
        spec: see the module docstring.
        splits: which splits to read (reading a UCSD test split needs its labels).
        size: optional ``(height, width)`` to resize UCSD frames to while reading.
    """
    if spec == "walkway" or spec.startswith("walkway:"):
        config = parse_walkway_spec(spec)
        data = generate_walkway(config)
        return VideoData(
            description=f"synthetic walkway seed={config.seed} {config.height}x{config.width}",
            train=data.train if "train" in splits else [],
            test=data.test if "test" in splits else [],
        )
    path = Path(spec)
    if not path.exists():
        raise DatasetError(f"{spec}: no such data folder, and not 'walkway[:options]'")
    return VideoData(
        description=str(path.resolve()),
        train=load_ucsd(path, "train", size=size) if "train" in splits else [],
        test=load_ucsd(path, "test", size=size) if "test" in splits else [],
    )


def describe_data(spec: str) -> dict:
    """``occ data info``: what a data spec holds, clip by clip."""
    data = load_video_data(spec)
    return {"title": data.description, "clips": clip_rows(data.train, data.test)}
