"""Both methods on the synthetic walkway (``occ-bench walkway``): train → export → evaluate the
exported ONNX model through the runtime. For AVID the same graph's outputs also give its two
parts alone, to check the paper's claim that the intersection M beats |X − I(X)| and D each:
the residual map alone and D's region map (1 − O, upsampled to pixels) alone."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from occ.evaluation.datasets import WalkwayConfig, generate_walkway
from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.metrics import PixelLevel, equal_error_rate, false_alarms_per_hour, frame_level, pixel_level_scores, roc_auc
from occ.evaluation.protocols import avid_maps, score_clips
from occ.evaluation.report import report
from occ.runtime.detector import Detector, open_detector
from occ.runtime.scoring import frame_peak

from .training_runs import machine

DATA = "walkway"  # the demo's data: same generator, same seed, same test clips
# walkers in view on average: the training clips' 4, then busier normal scenes of the same walkway
BUSY_DENSITIES = (4, 8, 12, 16)


def busy_clips(base: WalkwayConfig, pedestrians: float, count: int = 2) -> list:
    """``count`` normal clips of ``base``'s walkway (same scene, same seed) with ``pedestrians``
    walkers in view on average instead of ``base.pedestrians``, none of them a training clip."""
    config = dataclasses.replace(base, pedestrians=pedestrians, train_clips=base.train_clips + count)
    return [dataclasses.replace(clip, labels=np.zeros(len(clip), bool)) for clip in generate_walkway(config).train[base.train_clips:]]


def busy_scenes(detector, base: WalkwayConfig, densities=BUSY_DENSITIES) -> list[dict]:
    """Per density: the share of frames of busier normal clips that stay below the stored
    threshold (a crowd of ordinary walkers is not an anomaly), and false alarms per hour."""
    rows = []
    for pedestrians in densities:
        clips = busy_clips(base, pedestrians)
        scored = score_clips(detector, clips)
        decisions = np.concatenate([c.decisions for c in scored])
        rows.append({"pedestrians": pedestrians, "frames": int(decisions.size), "below_threshold": float(1 - decisions.mean()),
                     "false_alarms_per_hour": false_alarms_per_hour([c.labels for c in scored], [c.decisions for c in scored],
                                                                    base.fps).per_hour})
    return rows


def run_walkway(method: str, workdir: str | Path, seed: int = 0, epochs: int | None = None, console=None,
                model: str | None = None) -> dict:
    """Train ``method`` with the video recipe on the walkway (or take the exported ``model``),
    export, evaluate on the test clips and on busier normal clips."""
    from occ.export.onnx_export import export_onnx
    from occ.train.workflow import train_alocc_from, train_avid_from

    if method not in ("alocc", "avid"):
        raise ValueError(f"method must be alocc or avid, got {method!r}")
    seconds = None
    if model is None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        checkpoint = workdir / f"walkway_{method}.pt"
        started = time.monotonic()
        train = train_alocc_from if method == "alocc" else train_avid_from
        train(DATA, checkpoint, "video", console=console, seed=seed, **({"epochs": epochs} if epochs else {}))
        seconds = round(time.monotonic() - started, 1)
        model = str(export_onnx(checkpoint).path)
    clips = load_video_data(DATA, splits=("test",)).test
    detector = open_detector(model, pixel_maps=True)
    if detector.manifest.method != method:
        raise ValueError(f"{model}: an {detector.manifest.method} model, not {method}")
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "method": method, "model": model,
              "train_seconds": seconds, "deployed": report(score_clips(detector, clips)),
              "busy_normal_scenes": busy_scenes(detector, WalkwayConfig())}
    if method == "avid":
        result["components"] = avid_components(detector, clips)
    detector.close()
    return result


def avid_components(detector: Detector, clips) -> dict[str, dict[str, float]]:
    """Frame and pixel level of the deployed intersection and of each part alone."""
    import cv2

    per_map: dict[str, dict[str, list]] = {}
    for clip in clips:
        maps = avid_maps(detector, clip.frames)
        size = maps["intersection"].shape[1:]
        masks = np.stack([cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for m in clip.masks])
        for name, values in maps.items():
            entry = per_map.setdefault(name, {"labels": [], "scores": [], "pl": [], "ps": []})
            entry["labels"].append(clip.labels)
            entry["scores"].append(frame_peak(values))
            labels, scores = pixel_level_scores(values, masks)
            entry["pl"].append(labels)
            entry["ps"].append(scores)
    components = {}
    for name, entry in per_map.items():
        frame = frame_level(entry["labels"], entry["scores"])
        pl, ps = np.concatenate(entry["pl"]), np.concatenate(entry["ps"])
        components[name] = {"micro_auc": frame.micro_auc, "macro_auc": frame.macro_auc, "eer": frame.eer,
                            "pixel_auc": roc_auc(pl, ps), "pixel_eer": equal_error_rate(pl, ps)[0]}
    return components


def markdown(result: dict) -> str:
    deployed = result["deployed"]
    raw, pixel = deployed.frame_level.raw, deployed.pixel_level
    pixel_cells = f"{pixel.auc:.3f} | {pixel.eer:.1%}" if isinstance(pixel, PixelLevel) else "n/a | n/a"
    lines = [f"{result['method'].upper()} on the synthetic walkway ({result['machine']}, {result['date']})", "",
             "| scores | micro AUC | macro AUC | EER | pixel AUC | pixel EER |", "|---|---|---|---|---|---|",
             f"| deployed (runtime) | {raw.micro_auc:.3f} | {raw.macro_auc:.3f} | {raw.eer:.1%} | {pixel_cells} |"]
    for name, c in result.get("components", {}).items():
        lines.append(f"| {name.replace('|', '&#124;')} alone | {c['micro_auc']:.3f} | {c['macro_auc']:.3f} | {c['eer']:.1%} | "
                     f"{c['pixel_auc']:.3f} | {c['pixel_eer']:.1%} |")
    lines += ["", "Busier normal scenes (same walkway, more walkers, nothing else unusual), at the stored threshold:", "",
              "| walkers in view | frames | below the threshold | false alarms per hour |", "|---|---|---|---|"]
    for row in result.get("busy_normal_scenes", []):
        lines.append(f"| {row['pedestrians']:g}{' (training)' if row['pedestrians'] == WalkwayConfig().pedestrians else ''} | "
                     f"{row['frames']} | {row['below_threshold']:.1%} | {row['false_alarms_per_hour']:,.0f} |")
    return "\n".join(lines) + "\n"
