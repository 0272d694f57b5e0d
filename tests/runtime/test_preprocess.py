import numpy as np
import pytest

from occ.runtime.manifest import InputSpec, PatchSpec
from occ.runtime.preprocess import (
    FrameError,
    FramePreprocessor,
    PatchGrid,
    preprocess_clip,
    stack_clip,
    to_gray,
)


def test_avid_triplet_matches_hand_built_example():
    # Frames with constant values 0, 10, 20, ... make every average easy to write down.
    frames = np.stack([np.full((2, 3), 10 * t, np.float32) for t in range(7)])
    stacked = stack_clip(frames, "avid_triplet")
    # I'(t) = (I(t) + I(t-1)) / 2, with I(-1) := I(0):  I' = 0, 5, 15, 25, 35, 45, 55
    averages = [0, 5, 15, 25, 35, 45, 55]
    for t in range(7):
        expected = [averages[max(t - 4, 0)], averages[max(t - 2, 0)], averages[t]]
        assert stacked[t, :, 0, 0].tolist() == expected
    assert stacked[6, :, 0, 0].tolist() == [15, 35, 55]  # I'(2), I'(4), I'(6)


def test_frame_diff_is_signed_and_normalized_without_mean():
    spec = InputSpec(height=2, width=2, channels=2, temporal="frame_diff")
    frames = [np.full((2, 2), v, np.uint8) for v in (100, 140, 120)]
    x = preprocess_clip(frames, spec)
    assert x.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(x[:, 0, 0, 0], (np.array([100, 140, 120]) - 127.5) / 127.5, rtol=1e-6)
    np.testing.assert_allclose(x[:, 1, 0, 0], np.array([0, 40, -20]) / 127.5, rtol=1e-6)


@pytest.mark.parametrize("temporal,channels", [("none", 1), ("avid_triplet", 3), ("frame_diff", 2)])
def test_streaming_equals_clip_reference(rng, temporal, channels):
    spec = InputSpec(height=24, width=32, channels=channels, temporal=temporal)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(9)]
    reference = preprocess_clip(frames, spec)
    stream = FramePreprocessor(spec)
    streamed = np.stack([stream.push(f) for f in frames])
    np.testing.assert_array_equal(streamed, reference)
    stream.reset()
    np.testing.assert_array_equal(stream.push(frames[3]), preprocess_clip(frames[3:4], spec)[0])


def test_to_gray_uses_bt601_and_rejects_bad_frames():
    bgr = np.zeros((1, 1, 3), np.uint8)
    bgr[0, 0] = (255, 0, 0)  # pure blue
    assert to_gray(bgr)[0, 0] == pytest.approx(0.114 * 255, rel=1e-6)
    with pytest.raises(FrameError, match="uint8"):
        to_gray(np.zeros((4, 4), np.float32))
    with pytest.raises(FrameError, match="shape"):
        to_gray(np.zeros((4, 4, 2), np.uint8))


def test_patch_grid_covers_the_region_and_extracts_row_major():
    spec = InputSpec(height=50, width=70, channels=1)
    grid = PatchGrid.from_spec(PatchSpec(size=20, stride=15), spec)
    assert grid.tops == (0, 15, 30)  # 30 + 20 = 50 reaches the bottom
    assert grid.lefts == (0, 15, 30, 45, 50)  # 50 added so the right edge is covered
    image = np.arange(50 * 70, dtype=np.float32).reshape(1, 50, 70)
    patches = grid.extract(image)
    assert patches.shape == (15, 1, 20, 20)
    assert patches[6, 0, 0, 0] == image[0, 15, 15]  # row 1, col 1
    boxes = grid.boxes()
    assert boxes[6].tolist() == [15, 15, 35, 35]
    covered = np.zeros((50, 70), bool)
    for t, l, b, r in boxes:
        covered[t:b, l:r] = True
    assert covered.all()
    clip = np.stack([image, image + 1])
    np.testing.assert_array_equal(grid.extract_clip(clip)[1], grid.extract(image + 1))


def test_patch_grid_roi_and_paint():
    spec = InputSpec(height=40, width=40, channels=1)
    grid = PatchGrid.from_spec(PatchSpec(size=10, stride=10, roi=[20, 40, 0, 40]), spec)
    assert grid.tops == (20, 30) and grid.count == 8
    painted = grid.paint(np.arange(8, dtype=np.float32), 40, 40)
    assert np.isnan(painted[:20]).all()
    assert painted[35, 35] == 7


def test_nv12_luma_expands_limited_range_by_hand_values():
    from occ.runtime.preprocess import FrameError, nv12_to_gray

    luma = np.array([[16, 235, 126, 0]], np.uint8)  # 126 → (126 − 16) · 255/219 = 128.08 → 128
    buffer = np.concatenate([luma.ravel(), np.full(2, 128, np.uint8)])  # then one interleaved UV pair (unused)
    assert nv12_to_gray(buffer, 1, 4).tolist() == [[0, 255, 128, 0]]
    assert nv12_to_gray(buffer, 1, 4, full_range=True).tolist() == [[16, 235, 126, 0]]
    with pytest.raises(FrameError, match="NV12 2x4 frame is 12 uint8 bytes"):
        nv12_to_gray(buffer, 2, 4)
