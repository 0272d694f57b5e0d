"""Ignore and sensitivity zones: rasterised against hand-checked masks, applied by decide(), checked
in the service configuration, outlined on overlays, and end to end: an anomaly inside an ignore
zone never opens an event through `occ run --config`, the same anomaly outside it does."""
import json
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.runtime.events import EVENT_SCHEMA, SCHEMA_FILES, render_overlay
from occ.runtime.events.overlay import ZONE_COLOURS
from occ.runtime.manifest import read_manifest
from occ.runtime.scoring.decide import alocc_patch_map, decide
from occ.runtime.scoring.zones import Zone, ZoneError, polygon_mask, rasterise
from occ.runtime.service import ConfigError, ServiceConfig
from occ.runtime.service.profiles import ProfileConfig, ProfileSwitch, zones_in

runner = CliRunner()
SQUARE_40 = ((0, 0), (40, 0), (40, 40), (0, 40))


def test_a_triangle_covers_the_pixels_whose_centre_is_inside():
    # centres (x + 0.5, y + 0.5) inside x + y < 4: x + y < 3
    expected = np.array([[1, 1, 1, 0],
                         [1, 1, 0, 0],
                         [1, 0, 0, 0],
                         [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(polygon_mask([(0, 0), (4, 0), (0, 4)], 4, 4), expected)


def test_a_square_in_source_pixels_lands_on_the_network_grid():
    # a network pixel is 4 source pixels: centres 2, 6, …, 38 fall inside [0, 40): 10 rows and columns
    mask = polygon_mask(SQUARE_40, 12, 18, scale_x=4, scale_y=4)
    expected = np.zeros((12, 18), bool)
    expected[:10, :10] = True
    np.testing.assert_array_equal(mask, expected)


def test_alocc_patches_follow_a_zone_covering_more_than_half_of_them(alocc_onnx):
    manifest = read_manifest(alocc_onnx)  # 48×72 network, 16-px patches: 3 rows × 5 columns
    frame = (96, 144)  # source pixels are half a network pixel
    # [0, 40) source = [0, 20) network: patch 0 whole; patches 1 and 5 a quarter each
    maps = rasterise([Zone("corner", SQUARE_40)], frame, manifest)
    assert maps.patch_ignored.tolist() == [True] + [False] * 14
    assert maps.ignored.sum() == 20 * 20
    # [0, 48) × [0, 96) source = 24 × 48 network: patch column 1 exactly half covered, which is not more than half
    maps = rasterise([Zone("left", ((0, 0), (48, 0), (48, 96), (0, 96)), ignore=False, factor=2.0)], frame, manifest)
    assert not maps.ignored.any()
    assert maps.patch_factor.reshape(3, 5).tolist() == [[2.0, 1.0, 1.0, 1.0, 1.0]] * 3


def test_a_zone_outside_the_frame_is_one_line(alocc_onnx):
    with pytest.raises(ZoneError, match=r"^zone gate: point \[150, 10\] is outside the 144x96 frame$"):
        rasterise([Zone("gate", ((0, 0), (150, 10), (0, 50)))], (96, 144), read_manifest(alocc_onnx))


def test_avid_ignored_pixels_make_no_decision_and_no_box(avid_onnx):
    manifest = read_manifest(avid_onnx)  # 32×48 network
    maps = rasterise([Zone("corner", ((0, 0), (32, 0), (32, 32), (0, 32)))], (64, 96), manifest)  # network [0, 16)²
    mask = np.zeros((2, 32, 48), bool)
    mask[0, 2:6, 2:6] = True  # inside the zone only
    mask[1, 2:6, 2:6] = mask[1, 20:24, 30:34] = True  # inside and outside
    outputs = {"score": np.array([3.0, 3.0], np.float32), "mask": mask, "region_anomaly": np.zeros((2, 4, 6), np.float32)}
    inside, both = decide(outputs, manifest, maps)
    assert not inside.decision and inside.score < 1 and inside.boxes == [] and not inside.mask.any()
    assert both.decision and both.score == 3.0 and both.boxes == [[30, 20, 34, 24]]
    assert [r.decision for r in decide(outputs, manifest)] == [True, True]  # without zones: both fire


def test_alocc_sensitivity_divides_a_patch_score_by_its_factor(alocc_onnx):
    manifest = read_manifest(alocc_onnx)
    grid = np.zeros((1, 15), np.float32)
    grid[0, 0] = 15.0  # patch 0 (top left) stands out
    outputs = {name: grid.copy() for name in manifest.scoring.terms}
    peak = float(alocc_patch_map(outputs, manifest)[0, 0])
    manifest = manifest.with_thresholds({"tau": 0.75 * peak})  # over τ, under 2τ
    plain = decide(outputs, manifest)[0]
    zone = Zone("calm", ((0, 0), (32, 0), (32, 32), (0, 32)), ignore=False, factor=2.0)  # patch 0 at 32×32 source = 16×16 network
    calm = decide(outputs, manifest, rasterise([zone], (96, 144), manifest))[0]
    assert plain.decision and calm.score == pytest.approx(plain.score / 2) and not calm.decision and calm.boxes == []


# ---- the service configuration ---------------------------------------------------------------------
@pytest.fixture
def video(tiny_walkway, tmp_path):
    """Walkway frames at 144×96 with a 48×48 patch of noise (source pixels 16..64) in frames 10–24."""
    frames = np.stack([cv2.resize(f, (144, 96), interpolation=cv2.INTER_NEAREST) for f in tiny_walkway.train[0].frames])
    frames[10:25, 16:64, 16:64] = np.random.default_rng(0).integers(0, 256, (15, 48, 48))
    return write_avi(tmp_path / "yard.avi", frames)


def write_avi(path, frames):
    """Gray frames as an MJPG .avi at 10 frames/s."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def configuration(tmp_path, model, video, zones: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(f'[model]\npath = "{model}"\n[source]\nspec = "{video}"\nname = "yard"\n{zones}\n'
                    f'[events]\nlog = "events.jsonl"\n')
    return str(path)


@pytest.mark.parametrize("zones, problem", [
    ('[[source.zones]]\npoints = [[0, 0], [10, 10]]',
     "[source zones 1] points = [[0, 0], [10, 10]] must be at least 3 [x, y] corners with x, y >= 0 (source-frame pixels)"),
    ('[[source.zones]]\npionts = [[0, 0], [10, 0], [0, 10]]', "unknown key 'pionts' in [source zones 1]; did you mean 'points'?"),
    ('[[source.zones]]\npoints = [[0, 0], [10, 0], [0, 10]]\nthreshold_factor = 0', "[source zones 1] threshold_factor = 0.0 must be > 0"),
    ('[[source.zones]]\nname = "road"\npoints = [[0, 0], [200, 0], [0, 10]]', "camera yard: zone road: point [200, 0] is outside the 144x96 frame of"),
    ('[profiles]\nswitch = "moon"', "[profiles] switch = 'moon' must be one of schedule, brightness"),
    ('[profiles]\nday_from = "7am"', "[profiles] day_from = '7am' must be a local time HH:MM"),
    ('[profiles]\nswitch = "brightness"\nnight_below = 60.0\nday_above = 50.0', "[profiles] day_above must be >= night_below"),
    ('[profiles.evening]\ntau = 1.0', "unknown section [profiles.evening]"),
    ('[profiles.night]\ntua = 1.0', "unknown key 'tua' in [profiles.night]; did you mean 'tau'?"),
    ('[[source.zones]]\npoints = [[0, 0], [10, 0], [0, 10]]\nprofile = "evening"', "[source zones 1] profile = 'evening' must be one of day, night"),
    ('[[source.zones]]\npoints = [[0, 0], [10, 0], [0, 10]]\nprofile = "night"', "a zone names a profile, but there is no [profiles] table"),
])
def test_zone_and_profile_problems_are_one_line(alocc_onnx, video, tmp_path, zones, problem):
    path = configuration(tmp_path, alocc_onnx, video, zones)
    with pytest.raises(ConfigError) as refused:
        ServiceConfig.from_toml(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and problem in message, message
    result = runner.invoke(app, ["run", "--config", path])
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output


def test_zones_are_read_per_camera(alocc_onnx, video, tmp_path):
    config = ServiceConfig.from_toml(configuration(tmp_path, alocc_onnx, video,
                                                   '[[source.zones]]\npoints = [[0, 0], [10, 0], [0, 10]]\n'
                                                   '[[source.zones]]\nname = "bush"\npoints = [[5, 5], [9, 5], [5, 9]]\nthreshold_factor = 1.5'))
    first, second = config.cameras[0].zones
    assert first == Zone("1", ((0.0, 0.0), (10.0, 0.0), (0.0, 10.0)), ignore=True, factor=1.0)
    assert second.name == "bush" and not second.ignore and second.factor == 1.5


def test_each_camera_has_its_own_zones_and_frame(alocc_onnx, video, tmp_path):
    path = tmp_path / "two.toml"
    camera = '[[cameras]]\nspec = "{}"\nname = "{}"\n[[cameras.zones]]\npoints = [[0, 0], [{}, 0], [0, 10]]\n'
    path.write_text(f'[model]\npath = "{alocc_onnx}"\n' + camera.format(video, "one", 144) + camera.format(video, "two", 145))
    with pytest.raises(ConfigError, match=r"camera two: zone 1: point \[145, 0\] is outside the 144x96 frame of "):
        ServiceConfig.from_toml(path)


# ---- end to end ------------------------------------------------------------------------------------
def events_of(tmp_path, model, video, zones: str) -> list[dict]:
    result = runner.invoke(app, ["run", "--config", configuration(tmp_path, model, video, zones)])
    assert result.exit_code == 0, result.output
    log = tmp_path / "events.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return [line for line in lines if line["type"] == "opened"]


def test_an_anomaly_inside_an_ignore_zone_never_opens_an_event(alocc_onnx, video, tmp_path):
    covering = '[[source.zones]]\nname = "tree"\npoints = [[0, 0], [72, 0], [72, 72], [0, 72]]'
    elsewhere = '[[source.zones]]\nname = "sky"\npoints = [[80, 0], [144, 0], [144, 96], [80, 96]]'
    assert events_of(tmp_path, alocc_onnx, video, "")  # the anomaly is seen without zones
    assert events_of(tmp_path, alocc_onnx, video, elsewhere)  # and with a zone that does not cover it
    assert events_of(tmp_path, alocc_onnx, video, covering) == []


def test_overlays_outline_the_zones(alocc_onnx, tmp_path):
    manifest = read_manifest(alocc_onnx)
    frame = np.zeros((96, 144), np.uint8)
    outputs = {name: np.zeros((1, 15), np.float32) for name in manifest.scoring.terms}
    result = decide(outputs, manifest)[0]
    zones = [Zone("tree", ((10, 10), (60, 10), (60, 60), (10, 60))), Zone("bush", ((80, 20), (120, 20), (120, 80)), ignore=False, factor=2)]
    image = render_overlay(frame, result, manifest, zones)
    assert tuple(image[35, 10]) == ZONE_COLOURS[True] and tuple(image[20, 100]) == ZONE_COLOURS[False]
    assert tuple(image[35, 35]) == (0, 0, 0)  # inside is left unpainted


# ---- day and night profiles ------------------------------------------------------------------------
def test_the_schedule_follows_the_local_clock():
    def at(hour: int, minute: int) -> float:
        return time.mktime((2026, 12, 6, hour, minute, 0, 0, 0, -1))

    day_shift = ProfileSwitch(ProfileConfig(day_from="07:00", night_from="19:00"))
    assert [day_shift.scheduled(at(*t)) for t in ((6, 59), (7, 0), (18, 59), (19, 0), (0, 0))] == ["night", "day", "day", "night", "night"]
    late = ProfileSwitch(ProfileConfig(day_from="20:00", night_from="06:30"))  # night from 06:30 to 20:00
    assert [late.scheduled(at(*t)) for t in ((6, 29), (6, 30), (19, 59), (20, 0))] == ["day", "night", "night", "day"]


def test_brightness_switches_with_hysteresis():
    switch = ProfileSwitch(ProfileConfig(switch="brightness", night_below=40, day_above=50))
    levels = [100, 45, 39, 45, 50, 51, 45]  # between 40 and 50 the profile stays as it was
    assert [switch.update(np.full((8, 8), level, np.uint8)) for level in levels] == \
        ["day", "day", "night", "night", "night", "day", "day"]


def test_zones_follow_their_profile():
    always, night = Zone("a", SQUARE_40), Zone("b", SQUARE_40, profile="night")
    assert zones_in([always, night], "night") == [always, night]
    assert zones_in([always, night], "day") == zones_in([always, night], None) == [always]


def test_a_dark_scene_switches_to_the_night_profile_and_events_record_the_profile(alocc_onnx, tiny_walkway, tmp_path):
    """60 frames: the first 30 dark (night), the last 30 lit (day), the same anomaly in both halves;
    at night τ is out of reach, so only the day's anomaly opens an event, and it says "day"."""
    frames = np.concatenate([np.asarray(clip.frames) for clip in tiny_walkway.train[:2]]).astype(np.float32)
    frames[:30] *= 0.25  # mean gray level about 32: under night_below
    frames = np.stack([cv2.resize(f, (144, 96), interpolation=cv2.INTER_NEAREST) for f in frames.astype(np.uint8)])
    noise = np.random.default_rng(0).integers(0, 256, (15, 48, 48))
    frames[10:25, 16:64, 16:64] = frames[40:55, 16:64, 16:64] = noise
    video = write_avi(tmp_path / "dusk.avi", frames)
    # the scene guard off: a fourfold light jump across the whole view is what it holds alarms for
    path = configuration(tmp_path, alocc_onnx, video, '[guard]\nenabled = false\n'
                                                      '[profiles]\nswitch = "brightness"\nnight_below = 60.0\nday_above = 80.0\n'
                                                      '[profiles.night]\ntau = 1e9')
    result = runner.invoke(app, ["run", "--config", path])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    jsonschema = pytest.importorskip("jsonschema")
    schema = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILES[EVENT_SCHEMA].read_text()))
    for line in lines:
        schema.validate(line)
    opened = [line for line in lines if line["type"] == "opened"]
    assert opened and all(line["profile"] == "day" and line["start_frame"] >= 30 for line in opened)
    assert opened[0]["thresholds"]["tau"] == read_manifest(alocc_onnx).threshold("tau")  # the day runs with the model's τ
