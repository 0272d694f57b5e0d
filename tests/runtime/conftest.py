"""The runtime tier: tests that need only what a camera box installs (numpy, ONNX Runtime, OpenCV;
never torch), so they also run on a Jetson and in `make check-aarch64`'s arm64 root.

Their models are the tiny ones committed in tests/data/ (made by scripts/make_test_models.py with
the settings of tests/conftest.py's trained fixtures), copied once per run so that a test which
rewrites a model's thresholds never touches the committed file. ``tiny_walkway`` and ``rng`` come
from tests/conftest.py (numpy only).

    make test-runtime    # pytest tests/runtime with `import torch` failing (-p block_torch)
"""
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def committed_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {name: Path(shutil.copy(DATA / f"{name}.onnx", folder / f"{name}.onnx")) for name in ("alocc", "avid")}


@pytest.fixture(scope="session")
def alocc_onnx(committed_models) -> Path:
    """The tiny ALOCC model (48×72 frames, 16-px patches: 3 × 5 locations)."""
    return committed_models["alocc"]


@pytest.fixture(scope="session")
def avid_onnx(committed_models) -> Path:
    """The tiny AVID model (32×48 frames)."""
    return committed_models["avid"]
