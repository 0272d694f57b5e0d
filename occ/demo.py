"""``occ demo``: the main job on built-in data, end to end.

The synthetic walkway → ALOCC and AVID trained on its normal clips (the video recipes, small
sizes for a 2-core CPU) → exported to verified ONNX → run through the runtime on the test clips
→ evaluated, with an overlay video of one test clip per method.

Every number it prints is reproducible: the data and training are seeded, and PyTorch and ONNX
Runtime run on a fixed number of threads (their reductions are summed in a thread-dependent order).
PyTorch's idle OpenMP workers spin only briefly before they sleep (:mod:`occ.train.openmp`): the
same arithmetic, many times faster than the default spin on a 2-core CPU that runs anything else.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

THREADS = 2


def plots_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def run_demo(workdir: str | Path, seed: int = 0, alocc_epochs: int = 4, avid_epochs: int = 12,
             say: Callable[[str], None] = print, console: Any = None) -> dict[str, Any]:
    """Run the demo in ``workdir``; returns one row of metrics per method (and writes
    ``<method>_eval.json``, ``<method>_overlay_<clip>.avi`` and, with matplotlib, the ROC and
    score-over-time plots in ``<method>_plots/`` there). At the stored threshold a row has the
    false alarms per hour of normal footage (the walkway's 10 frames/s) and the median detection
    delay in frames; ``<method>_eval.json`` has both in full."""
    import json

    from occ.train.openmp import let_idle_workers_spin_briefly

    let_idle_workers_spin_briefly()  # before torch is imported
    import torch

    from occ.evaluation.datasets import WalkwayConfig, generate_walkway, write_ucsd_layout
    from occ.evaluation.datasets.spec import load_video_data
    from occ.evaluation.plots import write_evaluation_plots
    from occ.evaluation.metrics import PixelLevel
    from occ.evaluation.protocols import delay_text, false_alarms_text, score_clips
    from occ.evaluation.report import report
    from occ.export.onnx_export import export_onnx
    from occ.runtime.detector import open_detector
    from occ.runtime.events import OverlayWriter
    from occ.runtime.files import write_atomic
    from occ.runtime.scoring import frame_threshold
    from occ.train.train_alocc import alocc_config, train_alocc
    from occ.train.train_alocc import video_data as alocc_video
    from occ.train.train_avid import avid_config, train_avid
    from occ.train.train_avid import video_data as avid_video

    torch.set_num_threads(THREADS)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    walkway = WalkwayConfig(seed=seed)
    data_dir = write_ucsd_layout(generate_walkway(walkway), workdir / "walkway")
    say(f"1. data: synthetic walkway {walkway.height}x{walkway.width}, {walkway.train_clips} normal training clips, "
        f"{walkway.test_clips} test clips (car, fast, against_flow) → {data_dir}")
    video = load_video_data(str(data_dir))
    jobs = [("alocc", alocc_config("video", epochs=alocc_epochs, seed=seed), alocc_video, train_alocc),
            ("avid", avid_config("video", epochs=avid_epochs, seed=seed), avid_video, train_avid)]
    rows = []
    for method, config, prepare, train in jobs:
        say(f"2. {method}: train ({config.epochs} epochs at {config.height}x{config.width})")
        t0 = time.monotonic()
        checkpoint = workdir / f"{method}.pt"
        train(prepare(video.train, config, video.description, {"kind": "video", "spec": str(data_dir)}), config, checkpoint, console)
        train_seconds = time.monotonic() - t0
        say(f"3. {method}: export and verify")
        exported = export_onnx(checkpoint)
        for line in exported.report:
            say("   " + line)
        say(f"4. {method}: run the exported model through the runtime and evaluate")
        detector = open_detector(str(exported.path), "ort-cpu", pixel_maps=True, threads=THREADS)
        clips = score_clips(detector, video.test)
        metrics = report(clips)
        evaluation = metrics.to_json()
        write_atomic(workdir / f"{method}_eval.json", json.dumps(evaluation, indent=2).encode())
        if plots_available():
            write_evaluation_plots(workdir / f"{method}_plots", clips, frame_threshold(detector.manifest), str(exported.path))
        overlay_path = workdir / f"{method}_overlay_{video.test[0].name}.avi"
        writer = OverlayWriter(overlay_path, detector.manifest)
        detector.reset()
        for frame in video.test[0].frames:
            writer.write(frame, detector.process(frame))
        writer.close()
        detector.close()
        raw, at, pixel = metrics.frame_level.raw, metrics.at_stored_threshold, metrics.pixel_level
        rows.append({"method": method, "micro AUC": f"{raw.micro_auc:.3f}", "macro AUC": f"{raw.macro_auc:.3f}",
                     "EER": f"{raw.eer:.1%}",
                     "pixel EER": f"{pixel.eer:.1%}" if isinstance(pixel, PixelLevel) else "n/a",
                     "TPR / FPR at threshold": f"{at.true_positive_rate:.2f} / {at.false_positive_rate:.2f}",
                     "false alarms / h": false_alarms_text(at.false_alarms_per_hour),
                     "delay (frames, median)": delay_text(at.detection_delay),
                     "train s": round(train_seconds), "overlay": str(overlay_path),
                     "per clip AUC": {c.clip: c.auc for c in metrics.per_clip},
                     # the same figures as numbers, for scripts and for the README's check against committed results
                     "metrics": {key: evaluation[key] for key in ("frame_level", "at_stored_threshold", "pixel_level") if key in evaluation}})
    return {"workdir": str(workdir), "seconds": round(time.monotonic() - started), "rows": rows}
