import sys
from pathlib import Path

import numpy as np
import pytest

# Tests here reuse the runtime tier's helpers (tests/runtime/test_manifest.py's manifest builders)
# when they run without it.
sys.path.insert(0, str(Path(__file__).parent / "runtime"))

from occ.evaluation.datasets import WalkwayConfig, generate_walkway


@pytest.fixture(scope="session")
def tiny_walkway():
    """A small walkway data set shared by the tests (deterministic)."""
    config = WalkwayConfig(height=48, width=72, train_clips=2, test_clips=3, frames_per_clip=30, seed=7)
    return generate_walkway(config)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def alocc_checkpoint(tmp_path_factory, tiny_walkway):
    """A tiny ALOCC model trained for one epoch on the tiny walkway."""
    from occ.train.train_alocc import AloccConfig, train_alocc, video_data

    config = AloccConfig(height=48, width=72, patch_size=16, stride=16, base_width=8, depth=2, epochs=1, batch_size=32)
    path = tmp_path_factory.mktemp("alocc") / "alocc.pt"
    train_alocc(video_data(tiny_walkway.train, config, "tiny walkway"), config, path, _quiet_console())
    return path


@pytest.fixture(scope="session")
def avid_checkpoint(tmp_path_factory, tiny_walkway):
    """A tiny AVID model trained for one epoch on the tiny walkway."""
    from occ.train.train_avid import AvidConfig, train_avid, video_data

    config = AvidConfig(height=32, width=48, base_width=4, depth=2, epochs=1, batch_size=8, optimizer="adam", lr=1e-3, momentum=0.5)
    path = tmp_path_factory.mktemp("avid") / "avid.pt"
    train_avid(video_data(tiny_walkway.train, config, "tiny walkway"), config, path, _quiet_console())
    return path


@pytest.fixture(scope="session")
def alocc_onnx(alocc_checkpoint):
    from occ.export.onnx_export import export_onnx

    return export_onnx(alocc_checkpoint).path


@pytest.fixture(scope="session")
def avid_onnx(avid_checkpoint):
    from occ.export.onnx_export import export_onnx

    return export_onnx(avid_checkpoint).path


def _quiet_console():
    import io

    from rich.console import Console

    return Console(file=io.StringIO())
