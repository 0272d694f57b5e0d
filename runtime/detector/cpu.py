"""The stream detector on the CPU path: numpy preprocessing (the reference), any backend, :func:`decide`."""
from __future__ import annotations

import time

import numpy as np

from ..backends import Backend
from ..manifest import Manifest
from ..preprocess.reference import FramePreprocessor, PatchGrid, preprocess_clip
from ..scoring.decide import FrameResult, decide, on_frame, scoring_outputs
from ..scoring.zones import Zone, ZoneMaps, rasterise


def _alocc_feed(inputs: np.ndarray, manifest: Manifest) -> dict[str, np.ndarray]:
    patches = PatchGrid.from_spec(manifest.patches, manifest.input).extract_clip(inputs)  # (F, P, C, s, s)
    return {"patches": np.ascontiguousarray(patches.reshape(-1, *patches.shape[2:]))}


def _avid_feed(inputs: np.ndarray, manifest: Manifest) -> dict[str, np.ndarray]:
    # α and ζ are graph inputs: the running model's thresholds go with every batch
    return {"frames": np.ascontiguousarray(inputs), "alpha": np.array([manifest.threshold("alpha")], np.float32),
            "zeta": np.array([manifest.threshold("zeta")], np.float32)}


FEEDS = {"alocc": _alocc_feed, "avid": _avid_feed}


def graph_feed(inputs: np.ndarray, manifest: Manifest) -> dict[str, np.ndarray]:
    """Preprocessed frames ``(N, C, H, W)`` → the graph's inputs (ALOCC: every frame's patches as one
    batch; AVID: the frames with the manifest's α and ζ)."""
    return FEEDS[manifest.method](inputs, manifest)


class Detector:
    """Preprocess → infer → :func:`decide` for one stream, on any backend.

    Args:
        backend: an inactive or active backend (activated here).
        pixel_maps: also fetch AVID's intersection map (for pixel-level evaluation).
    """

    def __init__(self, backend: Backend, pixel_maps: bool = False):
        self.backend = backend.activate()
        self.manifest: Manifest = backend.manifest
        self.preprocessor = FramePreprocessor(self.manifest.input)
        self.outputs = scoring_outputs(self.manifest) + (["intersection"] if pixel_maps and self.manifest.method == "avid" else [])
        self._index = 0
        self.stage_seconds: dict[str, float] = {}  # the last frame's preprocess, inference and postprocess times
        self.zones: list[Zone] = []
        self._zone_maps: tuple[tuple[int, int], ZoneMaps] | None = None  # rasterised for one frame size

    def set_zones(self, zones: list[Zone]) -> None:
        """Ignore and sensitivity zones in source-frame pixels (:mod:`occ.runtime.scoring.zones`);
        rasterised at the first frame of each size."""
        self.zones, self._zone_maps = list(zones), None

    def zone_maps(self, frame_size: tuple[int, int] | None) -> ZoneMaps | None:
        """The zones at the network's geometry for frames of ``(height, width)``; None without zones.

        Raises:
            ZoneError: a zone reaches outside the frame.
        """
        if not self.zones or frame_size is None:
            return None
        size = (int(frame_size[0]), int(frame_size[1]))
        if self._zone_maps is None or self._zone_maps[0] != size:
            self._zone_maps = (size, rasterise(self.zones, size, self.manifest))
        return self._zone_maps[1]

    def set_thresholds(self, **values: float) -> None:
        """Run with other thresholds than the stored ones (``tau``; ``alpha``, ``zeta``); not saved."""
        if values:
            self.manifest = self.manifest.with_thresholds(values)

    def reset(self) -> None:
        """Forget temporal context (call at a clip boundary or after a reconnect)."""
        self.preprocessor.reset()

    def close(self) -> None:
        self.backend.deactivate()

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Score one raw frame (uint8 gray or BGR) of a stream; :attr:`stage_seconds` gets its stage times."""
        started = time.perf_counter()
        feed = self.prepare(self.preprocessor.push(frame)[None])
        prepared = time.perf_counter()
        outputs = self.forward(feed)
        inferred = time.perf_counter()
        result = on_frame(self.finish(outputs, frame.shape[:2])[0], self.manifest, frame.shape[:2])
        self.stage_seconds = {"preprocess": prepared - started, "inference": inferred - prepared,
                              "postprocess": time.perf_counter() - inferred}
        result.index, result.timestamp = self._index, timestamp
        self._index += 1
        return result

    def process_clip(self, frames: np.ndarray, batch_frames: int = 64) -> list[FrameResult]:
        """Score a whole clip in batches (the same results as :meth:`process` frame by frame)."""
        inputs = preprocess_clip(frames, self.manifest.input)
        results: list[FrameResult] = []
        frame_size = np.asarray(frames[0]).shape[:2] if len(frames) else None
        for start in range(0, len(inputs), batch_frames):
            results += self.finish(self.forward(self.prepare(inputs[start : start + batch_frames])), frame_size)
        for index, result in enumerate(results):
            result.index = index
            on_frame(result, self.manifest, np.asarray(frames[index]).shape[:2])
        return results

    # The three stages, separately callable so benchmarks can time each one.
    def prepare(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Network inputs ``(F, C, H, W)`` → the graph's feed."""
        return graph_feed(inputs, self.manifest)

    def forward(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on the backend."""
        return self.backend.infer(feed, self.outputs)

    def finish(self, outputs: dict[str, np.ndarray], frame_size: tuple[int, int] | None = None) -> list[FrameResult]:
        """Graph outputs → one result per frame; the zones apply when the source ``frame_size``
        ``(height, width)`` is given."""
        return decide(outputs, self.manifest, self.zone_maps(frame_size))
