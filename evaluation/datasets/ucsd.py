"""UCSD Ped1/Ped2 folder layout.

    ROOT/Train/TrainNNN/*.tif            normal clips
    ROOT/Test/TestNNN/*.tif              test clips
    ROOT/Test/TestNNN_gt/*.bmp           pixel masks, where present
    ROOT/Test/UCSDpedN.m                 1-based inclusive anomalous frame ranges per test clip:
                                         TestVideoFile{end+1}.gt_frame = [61:180];

.jpg/.png frames are accepted as well. Frames are read as gray. Clips carry their frame rate where
the folder says which data it is (:func:`frame_rate`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from .common import Clip, DatasetError, labels_from_ranges
from .video import list_images, read_image
from .walkway import MARKER, WalkwayConfig

_CLIP_DIR = {"train": re.compile(r"^Train\d+$"), "test": re.compile(r"^Test\d+$")}
_GT_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_RANGE = re.compile(r"(\d+)\s*:\s*(\d+)")
_UCSD_PED = re.compile(r"^UCSDped[12]$", re.IGNORECASE)
# UCSD Ped1 and Ped2 (Mahadevan et al., CVPR 2010) were "recorded with a static camera at 10 fps":
# ALOCC (Sabokrou et al., CVPR 2018), Sec. 4; AVID (ACCV 2018), Sec. 4.1.
UCSD_PED_FPS = 10.0


def find_ucsd_root(path: str | Path) -> Path:
    """The folder holding ``Train/`` and ``Test/``: ``path`` itself or its single such child."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: UCSD folder not found")
    if (path / "Train").is_dir() or (path / "Test").is_dir():
        return path
    children = [c for c in sorted(path.iterdir()) if c.is_dir() and ((c / "Train").is_dir() or (c / "Test").is_dir())]
    if len(children) == 1:
        return children[0]
    raise DatasetError(f"{path}: no Train/ or Test/ folder (UCSD layout expected)")


def frame_rate(root: str | Path) -> float | None:
    """Frames per second of the clips under a UCSD-layout ``root``, where the folder tells.

    A walkway written by occ (``occ-dataset.json``): its configuration's rate. UCSD Ped1 or Ped2
    (the folder ``UCSDped1``/``UCSDped2`` or its ``Test/UCSDpedN.m``): 10. Anything else, or a
    description that cannot be read: None.
    """
    root = Path(root)
    marker = root / MARKER
    if marker.is_file():
        try:  # written before walkways had a rate: the default rate
            return float((json.loads(marker.read_text()).get("config") or {}).get("fps", WalkwayConfig.fps))
        except (OSError, ValueError, TypeError, AttributeError):
            return None  # a damaged description costs only the rate, not the frames
    if _UCSD_PED.match(root.name) or any(_UCSD_PED.match(m.stem) for m in (root / "Test").glob("*.m")):
        return UCSD_PED_FPS
    return None


def read_frame_ranges(m_file: str | Path) -> list[list[tuple[int, int]]]:
    """Per test clip, the list of 1-based inclusive anomalous ranges from a ``UCSDpedN.m`` file."""
    m_file = Path(m_file)
    try:
        text = m_file.read_text(errors="replace")
    except OSError as exc:
        raise DatasetError(f"{m_file}: cannot read ({exc.strerror})") from None
    clips = []
    for lineno, line in enumerate(text.splitlines(), 1):
        match = _GT_LINE.search(line)
        if not match:
            continue
        ranges = [(int(a), int(b)) for a, b in _RANGE.findall(match.group(1))]
        if not ranges or any(a < 1 or b < a for a, b in ranges):
            raise DatasetError(f"{m_file}:{lineno}: malformed gt_frame ranges: {match.group(0)}")
        clips.append(ranges)
    if not clips:
        raise DatasetError(f"{m_file}: no gt_frame entries")
    return clips


def _read_frames(folder: Path, size: tuple[int, int] | None) -> np.ndarray:
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{folder}: no frames")
    frames = []
    for path in files:
        frame = read_image(path)
        if frames and frame.shape != frames[0].shape and size is None:
            raise DatasetError(f"{path}: size {frame.shape} differs from the clip's {frames[0].shape}")
        if size is not None and frame.shape != size:
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        frames.append(frame)
    return np.stack(frames)


def _read_masks(folder: Path, count: int, size: tuple[int, int] | None) -> np.ndarray:
    files = list_images(folder)
    if len(files) != count:
        raise DatasetError(f"{folder}: {len(files)} masks for {count} frames")
    masks = []
    for path in files:
        mask = read_image(path)
        if size is not None and mask.shape != size:
            mask = cv2.resize(mask, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        masks.append(mask > 127)
    return np.stack(masks)


def clip_names(path: str | Path, split: str = "test") -> list[str]:
    """The clip folders of one split (``Train001``, …), in name order, without reading a frame.

    Raises:
        DatasetError: no such split folder, or no clip folder in it.
    """
    root = find_ucsd_root(path)
    if split not in _CLIP_DIR:
        raise DatasetError(f"{root}: split must be 'train' or 'test', got {split!r}")
    split_dir = root / split.capitalize()
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: folder not found")
    names = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and _CLIP_DIR[split].match(d.name))
    if not names:
        raise DatasetError(f"{split_dir}: no {split.capitalize()}NNN clip folders")
    return names


def load_ucsd(
    path: str | Path,
    split: str = "test",
    size: tuple[int, int] | None = None,
    clips: list[str] | None = None,
) -> list[Clip]:
    """Read the clips of one split.

    Args:
        path: the dataset folder (``UCSDped2`` or its parent).
        split: ``train`` (normal clips, all labels False) or ``test``.
        size: optional ``(height, width)`` to resize frames to while reading (saves memory).
        clips: optional clip names to keep (``["Train001", ...]``).

    Raises:
        DatasetError: a missing folder, unreadable frame, or counts that do not match.
    """
    root = find_ucsd_root(path)
    names = clip_names(root, split)
    split_dir = root / split.capitalize()
    ranges = None
    if split == "test":
        m_files = sorted(split_dir.glob("*.m"))
        if m_files:
            ranges = read_frame_ranges(m_files[0])
            if len(ranges) != len(names):
                raise DatasetError(f"{m_files[0]}: {len(ranges)} gt_frame entries for {len(names)} test clips")
    fps = frame_rate(root)
    out = []
    for index, name in enumerate(names):
        if clips is not None and name not in clips:
            continue
        frames = _read_frames(split_dir / name, size)
        labels = masks = None
        gt_dir = split_dir / f"{name}_gt"
        if split == "train":
            labels = np.zeros(len(frames), bool)
        if gt_dir.is_dir():
            masks = _read_masks(gt_dir, len(frames), frames.shape[1:] if size else None)
            labels = masks.reshape(len(masks), -1).any(axis=1)
        if ranges is not None:
            if max(b for _, b in ranges[index]) > len(frames):
                raise DatasetError(f"{split_dir / name}: gt_frame range ends past its {len(frames)} frames")
            labels = labels_from_ranges(ranges[index], len(frames))
        if labels is None:
            raise DatasetError(f"{split_dir}: no .m file and no {name}_gt masks, so no labels")
        out.append(Clip(name=name, frames=frames, labels=labels, masks=masks, fps=fps))
    return out
