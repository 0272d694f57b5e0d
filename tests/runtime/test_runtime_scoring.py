"""Scoring components on synthetic cases built to need them (moved from tests/test_scoring.py; the
synthetic irregularities of training stay there)."""
import re

import numpy as np
import pytest

from occ.evaluation.metrics import roc_auc
from occ.runtime.manifest import AloccScoring, AvidScoring
from occ.runtime.scoring import avid_thresholds, block_peaks, block_values, frame_evidence, frame_scores, location_stats, patch_scores
from occ.runtime.scoring.statistics import normalize_by_location


BINARY = AvidScoring(gate="binary", region_quantile=0.2)


def soft(frame_score: str = "peak") -> AvidScoring:
    return AvidScoring(region_scorer="memory", gate="soft", residual_weight=0.2, frame_score=frame_score,
                       evidence_floor=0.25 if frame_score == "evidence" else None, region_quantile=None)


def binary(frame_score: str = "peak", region_quantile: float = 0.2) -> AvidScoring:
    return AvidScoring(gate="binary", frame_score=frame_score, evidence_floor=0.25 if frame_score == "evidence" else None,
                       region_quantile=region_quantile)


def test_fusion_puts_outputs_on_one_scale(rng):
    # Two graph outputs: the discriminator term is informative but lives on a scale 100× smaller
    # than the reconstruction term, which here is pure noise. A raw sum drowns the signal.
    frames, locations = 2000, 6
    labels = np.r_[np.zeros(frames // 2, bool), np.ones(frames // 2, bool)]
    d_term = rng.normal(0, 0.01, (frames, locations))
    d_term[labels, 2] += 0.05
    r_term = rng.normal(0, 1.0, (frames, locations))
    stats = {"score": location_stats(d_term[~labels][:500]), "reconstruction_error": location_stats(r_term[~labels][:500])}
    outputs = {"score": d_term, "reconstruction_error": r_term}
    raw = patch_scores(outputs, AloccScoring(terms={"score": 1.0, "reconstruction_error": 1.0})).max(axis=1)
    fused = patch_scores(outputs, AloccScoring(terms={"score": 1.0, "reconstruction_error": 1.0}, location_stats=stats)).max(axis=1)
    assert roc_auc(labels, raw) < 0.6
    assert roc_auc(labels, fused) > 0.8


def _normal_maps(rng, lowest: float, highest: float):
    """4000 synthetic normal frames, cell 4: uniform 1 − O in [lowest, highest] (3×5) and a gamma residual (12×20)."""
    return rng.uniform(lowest, highest, (4000, 3, 5)), rng.gamma(2.0, 0.05, (4000, 12, 20)).astype(np.float32)


def test_avid_thresholds_hit_the_false_alarm_rate_and_gate_the_chosen_share_of_regions(rng):
    cell = 4
    regions, residual = _normal_maps(rng, 0.0, 1.0)
    thresholds = avid_thresholds(binary(), block_peaks(residual[:2000], cell), regions[:2000], 0.05, "synthetic normal maps")
    alpha, zeta = thresholds["alpha"].value, thresholds["zeta"].value
    # uniform 1 − O: the gate passes the 80 % of regions D is least sure of (D vetoes 20 %)
    assert abs((1 - zeta) - 0.2) < 0.02
    wider = avid_thresholds(binary(region_quantile=0.5), block_peaks(residual[:2000], cell), regions[:2000], 0.05, "synthetic")
    assert abs((1 - wider["zeta"].value) - 0.5) < 0.02 and wider["alpha"].value < alpha  # a wider veto, a lower α
    up = np.repeat(np.repeat(regions[2000:], cell, axis=1), cell, axis=2)
    fired = (np.where(up >= 1 - zeta, residual[2000:], 0) >= alpha).reshape(2000, -1).any(axis=1)
    assert abs(fired.mean() - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 2000)
    assert thresholds["alpha"].target_false_alarm_rate == 0.05 and thresholds["alpha"].n_samples == 2000


def test_absolute_floor_keeps_a_flat_term_from_dominating(rng):
    flat = 0.3 + rng.normal(0, 1e-5, (500, 1))  # an undertrained D: outputs barely vary
    assert location_stats(flat).std[0] < 1e-4
    floored = location_stats(flat, absolute_floor=0.1)
    assert floored.std == [0.1]
    # a wobble of 1e-4 logits now moves the z-score by 1e-3, not by ~10
    z = patch_scores({"score": np.array([[0.3001]])}, AloccScoring(terms={"score": 1.0}, location_stats={"score": floored}))
    assert abs(float(z[0, 0])) < 0.01


def test_soft_gate_thresholds_put_alpha_at_the_typical_block_and_zeta_at_the_false_alarm_rate(rng):
    cell = 4
    regions, residual = _normal_maps(rng, 0.05, 0.95)
    thresholds = avid_thresholds(soft(), block_peaks(residual[:2000], cell), regions[:2000], 0.05, "synthetic normal maps")
    alpha, zeta = thresholds["alpha"].value, thresholds["zeta"].value
    peaks = residual[:2000].reshape(2000, 3, cell, 5, cell).max(axis=(2, 4))
    # α: the median block peak
    assert alpha == pytest.approx(float(np.median(peaks)), rel=1e-6)
    # ζ alone sets the rate: on fresh normal maps about 5 % of frames fire, by the soft intersection by hand
    fresh = residual[2000:].reshape(2000, 3, cell, 5, cell).max(axis=(2, 4))
    odds = regions[2000:] / (1 - regions[2000:])
    multiple = np.minimum(odds / ((1 - zeta) / zeta), np.exp(10.0))
    score = ((fresh / alpha) ** 0.2 * multiple ** 0.8).reshape(2000, -1).max(axis=1)
    assert abs((score >= 1).mean() - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 2000)
    assert thresholds["alpha"].method.startswith("median") and thresholds["zeta"].n_samples == 2000


def test_frame_evidence_and_block_values_by_hand():
    # floor 0.25: a block counts (v − 0.25) / 0.75; one block at the mask's level counts 1
    values = np.array([[1.0, 0.25, 0.1], [0.7, 0.7, 0.7], [0.4, 0.0, 0.0]])
    np.testing.assert_allclose(frame_evidence(values, 0.25), [1.0, 1.8, 0.2])
    np.testing.assert_allclose(frame_evidence(values, 0.5), [1.0, 1.2, 0.0])
    np.testing.assert_allclose(frame_scores(values[:, None], soft("evidence")), [1.0, 1.8, 0.2])
    np.testing.assert_allclose(frame_scores(values[:, None], soft("peak")), [1.0, 0.7, 0.4])
    # α 0.5, ζ 1/3 (odds(1 − ζ) = 2); regions with odds 4 and 0.5
    peaks, regions = np.array([[1.0, 3.0]]), np.array([[0.8, 1 / 3]])
    # soft, w 0.2: (peak / α)^0.2 · (odds ratio)^0.8
    np.testing.assert_allclose(block_values(peaks, regions, 0.5, 1 / 3, soft()), [[2.0**0.2 * 2.0**0.8, 6.0**0.2 * 0.25**0.8]])
    # binary: peak / α where 1 − O >= 1 − ζ, 0 elsewhere
    np.testing.assert_allclose(block_values(peaks, regions, 0.5, 1 / 3, binary()), [[2.0, 0.0]])
    np.testing.assert_allclose(block_peaks(np.arange(32, dtype=np.float32).reshape(1, 4, 8), 4), [[[27.0, 31.0]]])


@pytest.mark.parametrize("gate", ["soft", "binary"])
def test_evidence_thresholds_hit_the_false_alarm_rate_and_fire_on_every_non_empty_mask(rng, gate):
    cell = 4
    regions, residual = _normal_maps(rng, 0.05, 0.95)
    spec, peak_spec = (soft("evidence"), soft()) if gate == "soft" else (binary("evidence"), binary())
    thresholds = avid_thresholds(spec, block_peaks(residual[:2000], cell), regions[:2000], 0.05, "synthetic normal maps")
    alpha, zeta = thresholds["alpha"].value, thresholds["zeta"].value
    assert "evidence" in (thresholds["zeta"] if gate == "soft" else thresholds["alpha"]).method
    values = block_values(block_peaks(residual[2000:], cell), regions[2000:], alpha, zeta, spec)
    fired = frame_evidence(values, 0.25) >= 1
    # on fresh normal maps about 5 % of frames fire
    assert abs(fired.mean() - 0.05) < 4 * np.sqrt(0.05 * 0.95 / 2000)
    # summing is stricter per block than the peak rule at the same rate, and a non-empty mask
    # (some block at >= 1) always fires the frame
    peak = avid_thresholds(peak_spec, block_peaks(residual[:2000], cell), regions[:2000], 0.05, "synthetic normal maps")
    if gate == "soft":  # a smaller ζ: a region must be further from normal to count
        assert thresholds["zeta"].value < peak["zeta"].value and thresholds["alpha"].value == peak["alpha"].value
    else:  # a larger α
        assert thresholds["alpha"].value > peak["alpha"].value and thresholds["zeta"].value == peak["zeta"].value
    assert np.all(fired[values.reshape(2000, -1).max(axis=1) >= 1])
    with pytest.raises(ValueError, match=r"false-alarm rate must be in \[0, 1\), got 1.5"):
        avid_thresholds(spec, block_peaks(residual[:20], cell), regions[:20], 1.5, "synthetic")
    # α and ζ solved for a share of frames that fire have no rule at 0
    for refused in (spec, peak_spec) if gate == "soft" else (spec,):
        with pytest.raises(ValueError, match=re.escape(f"a false-alarm rate of 0 needs the binary gate and the peak frame score (α at the "
                                                       f"largest normal frame): the {gate} gate with the {refused.frame_score} frame "
                                                       "score needs a rate above 0")):
            avid_thresholds(refused, block_peaks(residual[:20], cell), regions[:20], 0.0, "synthetic")


def test_a_passer_by_where_training_footage_rarely_moved_is_not_extreme(rng):
    # seven locations where people walk (errors up to ~3), one (index 7) where nobody walked in training
    normal = np.abs(rng.normal(0.0, 1.0, size=(2000, 8)))
    normal[:, 7] = np.abs(rng.normal(0.0, 0.02, size=2000))
    stats = location_stats(normal)
    busy_walker = float(np.quantile(normal[:, :7], 0.99))  # an ordinary error of a person on the walkway
    at_edge = np.zeros((1, 8))
    at_edge[0, 7] = busy_walker
    z_edge = float(normalize_by_location(at_edge, stats)[0, 7])
    z_walkway = float(np.quantile(normalize_by_location(normal, stats)[:, :7], 0.99))
    # the same person at the edge scores about twice what the walkway's worst 1 % do (4.2 here), not
    # ~200 (2.6 over the location's own spread) nor 17 (over a floor at a quarter of the median spread)
    assert z_edge < 2.5 * z_walkway
    # and an error far beyond anything normal anywhere still stands out at the edge
    at_edge[0, 7] = 4 * float(normal.max())
    assert float(normalize_by_location(at_edge, stats)[0, 7]) > 3 * z_walkway


def test_alocc_tau_at_rate_zero_is_the_largest_normal_frame_and_says_so(rng):
    from occ.runtime.scoring import alocc_thresholds

    scores = rng.normal(size=500)
    largest, quantile = alocc_thresholds(scores, 0.0, "tails")["tau"], alocc_thresholds(scores, 0.01, "tails")["tau"]
    assert largest.value == scores.max() and (scores > largest.value).sum() == 0 and largest.method == "largest normal frame"
    assert quantile.value < largest.value and (scores > quantile.value).sum() == 5 and quantile.method == "quantile"
    with pytest.raises(ValueError, match=r"false-alarm rate must be in \[0, 1\), got 1"):
        alocc_thresholds(scores, 1.0, "tails")


def test_avid_alpha_at_rate_zero_is_the_largest_normal_frames_gated_residual_and_says_so():
    # four frames of two blocks (cell 1); D is surest of the first block of frames 0 and 1 (1 − O
    # 0.10, 0.11: under ζ's veto at the 0.2 quantile, 0.114), so their residual peaks 5 and 4 do not count
    regions = np.array([[[0.10, 0.9]], [[0.11, 0.9]], [[0.12, 0.9]], [[0.13, 0.9]]])
    peaks = np.array([[[5.0, 1.0]], [[4.0, 2.0]], [[3.0, 0.5]], [[0.2, 0.7]]])
    largest = avid_thresholds(binary(), peaks, regions, 0.0, "four frames")
    assert largest["zeta"].value == pytest.approx(1 - 0.114)
    assert largest["alpha"].value == 3.0 and largest["alpha"].method == "largest normal frame (its largest gated residual)"
    # that frame itself reaches exactly 1 (AVID fires at 1), no other does
    scores = frame_scores(block_values(peaks, regions, 3.0, largest["zeta"].value, binary()), binary())
    assert scores.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 0.7 / 3])
    # a quarter of the frames: the 0.75 quantile of the gated largest 1, 2, 3, 0.7
    assert avid_thresholds(binary(), peaks, regions, 0.25, "four frames")["alpha"].value == pytest.approx(2.25)
