"""The synthetic walkway: occ's built-in data, with exact pixel ground truth.

A fixed camera looks at a two-lane footpath between grass verges. Normal activity: small upright
pedestrians walking at walking speed, rightwards in the upper lane and leftwards in the lower lane
(the flow). The scene has a textured static background, camera noise and a slow lighting drift.
Test clips add one anomalous object each:

- ``car``: a large bright vehicle driving along the path, three times walking speed;
- ``fast``: a small object (a cyclist) at three to four times walking speed;
- ``against_flow``: a pedestrian at walking speed going the wrong way in a lane.

Everything is deterministic given the seed and any frame size works (geometry scales with it).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from occ.runtime.files import current_umask

from .common import Clip, DatasetError, clip_rows, ranges_from_labels

ANOMALY_KINDS = ("car", "fast", "against_flow")


@dataclass
class WalkwayConfig:
    """Size and content of a generated walkway data set.

    Args:
        height: frame height in pixels.
        width: frame width in pixels.
        train_clips: number of normal-only training clips.
        test_clips: number of test clips, each with one anomalous episode.
        frames_per_clip: frames in every clip.
        pedestrians: mean number of pedestrians in view.
        noise_sigma: camera noise standard deviation, in grey levels.
        drift: relative amplitude of the slow lighting drift.
        anomalies: anomaly kinds assigned to test clips in turn.
        seed: random seed; the same seed gives the same data.
        fps: the frame rate the clips stand for, frames per second. Motion is set per frame
            (walking speed is one pixel per frame at 180 px width), so this changes no pixel: it
            only turns frame counts into time. 10, the rate of UCSD Ped1/Ped2 that the walkway imitates.
    """

    height: int = 120
    width: int = 180
    train_clips: int = 6
    test_clips: int = 5
    frames_per_clip: int = 100
    pedestrians: float = 4.0
    noise_sigma: float = 2.0
    drift: float = 0.08
    anomalies: tuple[str, ...] = ("car", "fast", "against_flow", "car", "fast")
    seed: int = 0
    fps: float = 10.0

    def validate(self) -> None:
        if self.height < 24 or self.width < 24:
            raise DatasetError(f"walkway frames must be at least 24x24, got {self.height}x{self.width}")
        if self.frames_per_clip < 10:
            raise DatasetError(f"walkway clips need at least 10 frames, got {self.frames_per_clip}")
        bad = [k for k in self.anomalies if k not in ANOMALY_KINDS]
        if bad or not self.anomalies:
            raise DatasetError(f"unknown anomaly kind(s) {bad}; allowed: {', '.join(ANOMALY_KINDS)}")
        if not self.fps > 0:
            raise DatasetError(f"walkway fps must be a positive frame rate, got {self.fps}")


@dataclass
class WalkwayDataset:
    config: WalkwayConfig
    train: list[Clip] = field(default_factory=list)
    test: list[Clip] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # anomaly kind per test clip


@dataclass
class _Mover:
    kind: str
    x: float  # centre column
    y: float  # centre row
    vx: float  # pixels per frame
    half_h: float
    half_w: float
    shade: float
    phase: float = 0.0


class _Scene:
    def __init__(self, cfg: WalkwayConfig, rng: np.random.Generator):
        self.cfg, self.rng = cfg, rng
        h, w = cfg.height, cfg.width
        self.path_top, self.path_mid, self.path_bottom = int(0.3 * h), int(0.6 * h), int(0.92 * h)
        self.lanes = {+1: 0.45 * h, -1: 0.76 * h}  # direction of flow -> lane centre row
        self.walk_speed = w / 180.0
        self.background = self._background()

    def _background(self) -> np.ndarray:
        cfg, rng = self.cfg, self.rng
        h, w = cfg.height, cfg.width
        grass = rng.normal(0, 1, (h, w)).astype(np.float32)
        grass = cv2.GaussianBlur(grass, (0, 0), max(1.0, w / 120)) * 18 + 95
        bg = grass
        rows = np.arange(h)[:, None]
        cols = np.arange(w)[None, :]
        tile = max(4, w // 15)
        upper = 165 - 12 * ((rows // max(2, tile // 3)) % 2)  # striped paving
        lower = 150 + 14 * (((rows // tile) + (cols // tile)) % 2)  # checker paving
        bg = np.where((rows >= self.path_top) & (rows < self.path_mid), upper, bg)
        bg = np.where((rows >= self.path_mid) & (rows < self.path_bottom), lower, bg)
        bg = bg + rng.normal(0, 3, (h, w))  # fixed grain of the paving
        return bg.astype(np.float32)

    def pedestrian(self, direction: int, x: float | None = None) -> _Mover:
        cfg, rng = self.cfg, self.rng
        h, w = cfg.height, cfg.width
        speed = rng.uniform(0.6, 1.1) * self.walk_speed
        half_w = max(1.5, 0.022 * w)
        if x is None:
            x = -half_w - 1 if direction > 0 else w + half_w + 1
        return _Mover(
            kind="pedestrian",
            x=x,
            y=self.lanes[direction] + rng.uniform(-0.05, 0.05) * h,
            vx=direction * speed,
            half_h=max(3.0, 0.08 * h),
            half_w=half_w,
            shade=rng.uniform(35, 85),
            phase=rng.uniform(0, 2 * np.pi),
        )

    def anomaly(self, kind: str) -> _Mover:
        cfg, rng = self.cfg, self.rng
        h, w = cfg.height, cfg.width
        direction = int(rng.choice([-1, 1]))
        if kind == "car":
            half_h, half_w = 0.11 * h, 0.14 * w
            mover = _Mover("car", 0, self.lanes[direction], direction * rng.uniform(2.5, 3.5) * self.walk_speed, half_h, half_w, 230)
        elif kind == "fast":
            mover = _Mover("fast", 0, self.lanes[direction], direction * rng.uniform(3.0, 4.0) * self.walk_speed,
                           max(3.0, 0.07 * h), max(2.0, 0.04 * w), 30)
        else:
            mover = self.pedestrian(direction)
            mover.kind = "against_flow"
            mover.y = self.lanes[-direction] + rng.uniform(-0.04, 0.04) * h
        mover.x = -mover.half_w - 1 if mover.vx > 0 else w + mover.half_w + 1
        return mover

    def draw(self, canvas: np.ndarray, mover: _Mover, t: int) -> np.ndarray:
        """Paint the mover; return its boolean pixel mask."""
        h, w = canvas.shape
        mask = np.zeros((h, w), bool)
        bob = 0.0
        if mover.kind in ("pedestrian", "against_flow"):
            bob = 0.6 * np.sin(mover.phase + 0.5 * t)  # gait
        cy, cx = mover.y + bob, mover.x
        top, bottom = int(np.floor(cy - mover.half_h)), int(np.ceil(cy + mover.half_h)) + 1
        left, right = int(np.floor(cx - mover.half_w)), int(np.ceil(cx + mover.half_w)) + 1
        top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
        if top >= bottom or left >= right:
            return mask
        yy, xx = np.mgrid[top:bottom, left:right]
        dy, dx = (yy + 0.5 - cy) / mover.half_h, (xx + 0.5 - cx) / mover.half_w
        if mover.kind == "car":
            shape = (np.abs(dy) <= 1) & (np.abs(dx) <= 1)
            value = np.where((dy < -0.2) & (np.abs(dx) < 0.8), 60.0, mover.shade)
        else:
            shape = dy**2 + dx**2 <= 1.0
            value = np.where(dy < -0.55, mover.shade + 40, mover.shade)  # lighter head
        region = canvas[top:bottom, left:right]
        region[shape] = value[shape] if np.ndim(value) else value
        mask[top:bottom, left:right] = shape
        return mask

    def spawn_rate(self, pedestrians: float) -> float:
        """New walkers per frame and lane that keep ``pedestrians`` in view on average."""
        crossing = self.cfg.width / (0.85 * self.walk_speed)
        return (pedestrians / 2) / crossing

    def initial_walkers(self, pedestrians: float) -> list[_Mover]:
        """Walkers already on the path when the footage starts."""
        rng, w = self.rng, self.cfg.width
        return [self.pedestrian(d, x=rng.uniform(0, w)) for d in (1, -1) for _ in range(rng.poisson(pedestrians / 2))]

    def spawn(self, walkers: list[_Mover], rate: float) -> None:
        """Walkers entering at either end this frame (Poisson, ``rate`` per lane)."""
        for direction in (1, -1):
            for _ in range(self.rng.poisson(rate)):
                walkers.append(self.pedestrian(direction))

    def compose(self, walkers: list[_Mover], anomalies: list[_Mover], t: int, gain: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """Paint frame ``t`` without noise and move everyone one frame on: the canvas and each
        anomaly's exact pixel mask. Walkers that left the view are dropped from ``walkers``."""
        w = self.cfg.width
        canvas = self.background * gain
        for mover in walkers:
            self.draw(canvas, mover, t)
            mover.x += mover.vx
        masks = []
        for anomaly in anomalies:
            masks.append(self.draw(canvas, anomaly, t))
            anomaly.x += anomaly.vx
        walkers[:] = [m for m in walkers if -3 * m.half_w <= m.x <= w + 3 * m.half_w]
        return canvas, masks

    def expose(self, canvas: np.ndarray, noise_sigma: float) -> np.ndarray:
        """The camera's 8-bit frame of a canvas: sensor noise, rounding, clipping."""
        canvas = canvas + self.rng.normal(0, noise_sigma, canvas.shape)
        return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    def render_clip(self, length: int, anomaly_kind: str | None) -> Clip:
        cfg, rng = self.cfg, self.rng
        h, w = cfg.height, cfg.width
        rate = self.spawn_rate(cfg.pedestrians)
        walkers = self.initial_walkers(cfg.pedestrians)
        anomalies: list[_Mover] = []
        start = length
        if anomaly_kind is not None:
            start = int(rng.integers(int(0.15 * length), int(0.45 * length)))
        period, phase = rng.uniform(200, 400), rng.uniform(0, 2 * np.pi)
        frames = np.empty((length, h, w), np.uint8)
        masks = np.zeros((length, h, w), bool)
        for t in range(length):
            self.spawn(walkers, rate)
            if t == start:
                anomalies.append(self.anomaly(anomaly_kind))
            gain = 1.0 + cfg.drift * np.sin(2 * np.pi * t / period + phase)
            canvas, anomaly_masks = self.compose(walkers, anomalies, t, gain)
            if anomaly_masks:
                masks[t] = anomaly_masks[0]
            frames[t] = self.expose(canvas, cfg.noise_sigma)
        labels = masks.reshape(length, -1).any(axis=1)
        return Clip(name="", frames=frames, labels=labels, masks=masks if anomaly_kind else None, fps=cfg.fps)


def generate_walkway(config: WalkwayConfig | None = None) -> WalkwayDataset:
    """Generate the training (normal only) and test (mixed) clips in memory."""
    cfg = config or WalkwayConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    scene = _Scene(cfg, rng)
    data = WalkwayDataset(config=cfg)
    for i in range(cfg.train_clips):
        clip = scene.render_clip(cfg.frames_per_clip, None)
        clip.name = f"Train{i + 1:03d}"
        clip.masks = None
        data.train.append(clip)
    for i in range(cfg.test_clips):
        kind = cfg.anomalies[i % len(cfg.anomalies)]
        clip = scene.render_clip(cfg.frames_per_clip, kind)
        clip.name = f"Test{i + 1:03d}"
        data.test.append(clip)
        data.kinds.append(kind)
    return data


MARKER = "occ-dataset.json"


def write_ucsd_layout(data: WalkwayDataset, root: str | Path, name: str = "UCSDwalkway") -> Path:
    """Write the data set in the UCSD layout under ``root``, whole or not at all.

    Frames go to ``Train/TrainNNN/NNN.tif`` and ``Test/TestNNN/NNN.tif``, masks to
    ``Test/TestNNN_gt/NNN.bmp`` and frame ranges to ``Test/<name>.m``; ``occ-dataset.json`` marks
    the folder as occ's. An existing ``root`` is replaced only when it is empty or an earlier occ
    data set: nothing else is ever deleted. Every image write is checked.
    """

    def fill(staging: Path) -> None:
        for split, clips in (("Train", data.train), ("Test", data.test)):
            for clip in clips:
                folder = staging / split / clip.name
                folder.mkdir(parents=True)
                for t, frame in enumerate(clip.frames):
                    _write_image(folder / f"{t + 1:03d}.tif", frame)
                if clip.masks is not None:
                    gt = staging / split / f"{clip.name}_gt"
                    gt.mkdir()
                    for t, mask in enumerate(clip.masks):
                        _write_image(gt / f"{t + 1:03d}.bmp", mask.astype(np.uint8) * 255)
        lines = ["TestVideoFile = {};"]
        for clip in data.test:
            ranges = ", ".join(f"{a}:{b}" for a, b in ranges_from_labels(clip.labels))
            lines.append(f"TestVideoFile{{end+1}}.gt_frame = [{ranges}];")
        (staging / "Test").mkdir(exist_ok=True)
        (staging / "Test" / f"{name}.m").write_text("\n".join(lines) + "\n")
        (staging / MARKER).write_text(json.dumps({"generator": "occ walkway", "config": asdict(data.config)}, indent=2))

    return replace_folder(root, fill)


def replace_folder(root: str | Path, fill: Callable[[Path], None]) -> Path:
    """Build a data set in a staging folder beside ``root`` with ``fill(staging)``, then put it at
    ``root`` in one rename. An existing ``root`` is replaced only when it is empty or an earlier
    occ data set (it holds ``occ-dataset.json``); on any error nothing at ``root`` changes."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise DatasetError(f"{root}: folder is not empty and not an occ data set; refusing to replace it (choose a new folder)")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        fill(staging)
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's 0700 would lock out other users
        if root.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
            os.replace(root, previous / root.name)
            os.replace(staging, root)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def _write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise DatasetError(f"{path}: could not write the image (disk full or not writable?)")


def write_walkway(root: str | Path, config: WalkwayConfig) -> dict:
    """``occ data generate``: generate the walkway and write it under ``root``; a summary per clip."""
    data = generate_walkway(config)
    path = write_ucsd_layout(data, root)
    return {"title": f"walkway written to {path}", "path": str(path), "clips": clip_rows(data.train, data.test, kinds=data.kinds)}
