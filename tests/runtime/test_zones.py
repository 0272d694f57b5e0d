"""Ignore and sensitivity zones: rasterised against hand-checked masks, applied by decide(), checked
in the service configuration, outlined on overlays, and end to end: an anomaly inside an ignore
zone never opens an event through `occ run --config`, the same anomaly outside it does."""
import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.runtime.events import render_overlay
from occ.runtime.events.overlay import ZONE_COLOURS
from occ.runtime.manifest import read_manifest
from occ.runtime.scoring.decide import alocc_patch_map, decide
from occ.runtime.scoring.zones import Zone, ZoneError, polygon_mask, rasterise
from occ.runtime.service import ConfigError, ServiceConfig

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
    path = tmp_path / "yard.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (144, 96))
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
])
def test_zone_problems_are_one_line(alocc_onnx, video, tmp_path, zones, problem):
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
    assert first == Zone("zone 1", ((0.0, 0.0), (10.0, 0.0), (0.0, 10.0)), ignore=True, factor=1.0)
    assert second.name == "bush" and not second.ignore and second.factor == 1.5


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
