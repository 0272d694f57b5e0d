"""The scene guard on real transformations of walkway frames: a covered lens, a shifted view, lost
focus, a gain, a frozen and a black stream are changes of the whole view; a car on the walkway is
not. And the service's hook: a ``scene_changed`` event, held anomaly events, the metrics."""
import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.cli.bench import app as bench_app
from occ.evaluation.calibration import calibrate_model
from occ.evaluation.datasets.video import write_video
from occ.evaluation.datasets.view_changes import black, blurred, covered, crept, frozen, gained, shifted
from occ.evaluation.datasets.walkway import WalkwayConfig, generate_walkway
from occ.evaluation.datasets.walkway_day import DayConfig, generate_day
from occ.runtime.events import ServiceMetrics
from occ.runtime.manifest import Manifest, ManifestError, read_manifest
from occ.runtime.preprocess.reference import to_gray
from occ.runtime.scoring.scene_guard import (FineAlignment, GuardLimits, ProfileMatch, SceneGuard, SceneReference, _median,
                                           contrast, guard_frame)
from occ.runtime.service import CameraConfig, Service, ServiceConfig

from service_utils import parse_metrics

FPS = 10
CAR_SEED = 8  # its one event is a car, entering at frame 30


def walkway(frames: int, seed: int = CAR_SEED, events_per_hour: float = 0.0):
    """Noon on the walkway (the clock barely moves): ``frames`` DayFrames, 60×90."""
    config = DayConfig(hours=frames / 36000, clock_hours=0.01, start="12:00", height=60, width=90, seed=seed,
                       events_per_hour=events_per_hour)
    return list(generate_day(config))


@pytest.fixture(scope="module")
def noon() -> np.ndarray:
    return np.stack([f.image for f in walkway(400)])


@pytest.fixture(scope="module")
def reference(noon) -> SceneReference:
    """The calibration footage's view: every 4th of the first 200 frames."""
    return SceneReference.from_frames(noon[:200:4])


def first_changed(guard: SceneGuard, frames) -> tuple[int | None, str]:
    """Frame (counted from the first given) where the guard first says changed, and its reason."""
    for i, frame in enumerate(frames):
        state = guard.update(frame)
        if state.changed:
            return i, state.reason
    return None, ""


def guard_after_normal(reference: SceneReference, noon: np.ndarray) -> SceneGuard:
    """A guard that has watched 10 s of the normal view without firing."""
    guard = SceneGuard(reference)
    assert first_changed(guard, noon[200:300]) == (None, "")
    return guard


@pytest.mark.parametrize("change, reason", [
    (covered, "covered"),
    (lambda f: shifted(f, 0.06 * f.shape[2], 0.03 * f.shape[1]), "moved"),
    (lambda f: blurred(f, 2.0), "blurred"),
    (lambda f: gained(f, 1.6), "lighting"),
    (lambda f: gained(f, 0.6), "lighting"),
    (frozen, "frozen"),
    (black, "covered"),
])
def test_a_change_of_the_whole_view_is_reported_within_2_s_with_its_reason(noon, reference, change, reason):
    guard = guard_after_normal(reference, noon)
    at, given = first_changed(guard, change(noon[300:400]))
    assert at is not None and at < 2 * FPS and given == reason


def test_a_slow_creep_is_reported_within_2_s_against_the_fixed_reference(noon, reference):
    """2 % of the width per minute is 0.06 pixels after 2 s at 90 pixels wide: the coarse profiles
    see it after 30 s, the sub-pixel alignment against the reference within 2 s."""
    at, reason = first_changed(guard_after_normal(reference, noon), crept(noon[300:400], 0.02))
    assert at is not None and at <= 2 * FPS and reason == "moved"
    coarse_only = SceneGuard(reference, GuardLimits(fine_moved=1.0))
    first_changed(coarse_only, noon[200:300])
    assert first_changed(coarse_only, crept(noon[300:400], 0.02)) == (None, "")


def jittered(frames: np.ndarray, pixels: float, seed: int) -> np.ndarray:
    """Each frame shifted by its own random sub-pixel offset, up to ``pixels`` along each axis, as a
    real camera's frames wander about its view."""
    rng = np.random.default_rng(seed)
    out = []
    for frame in frames:
        dx, dy = rng.uniform(-pixels, pixels, 2)
        out.append(cv2.warpAffine(frame, np.float32([[1, 0, dx], [0, 1, dy]]), frame.shape[1::-1], flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def test_a_reference_learnt_on_wandering_footage_takes_the_wander_for_normal_and_a_creep_beyond_it_for_moved(noon):
    """Frames jittered by up to 0.12 pixels (0.13 % of the 90-pixel width, over ``fine_moved``'s 0.05 %
    and tens of standard errors): the reference learns the wander, so more of the same footage fires
    nothing, where a reference without it (one stored before it was learnt) holds the view moved;
    a creep of 10 % of the width per minute (0.15 pixels a second) is still reported within 3 s."""
    reference = SceneReference.from_frames(jittered(noon[:200:2], 0.12, seed=1))
    wander_x, wander_y = reference.fine_wander
    assert 0.0005 < wander_x < 0.005 and 0.0005 < wander_y < 0.005
    assert SceneReference.from_view(reference.to_view()).fine_wander == pytest.approx(reference.fine_wander, abs=1e-6)
    wandering = jittered(noon[200:400], 0.12, seed=2)
    assert first_changed(SceneGuard(reference), wandering) == (None, "")
    unlearnt = SceneReference(reference.frame, reference.contrast_low, reference.frames)
    assert first_changed(SceneGuard(unlearnt), wandering)[1] == "moved"
    guard = SceneGuard(reference)
    assert first_changed(guard, wandering[:100]) == (None, "")
    at, reason = first_changed(guard, crept(wandering[100:], 0.1))
    assert at is not None and at <= 3 * FPS and reason == "moved"


def test_a_manifest_of_schema_1_4_loads_its_view_without_the_wander(alocc_onnx, reference):
    """A scene stored before the wander was learnt: the guard decides on ``fine_moved`` alone, as then."""
    data = read_manifest(alocc_onnx).to_dict()
    view = dataclasses.asdict(reference.to_view())
    data["schema_version"], data["scene"] = "1.4", {k: v for k, v in view.items() if k != "fine_wander"}
    assert SceneReference.from_view(Manifest.from_dict(data).scene).fine_wander is None
    data["scene"] = {**view, "fine_wander": [0.001]}
    with pytest.raises(ManifestError, match="scene.fine_wander must be 2 numbers >= 0 and < 1"):
        Manifest.from_dict(data)


def test_the_change_ends_when_the_view_comes_back(noon, reference):
    guard = guard_after_normal(reference, noon)
    states = [guard.update(f) for f in np.concatenate([gained(noon[300:330], 1.6), noon[330:400]])]
    started = [i for i, s in enumerate(states) if s.started]
    ended = [i for i, s in enumerate(states) if s.ended]
    assert len(started) == 1 and started[0] < 5 and states[started[0]].reason == "lighting"
    # quiet from frame 30 on: over after clear_s (2 s) of it, the reason kept on the ending frame
    assert len(ended) == 1 and 30 + 2 * FPS <= ended[0] <= 30 + 3 * FPS and states[ended[0]].reason == "lighting"
    assert not states[-1].changed and states[-1].reason == ""


def test_a_car_on_the_walkway_is_a_local_anomaly_not_a_change_of_view(reference):
    day = walkway(300, events_per_hour=60)
    car = [f.index for f in day if f.events]
    assert len(car) > 20  # the car is in view for seconds
    guard = SceneGuard(reference)
    states = [guard.update(f.image) for f in day]
    assert not any(s.changed for s in states)
    assert sum(s.suspect for s in states) <= 2  # the car itself raises no reason


def test_without_a_reference_the_guard_learns_the_view_from_the_stream_start(noon):
    guard = SceneGuard(limits=GuardLimits(reference_s=10.0))
    assert first_changed(guard, noon[:200]) == (None, "")
    assert guard.reference is not None and guard.reference.fine_wander is not None  # learnt with the view
    # downwards: the walkway runs across the frame, its columns' profile is too flat to tell a sideways shift
    at, reason = first_changed(guard, shifted(noon[200:300], 0, 0.05 * noon.shape[1]))
    assert at is not None and at < 2 * FPS and reason == "moved"


def test_limits_move_the_guard(noon, reference):
    """A gain of 1.2 is within the default limit (1.3) and beyond a limit of 1.1."""
    assert first_changed(guard_after_normal(reference, noon), gained(noon[300:400], 1.2)) == (None, "")
    strict = SceneGuard(reference, GuardLimits(lighting=1.1))
    first_changed(strict, noon[200:300])
    assert first_changed(strict, gained(noon[300:400], 1.2))[1] == "lighting"


def test_avids_share_over_alpha_is_evidence_when_given(noon, reference):
    guard = guard_after_normal(reference, noon)
    states = [guard.update(f, alpha_share=0.8) for f in noon[300:320]]
    assert states[-1].changed and states[-1].reason == "alpha"


def test_the_service_holds_anomaly_events_while_the_view_is_moved(alocc_onnx, tiny_walkway, tmp_path):
    """Every frame anomalous (tau = -1e9): an anomaly event is open when the camera is bumped; it closes,
    a scene_changed event says why, and no anomaly event opens while the view stays moved."""
    normal = np.concatenate([tiny_walkway.train[0].frames] * 22)  # 660 frames: the guard learns the view in the first 60 s
    bumped = shifted(normal[:150], 0.08 * normal.shape[2], 0.04 * normal.shape[1])
    video = write_video(tmp_path / "bump.avi", np.concatenate([normal, bumped]))
    events_log = tmp_path / "events.jsonl"
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(str(video), name="gate")], events_log=str(events_log),
                           thresholds={"tau": -1e9}, open_after=2, close_after=3)
    service = Service(config)
    assert service.run().exit_code == 0
    lines = [json.loads(line) for line in events_log.read_text().splitlines()]
    scene = [line for line in lines if line["type"] == "scene_changed"]
    assert len(scene) == 1 and scene[0]["reason"] == "moved" and scene[0]["camera"] == "gate"
    assert len(normal) <= scene[0]["frame"] < len(normal) + 2 * FPS and scene[0]["needs"] == "occ calibrate"
    opened = [line for line in lines if line["type"] == "opened"]
    assert opened and all(line["start_frame"] < len(normal) for line in opened)
    assert service.loops[0].metrics.scene_reason == "moved"


def test_a_short_clip_raises_no_scene_change(alocc_onnx, tmp_path):
    """30 s of the walkway with someone doing something unusual, as a video file: shorter than the
    60 s the guard learns its reference from. Its sharpness wanders from 1.2 to 0.5 in the clip; a
    baseline seeded by the first frame alone called that ``blurred`` at 24 s."""
    staged = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=2, test_clips=1, frames_per_clip=300, seed=11)).test[0]
    video = write_video(tmp_path / "staged.avi", staged.frames, fps=FPS)
    events_log = tmp_path / "events.jsonl"
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(str(video), name="gate")], events_log=str(events_log),
                           thresholds={"tau": 1e9})
    service = Service(config)
    assert service.run().exit_code == 0 and service.loops[0].summary.frames == 300
    lines = [json.loads(line) for line in events_log.read_text().splitlines()] if events_log.exists() else []
    assert not [line for line in lines if line["type"].startswith("scene")]
    assert service.loops[0].guard.reference is None  # still learning: the clip is shorter than reference_s


def scene_lines(config: ServiceConfig) -> list[dict]:
    """Run the service; its scene_changed and scene_restored lines."""
    assert Service(config).run().exit_code == 0
    path = Path(config.events_log)
    return [line for line in map(json.loads, path.read_text().splitlines() if path.exists() else []) if line["type"].startswith("scene")]


def test_calibration_stores_the_view_and_a_fresh_start_compares_with_it(alocc_onnx, tiny_walkway, tmp_path):
    """`occ calibrate` learns the guard's reference from its footage into the manifest; a service
    started on a camera that was bumped before it started reports it within 2 s, where a guard
    without it takes the bumped view for the normal one."""
    model = tmp_path / "alocc.onnx"
    shutil.copy(alocc_onnx, model)
    normal = np.concatenate([tiny_walkway.train[0].frames] * 4)  # 12 s of the view
    result = calibrate_model(model, str(write_video(tmp_path / "normal.avi", normal, fps=FPS)), false_alarm_rate=0.05, force=True)
    scene = read_manifest(model).scene
    # the footage's calibration part (its last fifth): the frames the thresholds came from
    assert (scene.width, scene.height, scene.frames) == (72, 48, result.frames) and result.frames >= 20
    assert scene.data and len(scene.png) < 8000
    shown = CliRunner().invoke(app, ["inspect", str(model)])
    assert shown.exit_code == 0 and f"72x48, mean of {result.frames} frames of" in " ".join(shown.output.split())
    assert scene.fine_wander is not None and "sub-pixel wander" in shown.output, shown.output
    bumped = shifted(tiny_walkway.train[1].frames, 0.08 * normal.shape[2], 0.04 * normal.shape[1])
    video = write_video(tmp_path / "bumped.avi", bumped, fps=FPS)
    for name, path, expected in [("calibrated", model, ["moved"]), ("uncalibrated", alocc_onnx, [])]:
        config = ServiceConfig(model=str(path), cameras=[CameraConfig(str(video), name="gate")], events_log=str(tmp_path / f"{name}.jsonl"),
                               thresholds={"tau": 1e9})
        lines = scene_lines(config)
        assert [line["reason"] for line in lines if line["type"] == "scene_changed"] == expected, name
        assert all(line["frame"] < 2 * FPS for line in lines)


def test_a_scene_reference_that_does_not_decode_is_one_line(alocc_onnx, tmp_path):
    manifest = read_manifest(alocc_onnx)
    manifest.scene = SceneReference(np.zeros((4, 6), np.float32), 0.1, 1).to_view()
    manifest.scene.png = manifest.scene.png[:-8]
    with pytest.raises(ManifestError, match="^scene.png is not a 6x4 grey PNG in base64$"):
        SceneReference.from_view(manifest.scene)


def test_occ_bench_guard_with_and_without_the_view_changes():
    """Three minutes of the day at 36x54: the five changes scheduled, each with its delay or missed;
    without them every minute after the reference's first is normal."""
    runner = CliRunner()
    changed = runner.invoke(bench_app, ["guard", "--hours", "0.05", "--height", "36", "--width", "54", "--json", "-", "--quiet"])
    assert changed.exit_code == 0, changed.output
    result = json.loads(changed.stdout)
    assert [c["kind"] for c in result["changes"]] == ["shake", "cover", "light_jump", "creep", "bump"]
    assert result["changes_measured"] + len(result["changes_already_held"]) == 5 and result["day"]["view_changes"]
    plain = runner.invoke(bench_app, ["guard", "--hours", "0.05", "--height", "36", "--width", "54", "--no-view-changes", "--json", "-", "--quiet"])
    result = json.loads(plain.stdout)
    assert plain.exit_code == 0 and result["changes"] == [] and result["within_2s_share"] is None and result["normal_minutes"] == 2


def test_metrics_say_which_camera_needs_calibration():
    metrics = ServiceMetrics("m.onnx")
    gate = metrics.camera("gate")
    metrics.camera("yard")  # a second camera, never moved
    gate.scene_reason = "moved"
    values = parse_metrics(metrics.render().decode())
    assert values[("occ_needs_calibration", (("camera", "gate"), ("model", "m.onnx")))] == 1
    assert values[("occ_needs_calibration", (("camera", "yard"), ("model", "m.onnx")))] == 0
    assert values[("occ_scene_changed", (("camera", "gate"), ("model", "m.onnx"), ("reason", "moved")))] == 1
    assert not any(name == "occ_scene_changed" and ("camera", "yard") in labels for name, labels in values)


@pytest.mark.parametrize("change", [covered, lambda f: shifted(f, 0.06 * f.shape[2], 0.03 * f.shape[1]), lambda f: gained(f, 1.6)])
def test_checking_every_other_frame_confirms_a_change_at_most_a_frame_later(noon, reference, change):
    """Every other frame is checked while nothing is seen, every frame once a reason is: a change seen
    on every frame is confirmed at most one frame after a guard checking every frame confirms it."""
    every = SceneGuard(reference, GuardLimits(check_every=1))
    assert first_changed(every, noon[200:299]) == (None, "")
    at_every, reason_every = first_changed(every, change(noon[299:399]))
    other = SceneGuard(reference)
    assert other.limits.check_every == 2
    normal = [other.update(f) for f in noon[200:299]]  # 99 frames: the change starts on an unchecked frame
    states = [other.update(f) for f in change(noon[299:399])]
    at_other = next(i for i, s in enumerate(states) if s.changed)
    assert at_every is not None and at_every <= at_other <= at_every + 1 and states[at_other].reason == reason_every
    assert not any(s.suspect for s in normal) and normal[-1].evidence is not normal[-2].evidence  # the last normal frame was checked
    assert not states[0].suspect and states[0].evidence is normal[-1].evidence  # the change's first frame is not measured
    assert all(s.suspect for s in states[1:at_other + 1])  # from the next check on every frame is checked and holds alarms


def test_check_every_must_be_positive():
    with pytest.raises(ValueError, match="check_every"):
        GuardLimits(check_every=0)


def test_occ_bench_guard_on_footage_in_the_ucsd_layout(noon, tmp_path):
    """``--ped2``: four 10-s clips of the walkway's noon written as Train001–Train004 frames; the
    reference from Train001 and Train003, the other two watched untouched and with each change."""
    for clip in range(4):
        folder = tmp_path / "UCSDped2" / "Train" / f"Train{clip + 1:03d}"
        folder.mkdir(parents=True)
        for i, frame in enumerate(noon[clip * 100:(clip + 1) * 100]):
            cv2.imwrite(str(folder / f"{i + 1:03d}.png"), frame)
    shown = CliRunner().invoke(bench_app, ["guard", "--ped2", str(tmp_path / "UCSDped2"), "--json", "-", "--quiet"])
    assert shown.exit_code == 0, shown.output
    result = json.loads(shown.stdout)
    assert result["data"]["calibration_clips"] == ["Train001", "Train003"] and result["data"]["watched_clips"] == ["Train002", "Train004"]
    assert [run["limits_name"] for run in result["runs"]] == ["default", "coarse alignment only (fine_moved=1)"]
    default = result["runs"][0]
    assert default["untouched_train"] == {"clips": 2, "frames": 200, "clips_fired": 0, "changed_frames": 0, "held_frames": 0}
    rows = {row["change"]: row for row in default["changes"]}
    for change in ("covered lens", "shift x 8 px", "shift y 8 px", "blur sigma 2", "gain 1.6", "frozen stream", "black stream"):
        assert rows[change]["as_expected"] and rows[change]["within_2s"] == 2, rows[change]
    assert rows["gain 1.2"]["expected"] == "" and rows["gain 1.2"]["reported"] == 0
    missing = CliRunner().invoke(bench_app, ["guard", "--ped2", str(tmp_path / "nothing"), "--quiet"])
    assert missing.exit_code == 2 and "UCSD folder not found" in missing.output


def test_occ_bench_guard_times_the_light_ramp_apart_as_the_drift_watchs():
    shown = CliRunner().invoke(bench_app, ["guard", "--hours", "0.05", "--height", "36", "--width", "54", "--view-change", "light_ramp",
                                           "--json", "-", "--quiet"])
    assert shown.exit_code == 0, shown.output
    result = json.loads(shown.stdout)
    [ramp] = result["changes"]
    assert ramp["kind"] == "light_ramp" and not ramp["for_the_guard"] and result["within_2s_share"] is None
    assert ramp["brightness_ratio_max"] > 1
    wrong = CliRunner().invoke(bench_app, ["guard", "--hours", "0.05", "--view-change", "fog", "--quiet"])
    assert wrong.exit_code == 2 and "unknown view change(s) fog" in wrong.output


WORKING_FRAME_TOLERANCE = 1e-3  # grey levels; float32's rounding leaves about 5e-5


def stored_working_frame(frame: np.ndarray, width: int = GuardLimits.width) -> np.ndarray:
    """The working frame that stored references (``occ calibrate``'s manifests) were made with:
    ``to_gray``, then OpenCV's area resize."""
    gray = to_gray(frame)
    width = min(width, gray.shape[1])
    height = max(8, int(round(gray.shape[0] * width / gray.shape[1])))
    return cv2.resize(gray, (width, height), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("height, width", [(240, 360), (250, 333), (576, 704), (1080, 1920), (60, 90)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_the_working_frame_and_its_contrast_stay_those_the_stored_references_were_made_with(noon, height, width, channels):
    """UCSD Ped2's 240×360 (ratios 2.82 and 2.81, no integer), a size whose area weights do not
    repeat in short blocks (250×333), D1, 1080p, one smaller than the working width; grey, BGR and
    BGRA; the walkway's edges kept sharp and each channel with its own noise."""
    rng = np.random.default_rng(height + channels)
    base = cv2.resize(noon[0], (width, height), interpolation=cv2.INTER_NEAREST).astype(np.int16)
    planes = [np.clip(base + rng.integers(-40, 41, base.shape), 0, 255).astype(np.uint8) for _ in range(channels)]
    frame = planes[0] if channels == 1 else np.dstack(planes)
    work, stored = guard_frame(frame, GuardLimits.width), stored_working_frame(frame)
    assert work.dtype == np.float32 and work.shape == stored.shape
    assert float(np.abs(work - stored).max()) <= WORKING_FRAME_TOLERANCE
    coarse = cv2.resize(stored, (stored.shape[1] // 8, stored.shape[0] // 8), interpolation=cv2.INTER_AREA)
    assert contrast(work) == pytest.approx(float(coarse.std() / coarse.mean()), rel=1e-5)


def test_the_sub_pixel_alignment_is_the_lucas_kanade_step_written_out(noon, reference):
    """:class:`FineAlignment` sums each product in one pass over the kept pixels; the same step and
    standard error written out pixel by pixel in float64 give the same shift and z."""
    work = guard_frame(jittered(noon[300:301], 0.4, seed=3)[0], GuardLimits.width)
    measured = FineAlignment(reference.frame).measure(work)
    b = FineAlignment.BORDER
    ref = reference.frame.astype(np.float64) / reference.frame.mean()
    gradients = np.stack([cv2.Sobel(ref, cv2.CV_64F, 1, 0, ksize=3)[b:-b, b:-b].ravel() / 8,
                          cv2.Sobel(ref, cv2.CV_64F, 0, 1, ksize=3)[b:-b, b:-b].ravel() / 8], axis=1)
    live = work[b:-b, b:-b].astype(np.float64).ravel()
    diff = live / live.mean() - ref[b:-b, b:-b].ravel()
    keep = np.abs(diff) < 3 * 1.4826 * np.median(np.abs(diff[::3]))
    moments = gradients[keep].T @ gradients[keep]
    shift = -np.linalg.solve(moments, gradients[keep].T @ diff[keep])
    residual = diff[keep] + gradients[keep] @ shift
    error = np.sqrt(residual @ residual / (keep.sum() - 2) * np.diag(np.linalg.inv(moments)))
    assert [measured["fine_x"] * work.shape[1], measured["fine_y"] * work.shape[0]] == pytest.approx(shift, rel=1e-4)
    assert [measured["fine_z_x"], measured["fine_z_y"]] == pytest.approx(np.abs(shift) / error, rel=1e-4)
    assert max(measured["fine_z_x"], measured["fine_z_y"]) > 3  # a shift it tells from the noise


def opencv_profile_shift(reference: np.ndarray, profile: np.ndarray) -> tuple[float, float]:
    """The profile match written with OpenCV's template matching, as the guard had it."""
    length = len(reference)
    margin = max(1, int(round(0.125 * length)))
    scores = cv2.matchTemplate(profile.astype(np.float32)[None], reference[margin:length - margin].astype(np.float32)[None],
                               cv2.TM_CCOEFF_NORMED)[0]
    best = int(np.argmax(scores))
    offset = 0.0
    if 0 < best < len(scores) - 1:
        left, mid, right = scores[best - 1 : best + 2]
        offset = 0.5 * (left - right) / (left - 2 * mid + right) if left - 2 * mid + right < 0 else 0.0
    return float(abs(best + offset - margin) / length), float(scores[best])


def test_the_profile_match_is_opencvs_normalized_cross_correlation(noon, reference):
    """:class:`ProfileMatch` correlates both axes by one matrix product; OpenCV's ``TM_CCOEFF_NORMED``
    on the same profiles gives the same shifts and correlations (OpenCV sums in float32: 10⁻⁴ apart
    where the correlation is low): shifted views, walkers, a flat (black) frame."""
    match = ProfileMatch(reference.frame)
    frames = [*noon[300:310], *shifted(noon[300:304], 3.3, 0), *shifted(noon[300:304], 0, 2.7), np.zeros_like(noon[0])]
    for frame in frames:
        work = guard_frame(frame, GuardLimits.width)
        expected = [v for along in (0, 1) for v in opencv_profile_shift(reference.frame.mean(axis=along), work.mean(axis=along))]
        assert match.measure(work) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("count", [1, 2, 3348, 3349])
def test_the_sub_pixel_steps_median_is_numpys_to_the_bit(count):
    """One selection and the largest of the lower half give numpy's median of an even count exactly."""
    values = np.abs(np.random.default_rng(count).normal(size=count)).astype(np.float32)
    values[: count // 3] = values[0]  # ties, as a frame's flat areas give
    assert _median(values) == float(np.median(values))
