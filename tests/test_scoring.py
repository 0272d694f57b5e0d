"""Training's synthetic irregularities on cases built to need them (the runtime's scoring components
are tested in tests/runtime/test_runtime_scoring.py)."""
import numpy as np
import pytest


def test_synthetic_irregularities_label_only_changed_cells(rng):
    from occ.train.irregularities import IrregularityMaker, SampleStore

    # a static scene (every frame equal) with one moving bright square in clip 0
    sequence = np.full((12, 16, 16), -0.5, np.float32)
    for t in range(12):
        sequence[t, 4:8, t : t + 4] = 0.8
    store = SampleStore([sequence], np.array([(0, t) for t in range(12)]))
    maker = IrregularityMaker(store, cell=4, probability=1.0, max_regions=2, rng=rng)
    rows = np.arange(6, 12)
    clean = store.inputs(rows)
    pseudo, labels = maker(rows, clean)
    assert labels.shape == (6, 4, 4) and set(np.unique(labels)) <= {0.0, 1.0}
    change = np.abs(pseudo - clean).mean(axis=1).reshape(6, 4, 4, 4, 4).mean(axis=(2, 4))
    np.testing.assert_array_equal(labels == 0, change >= maker.min_change)
    # on a static background, a 'reverse' or 'fast' region changes nothing and stays normal
    static = SampleStore([np.full((12, 16, 16), 0.1, np.float32)], np.array([(0, t) for t in range(12)]))
    static_maker = IrregularityMaker(static, cell=4, probability=1.0, max_regions=2, rng=rng)
    static_maker.kinds = ("reverse", "fast")
    _, static_labels = static_maker(rows, static.inputs(rows))
    assert static_labels.min() == 1.0


def _digit_like_images(rng, count: int = 10, cell: int = 8, cells: int = 3) -> np.ndarray:
    """Images of ``cells``×``cells`` cells, each a distinct random stroke pattern on a dark background."""
    images = np.full((count, 1, cells * cell, cells * cell), -1.0, np.float32)
    strokes = rng.random((count, cells * cell, cells * cell)) < 0.35
    images[:, 0][strokes] = 1.0
    return images


def test_unknown_avid_irregularity_is_one_clear_error(rng):
    from occ.train.irregularities import IrregularityMaker, SampleStore

    images = _digit_like_images(rng)
    store = SampleStore(None, np.arange(len(images))[:, None], images)
    with pytest.raises(ValueError, match=r"unknown AVID irregularity kind\(s\) \['fast'\] for single images"):
        IrregularityMaker(store, cell=8, probability=1.0, max_regions=2, rng=rng, kinds=("fast",))


def _moving_square_clip(speed: int, frames: int = 16, height: int = 16, width: int = 48) -> np.ndarray:
    """Normalized ⟨I_t, I_t − I_{t−1}⟩ frames of a bright square crossing a dark static scene."""
    from occ.runtime.manifest import InputSpec
    from occ.runtime.preprocess import normalize, stack_clip

    raw = np.full((frames, height, width), 40.0, np.float32)
    for t in range(frames):
        left = (2 + speed * t) % (width - 6)
        raw[t, 5:11, left : left + 6] = 220.0
    spec = InputSpec(height=height, width=width, channels=2, temporal="frame_diff")
    return normalize(stack_clip(raw, "frame_diff"), spec)


@pytest.mark.parametrize("kind", ["fast", "reverse"])
def test_alocc_motion_patches_follow_their_definition(kind, rng):
    from occ.runtime.preprocess import PatchGrid
    from occ.train.irregularities import motion_patches

    frames = _moving_square_clip(speed=1)
    grid = PatchGrid(tops=(0, 8), lefts=tuple(range(0, 41, 8)), size=8)
    odd, clean = motion_patches(frames, grid, 40, rng, kinds=(kind,), strides=(3,))
    assert len(odd) == len(clean) > 0 and odd.shape[1:] == (2, 8, 8)
    patches = grid.extract_clip(frames)  # (T, P, 2, 8, 8)
    for irregular, normal in zip(odd, clean):
        # the clean patch is a real patch at some time t and place p, and the odd one follows the rule there
        (ts, ps) = np.nonzero(np.all(patches == normal, axis=(2, 3, 4)))
        matched = False
        for t, p in zip(ts, ps):
            if kind == "fast":
                expected = np.stack([patches[t, p, 0], patches[t, p, 0] - patches[t - 3, p, 0]])
            else:
                expected = np.stack([patches[t - 1, p, 0], -patches[t, p, 1]])
            matched |= bool(np.allclose(irregular, expected, atol=1e-6))
        assert matched
        assert np.abs(irregular - normal).mean() >= 0.02  # only patches the change is visible in
    # nothing moves in a static scene, so there is nothing to make irregular
    static = np.repeat(frames[:1] * np.array([1.0, 0.0], np.float32)[:, None, None], 16, axis=0)
    empty, _ = motion_patches(static, grid, 40, rng, kinds=(kind,))
    assert len(empty) == 0


