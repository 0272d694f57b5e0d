"""``--data SPEC``: one string that names where video data comes from.

- ``walkway`` or ``walkway:seed=3,height=120,width=180,train_clips=6,...``: the built-in synthetic
  walkway, generated in memory (any :class:`WalkwayConfig` field can be set);
- a folder in the UCSD layout (``.../UCSDped2``, or a walkway written by ``occ data generate``);
- normal footage (:mod:`.footage`): a folder written by ``occ data record``, a video file, a glob of
  video files (``'cam/*.mp4'``), a folder of videos or image folders, or a data set folder whose
  ``Train/`` holds videos. Footage is split by time into training, validation and calibration parts.

docs/data.md shows every layout.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .common import Clip, DatasetError, clip_rows
from .footage import DEFAULT_SPLIT, RECORDING, Split, clock, footage_root, is_footage, open_footage, part_clips, split_footage, split_summary
from .ucsd import find_ucsd_root, load_ucsd
from .walkway import WalkwayConfig, generate_walkway


@dataclass
class VideoData:
    """Train (normal only) and test clips, with a provenance string for manifests and reports.

    Footage (split by time) also fills ``validation`` and ``calibration`` with its other parts and
    ``footage`` with which minutes of which file went where; data sets leave them empty.
    """

    description: str
    train: list[Clip] = field(default_factory=list)
    test: list[Clip] = field(default_factory=list)
    validation: list[Clip] = field(default_factory=list)
    calibration: list[Clip] = field(default_factory=list)
    footage: dict | None = None


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


def load_video_data(spec: str, splits: tuple[str, ...] = ("train", "test"), size: tuple[int, int] | None = None,
                    split: Split = DEFAULT_SPLIT) -> VideoData:
    """Resolve a data spec into clips.

    Args:
        spec: see the module docstring.
        splits: which parts to read: ``train``, ``test`` (empty where the data has no labelled
            test clips), and for footage ``validation`` and ``calibration``.
        size: optional ``(height, width)`` to resize frames to while reading (UCSD: area
            interpolation; footage: bilinear, as the runtime resizes).
        split: footage only: the shares of its time for training, validation and calibration.
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
    if not path.exists() and not is_footage(spec):
        raise DatasetError(f"{spec}: no such data folder or video file, and not 'walkway[:options]'")
    test = _labelled_test_clips(path, size) if "test" in splits else []
    if is_footage(spec):
        footage = open_footage(spec)
        pieces = split_footage(footage, split)
        parts = {name: part_clips(pieces, part, size) if name in splits else []
                 for name, part in (("train", "training"), ("validation", "validation"), ("calibration", "calibration"))}
        return VideoData(description=footage.description, test=test, footage=split_summary(footage, split), **parts)
    return VideoData(
        description=str(path.resolve()),
        train=load_ucsd(path, "train", size=size) if "train" in splits else [],
        test=test,
    )


def _labelled_test_clips(path: Path, size: tuple[int, int] | None) -> list[Clip]:
    """The UCSD ``Test/`` clips of a data folder; none for footage without a ``Test/`` part."""
    if not path.is_dir() or (path / RECORDING).is_file():
        return []
    if footage_root(str(path)) == path:  # a folder of footage, not a data set
        return []
    root = find_ucsd_root(path)
    return load_ucsd(root, "test", size=size) if (root / "Test").is_dir() else []


def describe_data(spec: str, split: Split = DEFAULT_SPLIT) -> dict:
    """``occ data info``: what a data spec holds, clip by clip; footage by the parts of its split,
    from the files' headers (no frame is decoded but the first of each file)."""
    if not is_footage(spec):
        data = load_video_data(spec)
        return {"title": data.description, "clips": clip_rows(data.train, data.test)}
    footage = open_footage(spec)
    split_footage(footage, split)
    test = _labelled_test_clips(Path(spec), None)
    rows = [{"split": piece.part, "clip": piece.file.name, "from": row["from"], "to": row["to"], "frames": piece.frames,
             "size": f"{piece.file.size[0]}x{piece.file.size[1]}"} for piece, row in ((p, p.row()) for p in footage.pieces)]
    title = (f"{footage.description}: {clock(footage.seconds)} of normal footage, split {split} % by time "
             "(training/validation/calibration)" + ("" if test else "; no labelled Test/ part"))
    return {"title": title, "clips": rows + [r for r in clip_rows([], test)], "footage": split_summary(footage, split)}
