"""The drift watch: its KS statistic and Kolmogorov tail by hand, the threshold solved from a budget on
the calibration footage's own windows, no drift over a normal day (rush hours, dawn and dusk) and
drift on scores that moved at the same light or on light the calibration never saw, frozen while
an event is open, its reference through the manifest, and the gauges."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from occ.evaluation.datasets.walkway_day import daylight, walkers_in_view
from occ.runtime.manifest import Manifest, ManifestError
from occ.runtime.scoring.drift import (KOLMOGOROV_RMS, UNSEEN, DriftLimits, DriftReference, DriftWatch, frame_light,
                                        kolmogorov_quantile, uniform_ks_statistic)

HOUR = 1500  # frames per clock hour of a synthetic day: 36,000 frames, an hour of footage at 10 frames/s


def ar1(n: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance AR(1) noise: neighbouring frames' scores are alike."""
    noise = rng.normal(0, math.sqrt(1 - rho * rho), n)
    out = np.empty(n)
    out[0] = rng.normal()
    for i in range(1, n):
        out[i] = rho * out[i - 1] + noise[i]
    return out


def synthetic_day(seed: int, shift_from: int | None = None, gain_from: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame scores and brightness of a day as the walkway's models give them: the light from 46 grey
    levels at night to 131 by day, the scores high in the dark (sensor noise) and up in the rush
    hours (more walkers), slow autocorrelated wander on top. ``shift_from``: from this frame the
    scores are twice as high at the same light (a view the model does not know); ``gain_from``: from this frame a gain
    ramps to 1.5 over 10 minutes and stays (a lamp left on)."""
    rng = np.random.default_rng(seed)
    clock = np.arange(24 * HOUR) / HOUR
    day = daylight(clock)
    walkers = walkers_in_view(clock)
    light = 46 + 85 * day + rng.normal(0, 1.5, len(clock))
    scores = (38 - 29 * day) * (1 + 0.02 * (walkers - 6)) + ar1(len(clock), 0.998, rng) + rng.normal(0, 1, len(clock))
    if shift_from is not None:
        scores[shift_from:] *= 2.0
    if gain_from is not None:
        light[gain_from:] *= 1 + 0.5 * np.clip(np.arange(len(clock) - gain_from) / 6000, 0, 1)
    return scores, light


@pytest.fixture(scope="module")
def alocc_manifest_dict() -> dict:
    """The tiny test model's manifest, as its readable copy holds it."""
    return json.loads((Path(__file__).resolve().parents[1] / "data" / "alocc.onnx.json").read_text())


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return DriftReference.learn(*synthetic_day(101))


def stream(watch: DriftWatch, scores, light, hold=None) -> list:
    hold = np.zeros(len(scores), bool) if hold is None else hold
    return [watch.update(float(s), float(v), bool(h)) for s, v, h in zip(scores, light, hold)]


def test_the_uniform_ks_statistic_by_hand():
    assert uniform_ks_statistic([0.5]) == pytest.approx(0.5)
    assert uniform_ks_statistic((np.arange(100) + 0.5) / 100) == pytest.approx(0.005)  # the midpoints: half a step
    assert uniform_ks_statistic(np.full(10, UNSEEN)) == pytest.approx(1.0)  # all beyond the reference
    assert uniform_ks_statistic(np.r_[np.full(30, 1.0), (np.arange(70) + 0.5) / 70]) == pytest.approx(0.3, abs=0.01)


def test_the_kolmogorov_quantile_by_hand():
    assert kolmogorov_quantile(0.05) == pytest.approx(1.3581, abs=1e-4)  # the textbook 5 % and 1 % values
    assert kolmogorov_quantile(0.01) == pytest.approx(1.6276, abs=1e-4)
    assert kolmogorov_quantile(1e-6) == pytest.approx(math.sqrt(-0.5 * math.log(0.5e-6)), rel=1e-6)


def test_the_threshold_is_solved_from_the_budget(reference):
    limits = DriftLimits()
    assert limits.tests_in_budget == pytest.approx(30 * 1440)  # a test a minute for 30 days
    assert limits.test_false_alarm_rate == pytest.approx(1 / 43200)
    assert reference.threshold == pytest.approx(reference.spread * kolmogorov_quantile(1 / 43200))
    looser = DriftReference(reference.light_edges, reference.score_quantiles, reference.spread, limits=DriftLimits(budget_days=1))
    assert looser.threshold < reference.threshold  # one false alarm a day allowed: a lower threshold
    # independent scores: the footage's windows measure the Kolmogorov scale 1 / sqrt(window) (here 1 / sqrt(300))
    rng = np.random.default_rng(4)
    independent = DriftReference.learn(rng.normal(size=36000), rng.uniform(40, 140, 36000))
    assert independent.spread * math.sqrt(300) == pytest.approx(1.0, abs=0.25)
    # autocorrelated scores that follow the light: far wider, yet a threshold under 1 (the largest possible statistic)
    assert reference.spread > 2 * independent.spread and reference.threshold < 1
    assert KOLMOGOROV_RMS == pytest.approx(0.9069, abs=1e-4)


def test_a_normal_day_with_rush_hours_dawn_and_dusk_raises_no_drift(reference):
    watch = DriftWatch(reference)
    states = stream(watch, *synthetic_day(202))
    tested = [s.statistic for s in states if s.statistic is not None]
    assert not any(s.drifting for s in states) and len(set(tested)) > 40  # a test a minute after the first window
    assert max(tested) < watch.threshold


def test_scores_moved_at_the_same_light_are_drift_within_10_minutes(reference):
    watch = DriftWatch(reference)
    start = 14 * HOUR  # 14:00, daylight
    states = stream(watch, *synthetic_day(202, shift_from=start))
    started = [i for i, s in enumerate(states) if s.started]
    assert len(started) >= 1 and start < started[0] <= start + 6000  # 6,000 frames: 10 minutes at 10 frames/s


def test_light_the_calibration_never_saw_is_drift_within_10_minutes(reference):
    watch = DriftWatch(reference)
    start = int(9.6 * HOUR)  # 09:36, daylight: the ramp lights the walkway brighter than any calibration frame
    states = stream(watch, *synthetic_day(202, gain_from=start))
    started = [i for i, s in enumerate(states) if s.started]
    assert len(started) >= 1 and start < started[0] <= start + 6000


def test_the_watch_is_frozen_while_an_event_is_open(reference):
    scores, light = synthetic_day(202, shift_from=0)
    watch = DriftWatch(reference)
    held = stream(watch, scores[:12000], light[:12000], hold=np.ones(12000, bool))
    assert all(s.frozen and not s.drifting and s.statistic is None for s in held)
    # an event open over part of the stream: those frames are not counted, the others are
    hold = np.zeros(12000, bool)
    hold[::2] = True
    watch = DriftWatch(reference)
    states = stream(watch, scores[:12000], light[:12000], hold=hold)
    assert any(s.drifting for s in states) and all(s.frozen for s in states[::2])
    assert watch._frames == 6000


def test_without_a_reference_it_learns_one_from_the_stream_start():
    limits = DriftLimits(window=50, stride=10, reference_windows=4)
    scores, light = synthetic_day(7)
    watch = DriftWatch(limits=limits)
    stream(watch, scores[:limits.every * limits.window * limits.reference_windows], light[:2000])
    assert watch.reference is not None and watch.reference.frames == 2000 and watch.threshold is not None


def test_frame_light_is_the_mean_grey_level():
    frame = np.full((48, 72), 100, np.uint8)
    frame[::4, ::4] = 60  # the rows and columns it samples
    assert frame_light(frame) == pytest.approx(60.0)
    assert frame_light(np.full((48, 72, 3), 90, np.uint8)) == pytest.approx(90.0)


def test_the_reference_travels_in_the_manifest(reference, alocc_manifest_dict):
    view = reference.to_view("day_calib")
    manifest = Manifest.from_dict({**alocc_manifest_dict, "drift": json.loads(json.dumps(view.__dict__))})
    assert manifest.validate().drift == view
    again = DriftReference.from_view(Manifest.from_json(manifest.to_json()).drift)
    assert again.threshold == pytest.approx(reference.threshold, rel=1e-4)
    scores, light = synthetic_day(202)
    assert np.allclose(again.transform(scores[:500:10], light[:500:10]), reference.transform(scores[:500:10], light[:500:10]), atol=1e-4)
    assert len(json.dumps(view.__dict__)) < 6000  # 8 bins of 21 quantiles: a few kB


@pytest.mark.parametrize("change, message", [
    ({"light_edges": [1.0]}, "light_edges must be at least 2"),
    ({"light_edges": [3.0, 2.0]}, "light_edges must be at least 2 finite, increasing"),
    ({"score_quantiles": [[1.0, 2.0]]}, "score_quantiles must be 8 rows"),
    ({"spread": 0.0}, "drift.spread must be a finite number > 0"),
    ({"window": 0}, "drift.window must be a positive integer"),
])
def test_a_bad_drift_reference_is_one_line(reference, alocc_manifest_dict, change, message):
    view = {**json.loads(json.dumps(reference.to_view().__dict__)), **change}
    with pytest.raises(ManifestError, match=message) as caught:
        Manifest.from_dict({**alocc_manifest_dict, "drift": view}).validate()
    assert "\n" not in str(caught.value)


def test_drift_metrics_carry_the_camera_label():
    from occ.runtime.events import ServiceMetrics
    from occ.runtime.scoring.drift import DriftState

    from service_utils import parse_metrics

    metrics = ServiceMetrics("m.onnx")
    gate, yard = metrics.camera("gate"), metrics.camera("yard")
    gate.drift, yard.drift = DriftState(True, 0.31, 0.2), DriftState(False, None, 0.2)
    values = parse_metrics(metrics.render().decode())
    gate_labels, yard_labels = (("camera", "gate"), ("model", "m.onnx")), (("camera", "yard"), ("model", "m.onnx"))
    assert values[("occ_drift", gate_labels)] == 1 and values[("occ_drift", yard_labels)] == 0
    assert values[("occ_drift_statistic", gate_labels)] == 0.31 and ("occ_drift_statistic", yard_labels) not in values
    assert values[("occ_drift_threshold", yard_labels)] == 0.2
    assert values[("occ_needs_calibration", gate_labels)] == 1 and values[("occ_needs_calibration", yard_labels)] == 0


SHORT_DAY = dict(hours=0.5, start="04:00", clock_hours=16.0, height=48, width=72)  # 18,000 frames: dawn, both rush hours, the day
SHORT_LIMITS = DriftLimits()  # 5-minute windows, a test a minute: the half-hour day holds 26 of them


@pytest.fixture(scope="module")
def walkway_reference():
    """The tiny ALOCC model's scores on a short calibration day (no events), as ``occ calibrate`` learns them."""
    from occ.benchmarks.drift import day_scores
    from occ.evaluation.datasets.walkway_day import DayConfig
    from occ.runtime.detector import open_detector

    detector = open_detector(str(Path(__file__).resolve().parents[1] / "data" / "alocc.onnx"))
    calibration = day_scores(detector, DayConfig(**SHORT_DAY, seed=101, events_per_hour=0), SHORT_LIMITS.every)
    return detector, DriftReference.learn(calibration["scores"], calibration["light"], SHORT_LIMITS)


def test_a_real_model_on_the_walkway_day_no_drift_on_normal_footage_and_the_light_ramp_caught(walkway_reference):
    from occ.benchmarks.drift import day_scores, watch_day
    from occ.evaluation.datasets.walkway_day import DayConfig, schedule_view_changes

    detector, reference = walkway_reference
    normal = day_scores(detector, DayConfig(**SHORT_DAY, seed=202, events_per_hour=30), SHORT_LIMITS.every)  # 3 events, held while in view
    assert normal["event"].any() and normal["light"].min() < 0.6 * normal["light"].max()  # events, and the dawn in it
    events, tests = watch_day(reference, normal, 10.0)
    assert events == [] and len(tests) > 20 and max(t["statistic"] for t in tests) < reference.threshold < 1
    config = DayConfig(**SHORT_DAY, seed=202, events_per_hour=30, view_changes=True, view_change_kinds=("light_ramp",))
    ramp = schedule_view_changes(config)[0]
    events, _ = watch_day(reference, day_scores(detector, config, SHORT_LIMITS.every), 10.0)
    assert events and events[0]["type"] == "drift" and ramp.start_frame < events[0]["frame"] <= ramp.start_frame + 6000


def test_the_service_reads_the_calibrated_reference_and_logs_drift(alocc_onnx, tiny_walkway, tmp_path):
    """A model whose manifest's drift reference saw only light far brighter than the walkway's (and
    samples every frame, 20 per test): every kept frame is lit as the reference never was, so the
    service's first test is drift, a ``drift`` line with the camera, and the gauges say so."""
    import shutil

    from occ.evaluation.datasets.video import write_video
    from occ.runtime.manifest import read_manifest, write_manifest
    from occ.runtime.service import CameraConfig, Service, ServiceConfig

    model = tmp_path / "m.onnx"
    shutil.copy(alocc_onnx, model)
    manifest = read_manifest(model)
    rng = np.random.default_rng(0)
    limits = DriftLimits(every=1, window=20, stride=5)
    manifest.drift = DriftReference.learn(rng.normal(size=400), rng.uniform(220, 250, 400), limits).to_view("bright footage")
    write_manifest(model, manifest)
    video = write_video(tmp_path / "walkway.avi", np.concatenate([tiny_walkway.train[0].frames] * 2))  # 60 frames
    events_log = tmp_path / "events.jsonl"
    config = ServiceConfig(model=str(model), cameras=[CameraConfig(str(video), name="gate")], events_log=str(events_log),
                           thresholds={"tau": 1e9})
    service = Service(config)
    assert service.run().exit_code == 0
    lines = [json.loads(line) for line in events_log.read_text().splitlines()]
    drift = [line for line in lines if line["type"] == "drift"]
    assert len(drift) == 1 and drift[0]["camera"] == "gate" and drift[0]["frame"] == 19 and drift[0]["statistic"] == 1.0
    assert drift[0]["threshold"] < 1 and service.loops[0].drift.reference.frames == 400
    assert service.loops[0].metrics.drift.drifting


def test_calibration_learns_the_reference_from_20_minutes_of_footage_or_more(alocc_manifest_dict):
    from occ.evaluation.calibration import FootageStatistics, drift_reference

    manifest = Manifest.from_dict(alocc_manifest_dict)
    scores, light = synthetic_day(101)
    statistics = FootageStatistics("alocc", {"frame_scores": scores}, [0])
    view = drift_reference(manifest, statistics, {"tau": 1.0}, list(light), 10.0, "day_calib")
    assert view is not None and view.data == "day_calib" and view.frames == len(scores) and len(view.score_quantiles) == 8
    assert view.spread == pytest.approx(DriftReference.learn(scores, light).spread, rel=1e-4)
    short = FootageStatistics("alocc", {"frame_scores": scores[:11990]}, [0])  # 1,199 kept frames, one under 4 windows
    assert drift_reference(manifest, short, {"tau": 1.0}, list(light[:11990]), 10.0, "short") is None
