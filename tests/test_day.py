"""A day on the walkway (occ data generate --day) and its benchmark (occ-bench day), at a tiny size."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.benchmarks.day import day_report, run_day, run_on_day, service_tracker
from occ.benchmarks.day_rules import every_rule, main as day_rules_main
from occ.cli.bench import app as bench_app
from occ.cli.data import app as data_app
from occ.evaluation.calibration import footage, write_calibrated
from occ.evaluation.datasets.common import DatasetError
from occ.evaluation.datasets.walkway_day import (CREEP_PER_MINUTE, Day, DayConfig, DayEvent, generate_day, light_level, open_day,
                                                 schedule_events, sensor_noise, walkers_in_view, write_day)
from occ.runtime.detector import open_detector
from occ.runtime.manifest import EpisodeRule, read_manifest

TINY = dict(hours=0.01, height=48, width=72, segment_minutes=0.25)  # 360 frames, 36 s, in 3 segments


def test_profiles_by_hand():
    assert walkers_in_view(3.0) == pytest.approx(2.0)  # night
    assert walkers_in_view(8.0) == pytest.approx(20.0)  # morning rush peak
    assert walkers_in_view(17.5) == pytest.approx(20.0)  # evening rush peak
    assert walkers_in_view(13.0) == pytest.approx(2 + 18 * 0.22, abs=1e-3)  # daytime, rushes far away
    assert light_level(0.0) == pytest.approx(0.35) and light_level(12.0) == pytest.approx(1.0)
    assert light_level(6.0) == pytest.approx(0.35 + 0.65 * 0.5)  # halfway up the dawn ramp
    assert sensor_noise(0.0, 2.0) == pytest.approx(6.0) and sensor_noise(12.0, 2.0) == pytest.approx(2.0)


def test_the_clock_spans_the_day_and_the_start_moves_it():
    config = DayConfig(hours=1.0, start="06:30")
    assert config.clock_hour(0) == pytest.approx(6.5)
    assert config.clock_hour(config.frames // 2) == pytest.approx(18.5)  # half the footage, half the clock
    assert DayConfig(hours=24.0).clock_hour(36000) == pytest.approx(1.0)  # a 24-hour day runs in real time


def test_same_seed_same_day_and_exact_masks():
    config = DayConfig(**TINY, events_per_hour=80, seed=3)
    first, again = list(generate_day(config)), list(generate_day(config))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))
    other = list(generate_day(DayConfig(**TINY, events_per_hour=80, seed=4)))
    assert not all(np.array_equal(a.image, b.image) for a, b in zip(first, other))
    (start, kind), = schedule_events(config)
    with_event = [f for f in first if f.events]
    assert with_event and with_event[0].index >= start and kind in ("car", "fast", "against_flow")
    # the exact mask: the mover is painted there, so those pixels stand out from the background
    frame = with_event[len(with_event) // 2]
    (number, mask), = frame.events
    assert number == 0 and mask.any() and not mask.all()


def test_auto_gain_brightens_the_night_to_the_day_and_its_noise_with_it():
    config = DayConfig(**TINY, events_per_hour=0, seed=5)  # 360 frames over the whole clock: night, day and night
    plain, gained = list(generate_day(config)), list(generate_day(DayConfig(**TINY, events_per_hour=0, seed=5, auto_gain=True)))
    night = next(i for i, f in enumerate(plain) if f.light == pytest.approx(0.35))
    day = next(i for i, f in enumerate(plain) if f.light == pytest.approx(1.0))
    # by hand: the same frame times 1 / 0.35, rounded and clipped; daylight's frames are untouched
    expected = np.clip(np.round(plain[night].image.astype(np.float32) * np.float32(1 / np.float32(0.35))), 0, 255)
    assert np.array_equal(gained[night].image, expected.astype(np.uint8))
    assert np.array_equal(gained[day].image, plain[day].image)
    assert plain[night].image.mean() < 0.5 * plain[day].image.mean()
    assert gained[night].image.mean() == pytest.approx(plain[day].image.mean(), rel=0.15)
    # the sensor noise is brightened too: frame-to-frame differences of the night's frames grow by 1 / 0.35
    noise = [np.std(np.diff([frames[i].image.astype(float) for i in (night, night + 1)], axis=0)) for frames in (plain, gained)]
    assert noise[1] == pytest.approx(noise[0] / 0.35, rel=0.1)


def test_write_read_back_is_lossless(tmp_path):
    config = DayConfig(**TINY, events_per_hour=80, seed=1)
    written = write_day(tmp_path / "day", config)
    assert written["segments"] == 3 and written["frames"] == 360
    day = open_day(tmp_path / "day")
    generated = list(generate_day(config))
    read = list(day.frames())
    assert [i for i, _ in read] == list(range(360))
    assert all(np.array_equal(image, frame.image) for (_, image), frame in zip(read, generated))
    masks = day.masks()
    for frame in generated:
        stored = masks.at(frame.index)
        assert [n for n, _ in stored] == [n for n, _ in frame.events]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(stored, frame.events))
    assert day.labels.tolist() == [bool(f.events) for f in generated]
    (event,) = day.events
    assert day.labels[event.start_frame] and not day.labels[event.start_frame - 1] and day.labels[event.end_frame]
    # normal stretches leave out every event frame, and calibration reads them as clips
    runs = day.normal_runs()
    assert sum(len(r) for r in runs) == int((~day.labels).sum())
    clips = footage(str(tmp_path / "day"), minutes=1).clips
    assert sum(len(list(c)) for c in clips) == int((~day.labels).sum())
    assert list(day.frames(200, 203))[0][0] == 200


def test_view_changes_at_known_times():
    config = DayConfig(hours=0.05, height=48, width=72, events_per_hour=0, view_changes=True)  # 1800 frames, 3 minutes
    frames = list(generate_day(config))
    labels = [f.view_change for f in frames]
    assert labels[int(0.12 * 1800)] == "shake" and labels[int(0.27 * 1800)] == "cover" and labels[int(0.42 * 1800)] == "light_jump"
    assert labels[0] == "" and labels[-1] == "bump"
    cover = frames[int(0.27 * 1800) + 5].image
    assert cover.mean() < 30 and frames[0].image.mean() > 30
    creep_start = int(0.60 * 1800)
    creep = [f for f in frames if f.view_change == "creep"]
    minutes = (creep[-1].index - creep_start) / 10 / 60
    assert creep[-1].offset[0] == pytest.approx(CREEP_PER_MINUTE * 72 * minutes)
    assert frames[-1].offset[0] == pytest.approx(creep[-1].offset[0] + 0.08 * 72)  # the bump adds to where the creep left the view


def test_day_report_by_hand(tmp_path):
    # 20 frames at 10 fps over two clock hours (10 frames each); one event on frames 12-15.
    table = {"clock_hour": np.r_[np.full(10, 7.5), np.full(10, 8.5)], "walkers": np.r_[np.full(10, 2), np.full(10, 20)],
             "light": np.ones(20), "noise": np.ones(20), "event": np.where((np.arange(20) >= 12) & (np.arange(20) <= 15), 0, -1),
             "view_change": np.array([""] * 20)}
    day = Day(tmp_path, DayConfig(hours=20 / 36000), [DayEvent("car", 12, 15, event=0)], [], [], table)
    decisions = np.zeros(20, bool)
    # a false alarm opened at frame 4 (hour 07), and the event flagged from frame 14 (2 frames late)
    episodes = [{"start_frame": 2, "open_frame": 4, "end_frame": 5}, {"start_frame": 12, "open_frame": 14, "end_frame": 16}]
    report = day_report(day, decisions, episodes)
    seven, eight = report["per_clock_hour"]
    assert (seven["clock_hour"], seven["alarms"], eight["alarms"]) == ("07:00", 1, 0)
    assert seven["normal_hours"] == pytest.approx(10 / 36000) and eight["normal_hours"] == pytest.approx(6 / 36000)
    assert seven["per_hour"] == pytest.approx(3600.0)
    assert report["false_alarms"]["alarms"] == 1 and report["false_alarms"]["normal_hours"] == pytest.approx(16 / 36000)
    assert report["events"][0]["delay_frames"] == 2 and report["flagged_within_1s"] == 1.0
    late = day_report(day, decisions, [{"start_frame": 12, "open_frame": 15, "end_frame": 15}])
    assert late["events"][0]["delay_frames"] == 3
    missed = day_report(day, decisions, [{"start_frame": 2, "open_frame": 4, "end_frame": 5}])
    assert missed["events"][0]["delay_frames"] is None and missed["flagged_within_1s"] == 0.0
    assert "normal_score_over_threshold" not in seven and "peak_over_threshold" not in report["events"][0]
    # scores 0..19, threshold 2: hour 07 holds frames 0-9 (all normal), hour 08 the normal 10, 11, 16-19
    scored = day_report(day, decisions, episodes, scores=np.arange(20.0), threshold=2.0)
    seven, eight = scored["per_clock_hour"]
    assert seven["normal_score_over_threshold"] == pytest.approx({"p50": 2.25, "p99": 4.455, "max": 4.5})
    assert eight["normal_score_over_threshold"]["max"] == 9.5 and eight["normal_score_over_threshold"]["p50"] == pytest.approx(8.25)
    # the event (frames 12-15) is shorter than its first second: both peaks are frame 15's
    assert scored["events"][0]["peak_over_threshold"] == 7.5 and scored["events"][0]["first_second_peak_over_threshold"] == 7.5


def test_cli_generates_a_day_and_refuses_bad_input(tmp_path):
    runner = CliRunner()
    out = tmp_path / "day"
    result = runner.invoke(data_app, ["generate", str(out), "--day", "0.005", "--height", "48", "--width", "72",
                                      "--events-per-hour", "80", "--start", "07:15", "--json", "-", "--quiet"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    assert written["frames"] == 180 and (out / "segment_000.avi").is_file() and (out / "frames.csv").is_file()
    assert open_day(out).table["clock_hour"][0] == pytest.approx(7.25) and not open_day(out).config.auto_gain
    gained = runner.invoke(data_app, ["generate", str(tmp_path / "gained"), "--day", "0.005", "--height", "48", "--width", "72",
                                      "--auto-gain", "--quiet"])
    assert gained.exit_code == 0, gained.output
    assert open_day(tmp_path / "gained").config.auto_gain
    bad = runner.invoke(data_app, ["generate", str(tmp_path / "x"), "--day", "0.005", "--start", "7am"])
    assert bad.exit_code == 2 and "06:30" in bad.output and "Traceback" not in bad.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    refused = runner.invoke(data_app, ["generate", str(tmp_path / "mine"), "--day", "0.005"])
    assert refused.exit_code == 2 and "refusing to replace" in refused.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    root = tmp_path_factory.mktemp("days")
    write_day(root / "calibration", DayConfig(**TINY, events_per_hour=0, seed=11))
    write_day(root / "test", DayConfig(**TINY, events_per_hour=80, seed=12))
    return root / "calibration", root / "test"


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_bench_day_on_a_tiny_day(method, two_days, tmp_path, request):
    model = request.getfixturevalue(f"{method}_onnx")
    calibration, test = two_days
    before = Path(model).read_bytes()
    result = run_day(model, calibration, test, tmp_path / "work", false_alarm_rate=0.05)
    assert Path(model).read_bytes() == before  # the user's model keeps its thresholds
    # without an alarm budget the model keeps its own episode rule
    assert result["method"] == method and result["episode_rule"]["described"] == "opens at 4 firing frames in a row, closes after 20 quiet frames"
    assert result["calibration"]["frames"] == 360  # the calibration day has no event: every frame is normal
    hours = result["per_clock_hour"]
    assert [row["clock_hour"] for row in hours] == [f"{h:02d}:00" for h in range(24)]  # a tiny day still spans the clock
    assert sum(row["alarms"] for row in hours) == result["false_alarms"]["alarms"]
    assert sum(row["normal_hours"] for row in hours) == pytest.approx(result["false_alarms"]["normal_hours"])
    assert len(result["events"]) == 1 and result["flagged_within_1s"] in (0.0, 1.0)
    for row in hours:
        if row["per_hour"] is not None:
            assert row["per_hour_low"] <= row["per_hour"] <= row["per_hour_high"]


def test_bench_day_cli_writes_json_and_refuses_a_clip_folder(two_days, alocc_onnx, tmp_path):
    calibration, test = two_days
    runner = CliRunner()
    out = tmp_path / "day.json"
    result = runner.invoke(bench_app, ["day", str(alocc_onnx), "--calibration", str(calibration), "--test", str(test),
                                       "--out", str(tmp_path / "work"), "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert {"date", "machine", "commit", "command", "per_clock_hour", "false_alarms", "flagged_within_1s"} <= set(data)
    bad = runner.invoke(bench_app, ["day", str(alocc_onnx), "--calibration", str(tmp_path), "--test", str(test), "--quiet"])
    assert bad.exit_code == 2 and "not a walkway day" in bad.output


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_every_rule_replays_the_chosen_rule_as_the_stream_runs_it(method, two_days, tmp_path, request, capsys):
    model = request.getfixturevalue(f"{method}_onnx")
    calibration, test = two_days
    budget = 5000.0  # about 2 alarms in the tiny calibration day's 36 s
    streamed = run_day(model, calibration, test, tmp_path / "work", alarms_per_day=budget)
    out = tmp_path / "rules.json"
    assert day_rules_main([str(model), "--calibration", str(calibration), "--test", str(test), "--alarms-per-day", str(budget), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    chosen = [row for row in result["rules"] if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["described"] == streamed["episode_rule"]["described"]
    # scores replayed from the test day's statistics give what the detector's stream gave, episode for episode
    assert chosen[0]["thresholds"] == pytest.approx(streamed["calibration"]["thresholds"])
    assert chosen[0]["false_alarms"] == streamed["false_alarms"]
    assert chosen[0]["delays_frames"] == [event["delay_frames"] for event in streamed["events"]]
    assert len(result["rules"]) > 1 and "(chosen)" in capsys.readouterr().out
    assert day_rules_main([str(model), "--calibration", str(tmp_path), "--test", str(test)]) == 2
    assert capsys.readouterr().err.strip().endswith("not a walkway day (write one with `occ data generate --day HOURS`)")


def test_every_rule_replays_any_rule_as_a_detector_streams_it(two_days, avid_onnx, tmp_path):
    """A rule that flags the tiny day's event, written into a model, streamed through the detector:
    the episodes the replay counted."""
    calibration, test = two_days
    result = every_rule(avid_onnx, calibration, test, 50000.0)
    flagging = [row for row in result["rules"] if any(d is not None for d in row.get("delays_frames", []))]
    assert flagging, "no candidate flags the tiny day's event: the replay is not tested"
    manifest = read_manifest(avid_onnx)
    for row in flagging[:2]:
        for name, value in row["thresholds"].items():
            manifest.set_threshold(name, dataclasses.replace(manifest.thresholds[name], value=value))
        manifest.episodes = EpisodeRule(**row["rule"])
        model = write_calibrated(Path(avid_onnx), manifest, tmp_path / "rule.onnx")
        detector = open_detector(str(model))
        try:
            day = open_day(test)
            _, decisions, episodes = run_on_day(detector, day, service_tracker(manifest))
        finally:
            detector.close()
        streamed = day_report(day, decisions, episodes)
        assert [e["delay_frames"] for e in streamed["events"]] == row["delays_frames"]
        assert streamed["false_alarms"] == row["false_alarms"]


def test_open_day_refuses_other_folders(tmp_path):
    with pytest.raises(DatasetError, match="not a walkway day"):
        open_day(tmp_path)


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_batched_stream_gives_what_process_gives_frame_by_frame(method, request, tiny_walkway):
    from occ.benchmarks.day import stream_results

    model = request.getfixturevalue(f"{method}_onnx")
    frames = np.concatenate([tiny_walkway.test[0].frames, tiny_walkway.test[1].frames])[:45]  # more than one batch
    detector = open_detector(str(model))
    try:
        batched = list(stream_results(detector, iter(frames), fps=10.0))
        detector.reset()
        one_by_one = [detector.process(frame, timestamp=i / 10) for i, frame in enumerate(frames)]
    finally:
        detector.close()
    assert [r.index for r in batched] == list(range(45))
    np.testing.assert_allclose([r.score for r in batched], [r.score for r in one_by_one], rtol=1e-5, atol=1e-6)
    assert [r.decision for r in batched] == [r.decision for r in one_by_one]
    assert [r.boxes for r in batched] == [r.boxes for r in one_by_one]


def test_the_light_ramp_grows_to_its_gain_and_stays():
    from occ.evaluation.datasets.walkway_day import (
        LIGHT_RAMP_GAIN,
        schedule_view_changes,
    )

    config = DayConfig(hours=0.05, height=48, width=72, events_per_hour=0, view_changes=True, view_change_kinds=("light_ramp",))
    ramp, = schedule_view_changes(config)  # only the kind asked for
    assert ramp.kind == "light_ramp" and ramp.start_frame == int(0.40 * 1800) and ramp.start_clock == "09:36:00"
    frames = list(generate_day(config))
    gains = [f.light / float(light_level(f.clock_hour)) for f in frames]
    assert gains[ramp.start_frame - 1] == pytest.approx(1.0) and gains[ramp.end_frame] == pytest.approx(LIGHT_RAMP_GAIN)
    assert 1.0 < gains[(ramp.start_frame + ramp.end_frame) // 2] < LIGHT_RAMP_GAIN and gains[-1] == pytest.approx(LIGHT_RAMP_GAIN)
    assert frames[-1].view_change == "" and frames[ramp.start_frame].view_change == "light_ramp"
    with pytest.raises(DatasetError, match="unknown view change"):
        DayConfig(view_change_kinds=("fog",)).validate()
