import numpy as np
import pytest
import torch

from occ.runtime.manifest import AvidScoring, ManifestError
from occ.train.alocc import AloccDiscriminator, AloccReconstructor, create_alocc
from occ.train.avid import AvidInpainter, RegionMemory, create_avid
from occ.train.avid_graph import create_avid_graph


def make_graph(inpainter, region_scorer, **scoring):
    """The deployed graph for a scoring contract (defaults: binary gate, peak score, per-pixel residual of all channels)."""
    settings = {"residual_kernel": 1, "residual": "mean", "mask_reach": 0, **scoring}
    if settings.get("gate") == "soft":
        settings.setdefault("region_scorer", "memory")
        settings["region_quantile"] = None
    if settings.get("frame_score") == "evidence":
        settings.setdefault("evidence_floor", 0.25)
    return create_avid_graph(inpainter, region_scorer, AvidScoring(**settings))


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("patch", [28, 30, 20, 17])
def test_alocc_shapes(patch):
    r, d = create_alocc(in_channels=2, patch_size=patch, base_width=8, depth=3)
    x = torch.randn(4, 2, patch, patch)
    assert r(x).shape == x.shape
    assert d(x).shape == (4,)
    assert r(x).abs().max() <= 1.0  # tanh output


def test_alocc_parameter_counts_hand_computed():
    # D, in 1, width 8, depth 2, patch 8: conv 1→8 5×5 + bias = 208; conv 8→16 5×5 (no bias) = 3200,
    # its batch norm 32; linear 16·2·2 → 1 = 65.
    assert n_params(AloccDiscriminator(1, 8, base_width=8, depth=2)) == 208 + 3200 + 32 + 65
    # R, in 1, width 8, depth 2, patch 8: encoder 200 + 16 + 3200 + 32; decoder ConvT 16→8 3200 + 16;
    # head ConvT 8→1 200 + 1.
    assert n_params(AloccReconstructor(1, 8, base_width=8, depth=2)) == 200 + 16 + 3200 + 32 + 3200 + 16 + 201
    # The paper's widths: 64-128-256-512.
    paper = AloccDiscriminator(3, 32, base_width=64, depth=4)
    assert [m[0].out_channels for m in paper.features] == [64, 128, 256, 512]


def test_avid_shapes_and_cells():
    inpainter, detector = create_avid(3, base_width=4, depth=3)
    for h, w in [(64, 96), (32, 32), (240, 360 - 360 % 8)]:
        x = torch.randn(2, 3, h, w)
        assert inpainter(x).shape == x.shape
        assert detector(x).shape == (2, h // 8, w // 8)
    assert detector.cell == 8
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.Linear)) for m in detector.modules())


class FixedLogits(torch.nn.Module):
    """Stands in for D with a known region map, to test the cell → block mapping of the graph."""

    def __init__(self, logits, cell):
        super().__init__()
        self.logits, self.cell = logits, cell

    def forward(self, x):
        return self.logits.expand(len(x), -1, -1)


def test_region_cell_maps_to_its_pixel_block():
    inpainter = AvidInpainter(1, base_width=4, depth=2)
    logits = torch.full((1, 3, 4), 10.0)  # all normal: 1 − O ≈ 4.5e-5
    logits[0, 1, 2] = -10.0  # cell (1, 2) irregular: 1 − O ≈ 1
    graph = make_graph(inpainter, FixedLogits(logits, 4))
    frames = torch.randn(1, 1, 12, 16)
    with torch.no_grad():
        score, mask, residual, regions, inter = graph(frames, torch.tensor([1e-6]), torch.tensor([0.5]))
    expected = torch.zeros(12, 16, dtype=torch.bool)
    expected[4:8, 8:12] = True  # block of cell (1, 2): rows [4, 8), cols [8, 12)
    # α is tiny, so every residual passes; only D's gate (O <= ζ) limits the mask to the block
    assert torch.equal(mask[0], expected & (residual[0] >= 1e-6))
    assert torch.equal(inter[0] > 0, expected & (residual[0] > 0))
    assert torch.all(inter[0][~expected] == 0)
    assert bool(score[0] >= 1) == bool(mask[0].any()) and float(score[0]) == float(inter[0].max())


def test_predicting_the_newest_frame_hides_it_from_the_inpainter():
    inpainter, detector = create_avid(3, base_width=4, depth=2)
    graph = make_graph(inpainter, detector, residual="newest")
    frames = torch.randn(2, 3, 16, 16)
    changed = frames.clone()
    changed[:, 2] += 1.0  # only the newest channel changes
    with torch.no_grad():
        assert torch.equal(graph.inpaint(frames), graph.inpaint(changed))  # I never sees it
        # so the residual (newest channel only) moves by exactly the change
        torch.testing.assert_close(graph.residual(changed), (changed[:, 2] - graph.inpaint(frames)[:, 2]).abs())


def test_residual_window_is_the_plain_window_mean_including_the_borders():
    """The separable pooling in the graph equals the k×k mean over the pixels inside the frame."""
    inpainter, detector = create_avid(1, base_width=4, depth=2)
    graph = make_graph(inpainter, detector, residual_kernel=5)
    frames = torch.randn(1, 1, 12, 16)
    with torch.no_grad():
        error = torch.abs(frames - graph.inpaint(frames))[0, 0].numpy()
        got = graph.residual(frames)[0].numpy()
    want = np.zeros_like(error)
    for y in range(12):
        for x in range(16):
            want[y, x] = error[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].mean()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_alocc_bottleneck_is_a_linear_code_of_the_given_size():
    r, _ = create_alocc(in_channels=1, patch_size=28, base_width=8, depth=3, bottleneck=16)
    plain, _ = create_alocc(in_channels=1, patch_size=28, base_width=8, depth=3)
    x = torch.randn(5, 1, 28, 28)
    assert r(x).shape == x.shape
    # deepest map 32 channels × 4 × 4 = 512 → 16 → 512: two linear layers
    assert n_params(r) - n_params(plain) == (512 * 16 + 16) + (16 * 512 + 512)
    code = r.code[1](r.code[0](r.encoder(x)))
    assert code.shape == (5, 16)


def test_avid_inpainter_without_skips_and_with_a_code_keeps_shapes_and_drops_the_skip_inputs():
    plain = AvidInpainter(1, base_width=4, depth=2)
    narrow = AvidInpainter(1, base_width=4, depth=2, skip_connections=False, code_channels=3)
    x = torch.randn(2, 1, 32, 48)
    assert narrow(x).shape == x.shape and narrow(x).abs().max() <= 1.0
    # merge blocks see half the channels (no skip), plus the 1×1 code 16 → 3 → 16
    first_merge = lambda m: m.merge[0][0].weight.shape[1]  # noqa: E731
    assert first_merge(plain) == 2 * first_merge(narrow) == 16
    assert sum(p.numel() for p in narrow.code.parameters()) == (16 * 3 + 3) + (3 * 16 + 16)


class FixedResidual(torch.nn.Module):
    """Stands in for I so that |X − I(X)| is exactly the input: I(X) = 0."""

    def forward(self, x):
        return torch.zeros_like(x)


def test_mask_reach_keeps_whole_objects_that_d_flags_and_only_those():
    # two bright objects on a quiet frame; D flags one cell of the left object only
    frames = torch.zeros(1, 1, 16, 32)
    frames[0, 0, 2:12, 2:14] = 1.0  # left object, spans cells (0..2, 0..3)
    frames[0, 0, 4:10, 22:28] = 1.0  # right object, no flagged cell
    logits = torch.full((1, 4, 8), 10.0)
    logits[0, 1, 1] = -10.0  # cell (1, 1): rows [4, 8), cols [4, 8), inside the left object
    alpha, zeta = torch.tensor([0.5]), torch.tensor([0.5])
    masks = {}
    for reach in (0, 2, 16):
        graph = make_graph(FixedResidual(), FixedLogits(logits, 4), mask_reach=reach)
        with torch.no_grad():
            score, mask, residual, regions, inter = graph(frames, alpha, zeta)
        masks[reach] = mask[0]
        assert float(score[0]) == 2.0  # the frame score does not depend on the reach
        # thresholding the continuous map at α is the mask, as the ROC sweep assumes
        assert torch.equal(inter[0] >= 1.0, mask[0])
    block = torch.zeros(16, 32, dtype=torch.bool)
    block[4:8, 4:8] = True
    left = torch.zeros(16, 32, dtype=torch.bool)
    left[2:12, 2:14] = True
    assert torch.equal(masks[0], block)  # Eq. 4: only the flagged block
    grown = block.clone()
    grown[2:10, 2:10] = True  # two 3×3 dilations, inside the object
    assert torch.equal(masks[2], grown & left)
    assert torch.equal(masks[16], left)  # the whole left object, never the right one


def test_region_gate_separates_confident_regions_that_round_to_the_same_probability():
    # anomaly logits 17 and 18: 1 − O rounds to 1.0 for both in float32, yet ζ between them must
    # flag only the second; a probability comparison would flag both (and backends disagree there)
    frames = torch.ones(1, 1, 4, 8)
    logits = torch.tensor([[[-17.0, -18.0]]])  # D's logits; the anomaly logit is their negative
    assert float(torch.sigmoid(-logits[0, 0, 0])) == float(torch.sigmoid(-logits[0, 0, 1])) == 1.0
    zeta = torch.tensor([float(torch.sigmoid(torch.tensor(-17.5, dtype=torch.float64)))])  # O <= ζ ⟺ logit <= −17.5
    graph = make_graph(FixedResidual(), FixedLogits(logits, 4))
    with torch.no_grad():
        _, mask, _, _, _ = graph(frames, torch.tensor([0.5]), zeta)
    assert not mask[0, :, :4].any() and mask[0, :, 4:].all()


def test_region_memory_distances_by_hand():
    # one 2×4 frame, cell 2: two regions; the left one a vertical edge, the right one flat
    frame = torch.tensor([[[[0.0, 1.0, 0.3, 0.3], [0.0, 1.0, 0.3, 0.3]]]])
    shapes = RegionMemory.describe(frame, 2)
    edge = torch.tensor([-0.5, 0.5, -0.5, 0.5])  # centred (−0.5, 0.5, −0.5, 0.5): unit length already
    torch.testing.assert_close(shapes[0, 0], edge)
    torch.testing.assert_close(shapes[0, 1], torch.zeros(4))  # flat: no shape, near other flat regions
    # a faint edge (spread 0.02 < MIN_CONTRAST 0.1) is scaled as if its spread were 0.1: length 0.2
    faint = RegionMemory.describe(torch.tensor([[[[0.0, 0.04], [0.0, 0.04]]]]), 2)
    assert abs(float(torch.linalg.vector_norm(faint)) - 0.2) < 1e-6
    # bank: the edge, its mirror image and a flat region
    bank = torch.stack([edge, -edge, torch.zeros(4)])
    memory = RegionMemory(bank, cell=2, level=0.5)
    distances = memory.distances(frame)[0, 0]
    # both regions are in the bank: distance 0, read as the floor 0.05
    torch.testing.assert_close(distances, torch.tensor([0.05, 0.05]))
    # their own copies left out, the next nearest: the flat region at 1 from the edge (and back)
    with memory.leaving_out_identical():
        torch.testing.assert_close(memory.distances(frame)[0, 0], torch.tensor([1.0, 1.0]))
    assert not memory.skip_identical
    # the mirrored edge alone in the bank: distance ‖e − (−e)‖ = 2; normality logit log(level / d)
    far = RegionMemory(-edge[None], cell=2, level=0.5)
    torch.testing.assert_close(far(frame[..., :2]), torch.log(torch.tensor([[[0.25]]])))


def test_moment_alignment_by_hand():
    from occ.train.avid import moment_aligned

    def region(rows, cols):
        r = torch.full((1, 1, 1, 16, 16), -1.0)  # dark background, normalized units
        r[..., rows, cols] = 1.0
        return r

    centred = region(slice(6, 10), slice(5, 11))  # symmetric about the middle (7.5, 7.5)
    ink = centred + 1.0
    # already in the standard pose: returned as its ink (brightness above the darkest value)
    torch.testing.assert_close(moment_aligned(centred), ink)
    # moved by (−4, +3) px: brought back to the middle; the centroid's pull toward the middle
    # (1e-3 of a full region's mass, 0.256, against 48 of ink) leaves 0.021 and 0.016 px, so at
    # an edge pixel under 2 × (0.021 + 0.016) of the ink's 2
    moved = region(slice(2, 6), slice(8, 14))
    assert float(torch.amax(torch.abs(moment_aligned(moved) - ink))) < 0.08
    # a stroke slanting one column right every two rows: unslanted, every row's ink centroid in one column
    slanted = torch.full((1, 1, 1, 16, 16), -1.0)
    for y in range(2, 14):
        slanted[..., y, 6 + (y - 2) // 2 : 8 + (y - 2) // 2] = 1.0
    xs = torch.arange(16.0)

    def row_centroids(r):
        w = r[0, 0, 0, 3:13]
        return (w * xs).sum(dim=1) / w.sum(dim=1)

    assert float(row_centroids(slanted + 1).std()) > 1.5
    assert float(row_centroids(moment_aligned(slanted)).std()) < 0.3
    # a flat region (no ink) stays flat, without NaNs; channels are moved together
    flat = torch.zeros(2, 3, 2, 16, 16)
    assert torch.equal(moment_aligned(flat), flat)
    two = torch.cat([moved, -1.0 + 0.5 * (moved + 1.0)], dim=2)  # the second channel: the same shape, half the ink
    aligned = moment_aligned(two)
    assert float(torch.amax(torch.abs(aligned[:, :, 0] - ink[:, :, 0]))) < 0.12  # mass 36 (the channel mean): a little more pull
    torch.testing.assert_close(aligned[:, :, 1], 0.5 * aligned[:, :, 0])


def test_aligned_memory_matches_a_shape_wherever_it_sits_in_its_region():
    from mnist_files import glyph_digits

    from occ.evaluation.metrics import roc_auc

    rng = np.random.default_rng(0)
    images, labels = glyph_digits(rng, 400, jitter=4)
    frames = torch.from_numpy(images[:, None].astype(np.float32) / 127.5 - 1.0)  # glyphs shifted up to 4 px
    normal = labels != 3
    bank_rows, queries = np.nonzero(normal)[0][:150], np.r_[np.nonzero(normal)[0][150:], np.nonzero(~normal)[0]]
    irregular = labels[queries] == 3
    aucs = {}
    for align in (False, True):
        bank = RegionMemory.describe(frames[bank_rows], 28, align).reshape(len(bank_rows), -1)
        memory = RegionMemory(bank, cell=28, level=1.0, align=align)
        distances = memory.distances(frames[queries]).flatten().numpy()
        aucs[align] = roc_auc(irregular, distances)
    # the glyph moved within its region is still the glyph: aligned, the unseen class ranks first
    assert aucs[True] > 0.99 and aucs[True] > aucs[False]


def test_evidence_frame_score_sums_the_blocks_and_fires_without_a_mask():
    # four 4×4 blocks, residual 0.35, 0.35, 0.35, 0.1, every region flagged; α 0.5: block values 0.7, 0.7, 0.7, 0.2
    frames = torch.tensor([0.35, 0.35, 0.35, 0.1]).repeat_interleave(4).expand(1, 1, 4, 16).clone()
    logits = torch.full((1, 1, 4), -10.0)
    alpha, zeta = torch.tensor([0.5]), torch.tensor([1 / 3])
    outputs = {}
    for frame_score, reach in (("peak", 0), ("evidence", 0), ("evidence", 3)):
        graph = make_graph(FixedResidual(), FixedLogits(logits, 4), mask_reach=reach, frame_score=frame_score)
        with torch.no_grad():
            outputs[frame_score, reach] = graph(frames, alpha, zeta)
    # peak: the largest value, 0.7, under 1: no mask, no decision
    assert abs(float(outputs["peak", 0][0][0]) - 0.7) < 1e-5 and not outputs["peak", 0][1].any()
    # evidence: 3 × (0.7 − 0.25) / 0.75 = 1.8 ≥ 1: the frame fires although no block reaches the mask
    for key in (("evidence", 0), ("evidence", 3)):
        score, mask = outputs[key][:2]
        assert abs(float(score[0]) - 1.8) < 1e-5 and not mask.any()
    # the mask and the intersection map do not depend on the frame score
    assert torch.equal(outputs["peak", 0][4], outputs["evidence", 0][4])


def test_soft_intersection_lets_both_parts_rank_and_lowers_the_residual_threshold_where_the_region_is_sure():
    # two blocks, residual 0.25 and 1.0 (α 0.5: 0.5 and 2 times α); region multiples 16 and 1
    frames = torch.tensor([0.25, 1.0]).repeat_interleave(4).expand(1, 1, 4, 8).clone()
    logits = -torch.log(torch.tensor([[[32.0, 2.0]]]))  # odds 32 and 2; odds(1 − ζ) = 2
    alpha, zeta = torch.tensor([0.5]), torch.tensor([1 / 3])
    graph = make_graph(FixedResidual(), FixedLogits(logits, 4), gate="soft", residual_weight=0.25)
    with torch.no_grad():
        score, mask, _, _, inter = graph(frames, alpha, zeta)
    # (0.5)^0.25 · 16^0.75 = 0.841 · 8 = 6.73 and 2^0.25 · 1^0.75 = 1.19: both blocks in the mask,
    # the left one although its residual is under α (the sure region lowers its threshold to α / 16^3)
    torch.testing.assert_close(inter[0, 0, :4], torch.full((4,), 0.5 ** 0.25 * 8.0))
    torch.testing.assert_close(inter[0, 0, 4:], torch.full((4,), 2.0 ** 0.25))
    assert mask.all() and abs(float(score[0]) - 0.5 ** 0.25 * 8.0) < 1e-5
    # the binary gate (Eq. 4) keeps only the right block: the left residual is under α
    hard = make_graph(FixedResidual(), FixedLogits(logits, 4))
    with torch.no_grad():
        hard_mask = hard(frames, alpha, zeta)[1]
    assert not hard_mask[0, :, :4].any() and hard_mask[0, :, 4:].all()
    # a residual of 0 stays 0 (no NaN from log 0), and the numpy definition agrees
    from occ.runtime.scoring import block_values

    with torch.no_grad():
        zero = graph(torch.zeros(1, 1, 4, 8), alpha, zeta)[4]
    assert torch.equal(zero, torch.zeros_like(zero))
    soft = AvidScoring(region_scorer="memory", gate="soft", residual_weight=0.25, region_quantile=None)
    np.testing.assert_allclose(block_values(np.array([[0.25, 1.0]]), np.array([[32 / 33, 2 / 3]]), 0.5, 1 / 3, soft),
                               [[0.5 ** 0.25 * 8.0, 2.0 ** 0.25]], rtol=1e-6)
    with pytest.raises(ManifestError, match="residual_weight must be in"):
        make_graph(FixedResidual(), FixedLogits(logits, 4), gate="soft")
