"""AVID's scoring contract exists twice: the torch graph that is exported (occ.train.avid_graph) and the
numpy rule calibration and evaluation use (occ.runtime.scoring.thresholds). For every contract
training can produce, both give the same frame scores and masks; every other contract is refused
by the manifest in one line."""
import itertools
import zlib

import numpy as np
import pytest
import torch

from occ.runtime.manifest import (FRAME_SCORES, GATES, REGION_SCORERS, RESIDUALS, AvidScoring, InputSpec, Manifest, ManifestError,
                                  RegionSpec)
from occ.runtime.scoring import block_peaks, block_values, frame_scores, solve_for_false_alarms
from occ.train.avid import RegionMemory, create_avid
from occ.train.avid_graph import create_avid_graph

CELL = 4  # depth 2
HEIGHT, WIDTH = 16, 24
# float32 graph against float64 numpy
SCORE_RTOL, SCORE_ATOL = 1e-5, 1e-6
# a block value this close to 1 is a tie: its decision may go either way
TIE = 1e-4


def contract(region_scorer: str, gate: str, frame_score: str, residual: str, **settings) -> AvidScoring:
    """A contract with the settings its choices need (and only those)."""
    return AvidScoring(region_scorer=region_scorer, gate=gate, frame_score=frame_score, residual=residual,
                       residual_weight=0.3 if gate == "soft" else None, region_quantile=0.2 if gate == "binary" else None,
                       evidence_floor=0.25 if frame_score == "evidence" else None, **settings)


def _admissible(choices) -> bool:
    try:
        contract(*choices).validate()
    except ManifestError:
        return False
    return True


CHOICES = list(itertools.product(REGION_SCORERS, GATES, FRAME_SCORES, RESIDUALS))
ADMISSIBLE = [c for c in CHOICES if _admissible(c)]
INADMISSIBLE = [c for c in CHOICES if not _admissible(c)]


def test_the_schema_admits_exactly_what_training_produces():
    from occ.train.train_avid import avid_config, avid_scoring

    produced = set()
    for memory, predict_newest, frame_score in itertools.product((0, 100), (False, True), FRAME_SCORES):
        settings = dict(region_memory=memory, residual_weight=0.2 if memory else None, predict_newest=predict_newest,
                        frame_score=frame_score)
        config = avid_config("images" if memory else "video", **settings)
        if memory and predict_newest:  # refused by training's config check (single images have no newest frame)
            continue
        scoring = avid_scoring(config, config.height)
        produced.add((scoring.region_scorer, scoring.gate, scoring.frame_score, scoring.residual))
    assert produced == set(ADMISSIBLE) and len(ADMISSIBLE) == 6


def _graph(choices, mask_reach: int, residual_kernel: int, rng: np.random.Generator):
    region_scorer, _, _, residual = choices
    channels = 1 if region_scorer == "memory" else 3
    torch.manual_seed(int(rng.integers(1 << 31)))
    inpainter, detector = create_avid(channels, base_width=4, depth=2)
    scorer = detector.eval()
    if region_scorer == "memory":
        normal = torch.from_numpy(rng.uniform(-1, 1, (8, channels, HEIGHT, WIDTH)).astype(np.float32))
        bank = RegionMemory.describe(normal, CELL).reshape(-1, channels * CELL * CELL)
        scorer = RegionMemory(bank, CELL, level=1.0)
        # the level where half the regions of new frames lie, so the region map spreads around 1/2
        scorer.level.fill_(float(torch.median(scorer.distances(torch.rand(4, channels, HEIGHT, WIDTH) * 2 - 1))))
    scoring = contract(*choices, mask_reach=mask_reach, residual_kernel=residual_kernel)
    return create_avid_graph(inpainter.eval(), scorer, scoring), scoring, channels


def _off_ties(values: np.ndarray, fraction: float) -> float:
    """A threshold near the ``fraction`` quantile of ``values`` in a gap between them, not on one."""
    ordered = np.unique(values)
    middle = int(fraction * (len(ordered) - 1))
    gaps = np.diff(ordered)
    best = middle + int(np.argmax(gaps[middle : middle + max(1, len(ordered) // 10)]))
    return float((ordered[best] + ordered[best + 1]) / 2)


@pytest.mark.parametrize("mask_reach, residual_kernel", [(0, 1), (2, 3)])
@pytest.mark.parametrize("choices", ADMISSIBLE, ids=["-".join(c) for c in ADMISSIBLE])
def test_graph_and_numpy_rule_agree(choices, mask_reach, residual_kernel):
    rng = np.random.default_rng(zlib.crc32(f"{choices} {mask_reach}".encode()))
    graph, scoring, channels = _graph(choices, mask_reach, residual_kernel, rng)
    frames = torch.from_numpy(rng.uniform(-1, 1, (12, channels, HEIGHT, WIDTH)).astype(np.float32))
    with torch.no_grad():
        residual = graph.residual(frames).numpy()
        regions = graph.region_anomaly(frames).numpy()
    peaks = block_peaks(residual, CELL)
    # ζ: about half the regions pass the binary gate; α: about half the frames fire
    zeta = 1.0 - _off_ties(regions.astype(np.float64), 0.5)
    alpha = solve_for_false_alarms(lambda a: float((frame_scores(block_values(peaks, regions, a, zeta, scoring), scoring) >= 1).mean()),
                                   0.5, 1e-6, 1e3)
    with torch.no_grad():
        score, mask, graph_residual, graph_regions, intersection = (
            t.numpy() for t in graph(frames, torch.tensor([alpha]), torch.tensor([zeta], dtype=torch.float32)))
    np.testing.assert_array_equal(graph_residual, residual)
    np.testing.assert_array_equal(graph_regions, regions)

    values = block_values(peaks, regions, alpha, zeta, scoring)
    expected = frame_scores(values, scoring)
    np.testing.assert_allclose(score, expected, rtol=SCORE_RTOL, atol=SCORE_ATOL)
    fires = expected >= 1
    assert fires.any() and not fires.all()  # the case decides something
    clear = np.abs(expected - 1) > TIE
    np.testing.assert_array_equal((score >= 1)[clear], fires[clear])
    # the mask: the blocks whose value reaches 1 (Eq. 4's blocks); with a reach, those and the
    # residual objects they touch, which have no numpy form (decide() takes the graph's mask)
    block_mask, graph_blocks = values >= 1, block_peaks(mask, CELL)
    block_clear = np.abs(values - 1) > TIE
    if mask_reach == 0:
        np.testing.assert_array_equal(graph_blocks[block_clear], block_mask[block_clear])
    else:
        assert np.all(graph_blocks[block_clear & block_mask])
    np.testing.assert_array_equal(mask, intersection >= 1)


@pytest.mark.parametrize("choices", INADMISSIBLE, ids=["-".join(c) for c in INADMISSIBLE])
def test_contracts_training_cannot_produce_are_refused_in_one_line(choices):
    data = _manifest(contract(*ADMISSIBLE[0])).to_dict()
    data["scoring"] = {**data["scoring"], **contract(*choices).__dict__}
    with pytest.raises(ManifestError, match=r"^avid\.onnx: invalid manifest: scoring\.(gate|residual) ") as info:
        Manifest.from_dict(data, source="avid.onnx")
    assert "\n" not in str(info.value)


def _manifest(scoring: AvidScoring, temporal: str = "avid_triplet") -> Manifest:
    channels = {"avid_triplet": 3, "none": 1}[temporal]
    return Manifest(method="avid", input=InputSpec(height=HEIGHT, width=WIDTH, channels=channels, temporal=temporal),
                    regions=RegionSpec(cell=CELL, rows=HEIGHT // CELL, cols=WIDTH // CELL), scoring=scoring)


@pytest.mark.parametrize("choices, temporal, message", [
    (("detector", "binary", "peak", "newest"), "none", r"scoring\.residual 'newest' needs the 'avid_triplet' input"),
    (("memory", "soft", "evidence", "mean"), "avid_triplet", r"scoring\.region_scorer 'memory' needs single images"),
])
def test_contracts_that_do_not_fit_the_input_are_refused_in_one_line(choices, temporal, message):
    data = _manifest(contract(*choices), temporal).to_dict()
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.from_dict(data, source="avid.onnx")
    assert "\n" not in str(info.value)
    for fitting in ("avid_triplet", "none"):  # the same contract on the input training pairs it with
        if fitting != temporal:
            _manifest(contract(*choices), fitting).validate()
