"""The drift watch: its KS statistic and threshold by hand, no alarm on autocorrelated normal scores,
an alarm on a shifted distribution, and nothing added while an event is open."""
import math

import numpy as np
import pytest

from occ.runtime.scoring.drift import (DriftLimits, DriftWatch, effective_size, ks_statistic, ks_threshold,
                                        lag1_autocorrelation)


def ar1(n: int, rho: float, seed: int) -> np.ndarray:
    """Frame scores as a camera gives them: an AR(1) series with unit variance."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, math.sqrt(1 - rho * rho), n)
    out = np.empty(n)
    out[0] = rng.normal()
    for i in range(1, n):
        out[i] = rho * out[i - 1] + noise[i]
    return out


def test_ks_statistic_by_hand():
    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([1, 2, 3], [4, 5, 6]) == 1.0
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5  # at 2: 2/4 against 0/4


def test_threshold_and_effective_size_by_hand():
    # the textbook 5 % critical value for n = m = 100: 1.358 * sqrt(2 / 100)
    assert ks_threshold(0.05, 100, 100) == pytest.approx(1.3581 * math.sqrt(0.02), rel=1e-3)
    assert effective_size(300, 0.5) == pytest.approx(100.0)
    assert effective_size(300, -0.2) == 300  # negative autocorrelation is not counted as a gain
    # one test per 5 min over 30 days: 8,640 tests for one false alarm
    assert DriftLimits().test_false_alarm_rate == pytest.approx(1 / 8640)


def test_lag1_autocorrelation_of_an_ar1_series():
    assert lag1_autocorrelation(ar1(20000, 0.6, 1)) == pytest.approx(0.6, abs=0.03)


def test_normal_autocorrelated_scores_raise_no_drift_and_a_shift_does():
    frame_rho = 0.98  # neighbouring frames' scores are alike: kept every 10th, rho is about 0.82
    reference = ar1(12000, frame_rho, 2)
    watch = DriftWatch(reference)
    states = [watch.update(s) for s in ar1(60000, frame_rho, 3)]  # 100 minutes at 10 frames/s: 20 tests
    assert not any(s.drifting for s in states) and states[-1].statistic is not None
    shifted = [watch.update(s) for s in ar1(6000, frame_rho, 4) + 1.5]
    started = [i for i, s in enumerate(shifted) if s.started]
    assert len(started) == 1 and started[0] < 6000 and shifted[started[0]].statistic > watch.threshold


def test_the_watch_is_frozen_while_an_event_is_open():
    watch = DriftWatch(ar1(12000, 0.98, 5))
    held = [watch.update(s, hold=True) for s in ar1(6000, 0.98, 6) + 3.0]
    assert all(s.frozen and not s.drifting and s.statistic is None for s in held)


def test_without_a_reference_it_learns_one_from_the_stream_start():
    limits = DriftLimits(window=50, reference_windows=4)
    watch = DriftWatch(limits=limits)
    for s in ar1(limits.every * limits.window * limits.reference_windows, 0.9, 7):
        watch.update(s)
    assert watch.reference is not None and len(watch.reference) == 200 and watch.threshold is not None


def test_drift_metrics_carry_the_camera_label():
    from occ.runtime.events import ServiceMetrics
    from occ.runtime.scoring.drift import DriftState

    from test_camera import parse_metrics

    metrics = ServiceMetrics("m.onnx")
    gate, yard = metrics.camera("gate"), metrics.camera("yard")
    gate.drift, yard.drift = DriftState(True, 0.31, 0.2), DriftState(False, None, 0.2)
    values = parse_metrics(metrics.render().decode())
    gate_labels, yard_labels = (("camera", "gate"), ("model", "m.onnx")), (("camera", "yard"), ("model", "m.onnx"))
    assert values[("occ_drift", gate_labels)] == 1 and values[("occ_drift", yard_labels)] == 0
    assert values[("occ_drift_statistic", gate_labels)] == 0.31 and ("occ_drift_statistic", yard_labels) not in values
    assert values[("occ_drift_threshold", yard_labels)] == 0.2
    assert values[("occ_needs_calibration", gate_labels)] == 1 and values[("occ_needs_calibration", yard_labels)] == 0
