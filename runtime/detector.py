"""From a preprocessed frame to a scored, decided, localized result.

``Detector.open(model)`` reads the model's manifest and picks the method's detector:

- ALOCC: the frame is cut into the manifest's patch grid; the graph gives ``score = −D(R(X))``
  per patch; scores are normalized per grid location when the manifest holds scene statistics;
  the frame score is the worst patch; decision ``frame score > tau``.
- AVID: the graph gives the residual ``|X − I(X)|``, the region map ``1 − O`` and the
  intersection map (``residual / α`` inside the regions ``O <= ζ``, or with a graded gate
  ``min(residual / α, odds(1 − O) / odds(1 − ζ))``); the mask is where that map is ``>= 1``; the
  frame score is its maximum (``peak``: the decision is "the mask is not empty") or the blocks'
  evidence summed (``evidence``, see ``AvidConfig.frame_score``); the decision is ``score >= 1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .backends import Backend, create_backend
from .manifest import Manifest
from .preprocess import FramePreprocessor, PatchGrid, preprocess_clip
from .scoring import fused_location_scores, reduce_frame


@dataclass
class FrameResult:
    """What the detector says about one frame.

    Attributes:
        index: frame number in the stream (0-based).
        score: frame anomaly score (higher = more anomalous).
        decision: True when the frame is anomalous.
        location_scores: per-patch (ALOCC) or per-region (AVID) scores as a ``rows × cols`` map.
        mask: AVID pixel mask at the network size (None for ALOCC).
        boxes: ``[top, left, bottom, right]`` boxes of anomalous regions, in network pixels.
        timestamp: capture time in seconds, when the source gives one.
    """

    index: int
    score: float
    decision: bool
    location_scores: np.ndarray
    mask: np.ndarray | None = None
    boxes: list[list[int]] = field(default_factory=list)
    timestamp: float | None = None
    pixel_map: np.ndarray | None = None

    @property
    def mask_area(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.index,
            "timestamp": self.timestamp,
            "score": round(float(self.score), 6),
            "decision": bool(self.decision),
            "mask_area": self.mask_area,
            "boxes": self.boxes,
            "location_scores": np.round(self.location_scores, 4).tolist(),
        }


class Detector:
    """Preprocess → infer → postprocess for one model. Use :meth:`open`."""

    def __init__(self, backend: Backend):
        self.backend = backend.activate()
        self.manifest: Manifest = backend.manifest
        self.preprocessor = FramePreprocessor(self.manifest.input)
        self._index = 0

    @staticmethod
    def open(model_path: str, backend: str = "ort-cpu") -> "Detector":
        return Detector.for_backend(create_backend(backend, model_path))

    @staticmethod
    def for_backend(backend: Backend) -> "Detector":
        """The method's detector around an existing backend (activated here)."""
        backend.activate()
        return AloccDetector(backend) if backend.manifest.method == "alocc" else AvidDetector(backend)

    def reset(self) -> None:
        """Forget temporal context (call at a clip boundary or after a reconnect)."""
        self.preprocessor.reset()

    def close(self) -> None:
        self.backend.deactivate()

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Score one raw frame (uint8 gray or BGR) of a stream."""
        x = self.preprocessor.push(frame)
        result = self.finish(self.forward(self.prepare(x[None])), 1)[0]
        result.index, result.timestamp = self._index, timestamp
        self._index += 1
        return result

    def process_clip(self, frames: np.ndarray, batch_frames: int = 64) -> list[FrameResult]:
        """Score a whole clip in batches (same results as :meth:`process` frame by frame)."""
        inputs = preprocess_clip(frames, self.manifest.input)
        results: list[FrameResult] = []
        for start in range(0, len(inputs), batch_frames):
            chunk = inputs[start : start + batch_frames]
            results += self.finish(self.forward(self.prepare(chunk)), len(chunk))
        for index, result in enumerate(results):
            result.index = index
        return results

    # The three stages, separately callable so benchmarks can time each one.
    def prepare(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Network inputs ``(F, C, H, W)`` → the graph's feed."""
        raise NotImplementedError

    def forward(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on the backend."""
        return self.backend.infer(feed, self.outputs)

    def finish(self, outputs: dict[str, np.ndarray], frames: int) -> list[FrameResult]:
        """Graph outputs → one result per frame (scores, decisions, masks, boxes)."""
        raise NotImplementedError


class AloccDetector(Detector):
    def __init__(self, backend: Backend):
        super().__init__(backend)
        self.grid = PatchGrid.from_spec(self.manifest.patches, self.manifest.input)
        self.boxes = self.grid.boxes()
        self.tau = self.manifest.threshold("tau")
        self.outputs = list((self.manifest.scoring.get("terms") or {"score": 1.0}))

    def prepare(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        patches = self.grid.extract_clip(inputs)  # (F, P, C, s, s)
        return {"patches": np.ascontiguousarray(patches.reshape(-1, *patches.shape[2:]))}

    def finish(self, outputs: dict[str, np.ndarray], frames: int) -> list[FrameResult]:
        fused = fused_location_scores({k: v.reshape(frames, self.grid.count) for k, v in outputs.items()},
                                      self.manifest.scoring)
        results = []
        for normalized in fused:
            score = float(reduce_frame(normalized))
            boxes = [box.tolist() for box in self.boxes[normalized > self.tau]]
            results.append(FrameResult(index=0, score=score, decision=score > self.tau,
                                       location_scores=self.grid.to_map(normalized), boxes=boxes))
        return results


class AvidDetector(Detector):
    outputs = ["score", "mask", "region_anomaly", "intersection"]

    def __init__(self, backend: Backend):
        super().__init__(backend)
        self.alpha = np.array([self.manifest.threshold("alpha")], np.float32)
        self.zeta = np.array([self.manifest.threshold("zeta")], np.float32)

    def set_thresholds(self, alpha: float | None = None, zeta: float | None = None) -> None:
        """Retune α and ζ on a running model (they are inputs of the graph)."""
        if alpha is not None:
            self.alpha = np.array([alpha], np.float32)
        if zeta is not None:
            self.zeta = np.array([zeta], np.float32)

    def prepare(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {"frames": np.ascontiguousarray(inputs), "alpha": self.alpha, "zeta": self.zeta}

    def finish(self, outputs: dict[str, np.ndarray], frames: int) -> list[FrameResult]:
        results = []
        for i in range(frames):
            mask = outputs["mask"][i].astype(bool)
            score = float(outputs["score"][i])
            results.append(FrameResult(index=0, score=score, decision=score >= 1.0,
                                       location_scores=outputs["region_anomaly"][i], mask=mask, boxes=mask_boxes(mask),
                                       pixel_map=outputs["intersection"][i] if "intersection" in outputs else None))
        return results


def open_stream_detector(model_path: str, backend: str = "ort-cpu", triton_url: str = ""):
    """The detector for one live stream: on ``ort-cuda`` and ``tensorrt`` the whole frame path runs
    on the GPU (:class:`occ.runtime.gpu.pipeline.GpuStreamDetector`: preprocessing kernels, model
    on device buffers); on ``ort-cpu`` the numpy reference and ONNX Runtime CPU; on ``triton`` the
    numpy reference here and the model on the server at ``triton_url`` (``model_path`` is then
    the model's name there)."""
    if backend == "triton":
        from .backends.triton import TritonBackend

        return Detector.for_backend(TritonBackend(triton_url, model_path))
    if backend in ("ort-cuda", "tensorrt"):
        from .gpu.pipeline import GpuStreamDetector

        return GpuStreamDetector(model_path, backend)
    return Detector.open(model_path, backend)


def mask_boxes(mask: np.ndarray, min_area: int = 1) -> list[list[int]]:
    """``[top, left, bottom, right]`` of each 8-connected component of a mask."""
    if not mask.any():
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for label in range(1, count):
        left, top, width, height, area = (int(v) for v in stats[label])
        if area >= min_area:
            boxes.append([top, left, top + height, left + width])
    return boxes
