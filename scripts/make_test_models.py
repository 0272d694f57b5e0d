"""The tiny ALOCC and AVID models of the torch-free runtime tests (tests/runtime), made with the
training code at its smallest useful size and committed under tests/data/.

    python scripts/make_test_models.py   # rewrites tests/data/{alocc,avid}.onnx and their manifests' copies, .onnx.json

The settings are those of tests/conftest.py's fixtures (the same tiny walkway, seed 7; one epoch;
training seed 0), so a test moved from tests/ to tests/runtime/ sees the same geometry. Training is
deterministic on the CPU: the weights come out the same on every run; the manifest's dates do not.
Run it again when the manifest's schema or the graphs change (tests/runtime fails on an old model).
"""
from __future__ import annotations

import io
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


def main() -> int:
    from rich.console import Console

    from occ.evaluation.datasets import WalkwayConfig, generate_walkway
    from occ.export.onnx_export import export_onnx
    from occ.runtime.manifest import read_manifest
    from occ.train.train_alocc import AloccConfig, train_alocc
    from occ.train.train_alocc import video_data as alocc_data
    from occ.train.train_avid import AvidConfig, train_avid
    from occ.train.train_avid import video_data as avid_data

    quiet = Console(file=io.StringIO())
    walkway = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=2, test_clips=3, frames_per_clip=30, seed=7))
    alocc = AloccConfig(height=48, width=72, patch_size=16, stride=16, base_width=8, depth=2, epochs=1, batch_size=32)
    avid = AvidConfig(height=32, width=48, base_width=4, depth=2, epochs=1, batch_size=8, optimizer="adam", lr=1e-3, momentum=0.5)
    DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="occ-test-models.") as folder:
        work = Path(folder)
        train_alocc(alocc_data(walkway.train, alocc, "tiny walkway"), alocc, work / "alocc.pt", quiet)
        train_avid(avid_data(walkway.train, avid, "tiny walkway"), avid, work / "avid.pt", quiet)
        for name in ("alocc", "avid"):
            model = Path(shutil.copy(export_onnx(work / f"{name}.pt").path, DATA / f"{name}.onnx"))
            manifest = read_manifest(model).write(model.with_name(model.name + ".json"))  # a readable copy of the embedded one
            for made in (model, manifest):
                print(f"{made.relative_to(ROOT)}: {made.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
