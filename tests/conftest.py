import numpy as np
import pytest

from occ.runtime.datasets import WalkwayConfig, generate_walkway


@pytest.fixture(scope="session")
def tiny_walkway():
    """A small walkway data set shared by the tests (deterministic)."""
    config = WalkwayConfig(height=48, width=72, train_clips=2, test_clips=3, frames_per_clip=30, seed=7)
    return generate_walkway(config)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
