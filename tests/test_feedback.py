"""The operator's loop: an event of the real service → `occ feedback EVENT_ID --not-anomaly` puts its
clip in the camera's hard-normal set → `occ calibrate --config` (or `--hard-normal`) counts it as
normal, reports how the thresholds and the expected alarms moved, and records it in the threshold
history."""
import json
import shutil
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

from occ.evaluation.datasets.video import write_video
from occ.runtime.events import HARD_NORMAL_SCHEMA, SCHEMA_FILES
from occ.runtime.manifest import read_manifest
from occ.runtime.service import ServiceConfig

from test_calibration import OTHER_SPEC  # other normal minutes of the tiny walkway: 80 frames at 10 fps
from test_own_camera import ok, read_lines, refused

jsonschema = pytest.importorskip("jsonschema")

def make_site(exported, tiny_walkway, folder):
    """A camera site: ``exported`` calibrated so that half of the walkway's normal frames fire (a
    threshold that wakes the operator for nothing), and the real service run on the walkway's test
    clips with events, snapshots and event clips. Returns the folder."""
    model = folder / "gate.onnx"
    shutil.copy(exported, model)
    ok("calibrate", model, "--data", OTHER_SPEC, "--false-alarm-rate", "0.5", "--quiet")
    frames = np.concatenate([clip.frames for clip in tiny_walkway.test])
    write_video(folder / "gate.avi", frames, fps=10)
    ok("run", model, "--source", folder / "gate.avi", "--camera", "gate", "--events", folder / "events.jsonl",
       "--snapshots", folder / "snapshots")
    return folder


@pytest.fixture(scope="module")
def site(alocc_onnx, tiny_walkway, tmp_path_factory):
    return make_site(alocc_onnx, tiny_walkway, tmp_path_factory.mktemp("site"))


def closed_events(site, log="events.jsonl"):
    return [line for line in read_lines(site / log) if line.get("type") == "closed"]


@pytest.fixture
def copy(site, tmp_path):
    """A fresh copy of the site for a test that changes it (the clips' logged paths still lead to the original)."""
    target = tmp_path / "site"
    shutil.copytree(site, target)
    return target


def test_feedback_copies_the_clip_and_writes_its_record(copy):
    event = closed_events(copy)[0]
    assert event["clip"]  # the service wrote one
    output = ok("feedback", event["event_id"], "--not-anomaly", "--events", copy / "events.jsonl", "--json", copy / "fb.json")
    folder = copy / "hard-normal" / "gate"  # default: beside the events log, a folder per camera
    clip, record = folder / f"{event['event_id']}.avi", folder / f"{event['event_id']}.json"
    assert "marked not an anomaly" in output and f"--hard-normal {folder}" in " ".join(output.split())
    assert clip.read_bytes() == Path(event["clip"]).read_bytes()
    saved = json.loads(record.read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILES[HARD_NORMAL_SCHEMA].read_text()),
                                    format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(saved)
    assert saved["verdict"] == "not_anomaly" and saved["clip"] == clip.name
    for key in ("event_id", "camera", "model", "model_sha256", "method", "thresholds", "peak_score", "start_frame", "start_clip_s",
                "end_frame", "end_clip_s"):
        assert saved[key] == event[key], key
    assert saved["thresholds"] == {"tau": read_manifest(copy / "gate.onnx").threshold("tau")}
    report = json.loads((copy / "fb.json").read_text())
    assert report["already"] is False and report["clip"] == str(clip) and report["camera"] == "gate"
    assert sorted(p.name for p in folder.iterdir()) == sorted([clip.name, record.name])  # no temp file left

    # again: nothing changes, and it says so
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    again = ok("feedback", event["event_id"], "--not-anomaly", "--events", copy / "events.jsonl")
    assert "already in the hard-normal set" in again
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before


def test_feedback_finds_events_in_rotated_logs_and_a_folder_of_logs(copy):
    event = closed_events(copy)[-1]
    logs = copy / "logs"
    logs.mkdir()
    (copy / "events.jsonl").rename(logs / "events.jsonl.1")  # rotated away; the new log holds nothing of it
    (logs / "events.jsonl").write_text("")
    ok("feedback", event["event_id"], "--not-anomaly", "--events", logs / "events.jsonl", "--hard-normal", copy / "set")
    assert (copy / "set" / "gate" / f"{event['event_id']}.avi").is_file()
    (copy / "set" / "gate" / f"{event['event_id']}.json").unlink()
    (copy / "set" / "gate" / f"{event['event_id']}.avi").unlink()
    ok("feedback", event["event_id"], "--not-anomaly", "--events", logs, "--hard-normal", copy / "set")
    assert (copy / "set" / "gate" / f"{event['event_id']}.json").is_file()


def test_feedback_refusals_are_one_line_and_write_nothing(copy, alocc_onnx, tiny_walkway):
    events = copy / "events.jsonl"
    event = closed_events(copy)[0]
    known = event["event_id"]
    assert f"gate-20991231T000000.000Z-0000: no such event in {events}" in refused(
        "feedback", "gate-20991231T000000.000Z-0000", "--not-anomaly", "--events", events)
    assert "--not-anomaly" in refused("feedback", known, "--events", events)
    assert "no events log or folder there" in refused("feedback", known, "--not-anomaly", "--events", copy / "missing.jsonl")

    # an event of a service without clips
    ok("run", copy / "gate.onnx", "--source", copy / "gate.avi", "--camera", "gate", "--events", copy / "bare.jsonl")
    bare = closed_events(copy, "bare.jsonl")[0]
    assert bare["clip"] is None
    assert "the event has no clip" in refused("feedback", bare["event_id"], "--not-anomaly", "--events", copy / "bare.jsonl")

    # a user's file where the clip would go is never overwritten
    folder = copy / "hard-normal" / "gate"
    folder.mkdir(parents=True)
    (folder / f"{known}.avi").write_bytes(b"a user's file")
    assert "already exists and is not this event's clip; not overwritten" in refused("feedback", known, "--not-anomaly", "--events", events)
    assert (folder / f"{known}.avi").read_bytes() == b"a user's file" and not (folder / f"{known}.json").exists()
    (folder / f"{known}.avi").unlink()
    (folder / f"{known}.json").write_text("{}")
    assert "already exists and is not this event's record; not overwritten" in refused("feedback", known, "--not-anomaly",
                                                                                      "--events", events)
    assert (folder / f"{known}.json").read_text() == "{}" and not (folder / f"{known}.avi").exists()

    # a clip the service rotated away
    other = closed_events(copy)[-1]
    clip = copy / "snapshots" / other["clip"].rsplit("/", 1)[-1]
    moved = clip.rename(clip.with_name("kept.bin"))
    logged = closed_events(copy)
    (copy / "moved.jsonl").write_text("".join(json.dumps({**line, "clip": str(clip)}) + "\n" for line in logged))
    assert "is gone (clips are rotated" in refused("feedback", other["event_id"], "--not-anomaly", "--events", copy / "moved.jsonl")
    moved.rename(clip.with_name(f".{clip.stem}.partial.avi"))  # as EventClips writes it until the event's time after is over
    assert "is still being written" in refused("feedback", other["event_id"], "--not-anomaly", "--events", copy / "moved.jsonl")
    assert not (folder / f"{other['event_id']}.avi").exists()


def test_feedback_with_the_service_configuration(site, tmp_path):
    """The configuration names the events log, the snapshots folder and the hard-normal set; it is
    read beside the running service, whose metrics port is busy."""
    event = closed_events(site)[0]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        config = tmp_path / "site.toml"
        shutil.copy(site / "gate.onnx", tmp_path / "gate.onnx")
        shutil.copy(site / "gate.avi", tmp_path / "gate.avi")
        shutil.copy(site / "events.jsonl", tmp_path / "events.jsonl")
        shutil.copytree(site / "snapshots", tmp_path / "snapshots")
        # the logged clip paths lead to the first site; without them the clip is found by name in [snapshots] folder
        (tmp_path / "events.jsonl").write_text("".join(json.dumps({**line, "clip": line["clip"] and "elsewhere/" + line["clip"].rsplit("/", 1)[-1]})
                                                       + "\n" for line in read_lines(site / "events.jsonl")))
        config.write_text(f'[model]\npath = "gate.onnx"\n[source]\nspec = "gate.avi"\nname = "gate"\n[events]\nlog = "events.jsonl"\n'
                          f'[snapshots]\nfolder = "snapshots"\n[metrics]\nport = {busy.getsockname()[1]}\n')
        assert ServiceConfig.from_toml(config, check=False).hard_normal == str(tmp_path / "hard-normal")
        ok("feedback", event["event_id"], "--not-anomaly", "--config", config)
        assert (tmp_path / "hard-normal" / "gate" / f"{event['event_id']}.avi").is_file()
        config.write_text(config.read_text() + '[feedback]\nhard_normal = "set"\n')
        ok("feedback", event["event_id"], "--not-anomaly", "--config", config)
        assert (tmp_path / "set" / "gate" / f"{event['event_id']}.avi").is_file()
        assert "--events conflicts with --config" in refused("feedback", event["event_id"], "--not-anomaly", "--config", config,
                                                             "--events", tmp_path / "events.jsonl")
    finally:
        busy.close()


def test_calibrate_with_the_hard_normal_set_raises_tau_reports_the_move_and_records_it(copy):
    model = copy / "gate.onnx"
    before = read_manifest(model)
    old_tau = before.threshold("tau")
    event = max(closed_events(copy), key=lambda e: e["peak_score"])
    assert event["peak_score"] > old_tau  # the event fired at the stored threshold
    ok("feedback", event["event_id"], "--not-anomaly", "--events", copy / "events.jsonl")
    folder = copy / "hard-normal" / "gate"
    capture = cv2.VideoCapture(str(folder / f"{event['event_id']}.avi"))
    clip_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()

    # the same budget without the set: the walkway's normal minutes alone
    ok("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "2000", "--dry-run", "--json", copy / "without.json")
    without = json.loads((copy / "without.json").read_text())
    output = ok("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "2000", "--hard-normal", folder, "--json", copy / "with.json")
    report = json.loads((copy / "with.json").read_text())
    after = read_manifest(model)
    new_tau = after.threshold("tau")

    hard = report["hard_normal"]
    assert (hard["clips"], hard["frames"], hard["events"]) == (1, clip_frames, [event["event_id"]])
    assert report["frames"] == 80 + clip_frames and without["frames"] == 80
    # at the old τ the clip opens an episode; 2000 a day allows none in these seconds, so the new τ is above the clip's episodes
    assert hard["alarms_before"] >= 1 and hard["firing_before"] >= 1 and hard["alarms_after"] == 0
    assert new_tau > old_tau and new_tau > without["new"]["thresholds"]["tau"]
    assert report["moved"]["thresholds"]["tau"] == {"old": old_tau, "new": new_tau, "change": pytest.approx((new_tau - old_tau) / old_tau)}
    assert report["moved"]["alarms_per_day"] == {"old": report["old"]["expected_alarms"]["per_day"],
                                                 "new": report["new"]["expected_alarms"]["per_day"]}
    assert report["moved"]["alarms_per_day"]["old"] > report["moved"]["alarms_per_day"]["new"] == 0
    text = " ".join(output.split())
    assert f"moved: tau {old_tau:.5g} → {new_tau:.5g}" in text and "(budget 2000)" in text
    assert f"hard-normal set {folder}: 1 clip(s), {clip_frames} frames included as normal; episodes on them {hard['alarms_before']} → 0" in text

    # the manifest: the new τ names the set in its data, the history entry of the old τ records it
    assert after.thresholds["tau"].n_samples == 80 + clip_frames
    assert f"+ hard-normal set gate (1 clip(s), {clip_frames} frames)" in after.thresholds["tau"].data
    entry = after.threshold_history[-1]
    assert entry["value"] == old_tau and entry["replaced_by"] == {
        "value": new_tau, "hard_normal": {"folder": "gate", "clips": 1, "frames": clip_frames, "events": [event["event_id"]]}}
    assert "replaced_by" not in before.threshold_history[-1]  # a calibration without the set records none


def test_calibrate_refuses_a_hard_normal_folder_that_is_not_a_cameras_set(copy):
    model = copy / "gate.onnx"
    event = closed_events(copy)[0]
    ok("feedback", event["event_id"], "--not-anomaly", "--events", copy / "events.jsonl")
    before = model.read_bytes()
    root = copy / "hard-normal"
    assert f"{root}: holds the hard-normal sets of gate; give the calibrated camera's folder, e.g. {root / 'gate'}" in refused(
        "calibrate", model, "--data", OTHER_SPEC, "--hard-normal", root)
    (copy / "empty").mkdir()
    assert "holds no hard-normal clip" in refused("calibrate", model, "--data", OTHER_SPEC, "--hard-normal", copy / "empty")
    (root / "gate" / f"{event['event_id']}.avi").unlink()
    assert "is missing" in refused("calibrate", model, "--data", OTHER_SPEC, "--hard-normal", root / "gate")
    assert model.read_bytes() == before


def test_calibrate_avid_with_the_hard_normal_set_moves_alpha_and_zeta(avid_onnx, tiny_walkway, tmp_path):
    site = make_site(avid_onnx, tiny_walkway, tmp_path)
    model = site / "gate.onnx"
    before = read_manifest(model)
    event = max(closed_events(site), key=lambda e: e["peak_score"])
    assert event["peak_score"] >= 1  # AVID fires at 1
    ok("feedback", event["event_id"], "--not-anomaly", "--events", site / "events.jsonl")
    folder = site / "hard-normal" / "gate"
    ok("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "2000", "--hard-normal", folder, "--json", site / "with.json")
    report, after = json.loads((site / "with.json").read_text()), read_manifest(model)
    assert report["hard_normal"]["alarms_before"] >= 1 and report["hard_normal"]["alarms_after"] == 0
    assert report["moved"]["thresholds"] == {name: {"old": before.threshold(name), "new": after.threshold(name),
                                                    "change": pytest.approx((after.threshold(name) - before.threshold(name)) / before.threshold(name))}
                                             for name in ("alpha", "zeta")}
    assert [(h["name"], h["replaced_by"]["hard_normal"]["events"]) for h in after.threshold_history[-2:]] == [
        ("alpha", [event["event_id"]]), ("zeta", [event["event_id"]])]


def site_config(site, cameras=("gate",), hard_normal=None):
    """The service configuration of ``site``: its model, events log and snapshots, one [source] or
    several [[cameras]], and [feedback] hard_normal when given (default: hard-normal/ beside it)."""
    if len(cameras) == 1:
        sources = f'[source]\nspec = "gate.avi"\nname = "{cameras[0]}"\n'
    else:
        sources = "".join(f'[[cameras]]\nspec = "gate.avi"\nname = "{name}"\n' for name in cameras)
    feedback = f'[feedback]\nhard_normal = "{hard_normal}"\n' if hard_normal else ""
    config = site / "site.toml"
    config.write_text(f'[model]\npath = "gate.onnx"\n{sources}[events]\nlog = "events.jsonl"\n[snapshots]\nfolder = "snapshots"\n'
                      f'{feedback}')
    return config


def test_feedback_then_calibrate_with_the_configuration_includes_the_clip_and_reports_the_move(copy):
    model = copy / "gate.onnx"
    old_tau = read_manifest(model).threshold("tau")
    event = max(closed_events(copy), key=lambda e: e["peak_score"])
    config = site_config(copy, hard_normal="verdicts")
    hint = " ".join(ok("feedback", event["event_id"], "--not-anomaly", "--config", config).split())
    assert f"the next `occ calibrate MODEL --data ... --config {config}` counts it as normal" in hint  # one camera: no --camera
    folder = copy / "verdicts" / "gate"

    # the same set, named by the configuration or by hand, gives the same calibration
    ok("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "2000", "--hard-normal", folder, "--dry-run",
       "--json", copy / "by-hand.json")
    output = ok("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "2000", "--config", config, "--json", copy / "with.json")
    report, by_hand = json.loads((copy / "with.json").read_text()), json.loads((copy / "by-hand.json").read_text())
    new_tau = read_manifest(model).threshold("tau")
    assert report["hard_normal"]["folder"] == str(folder) and report["hard_normal"]["events"] == [event["event_id"]]
    assert report["hard_normal_empty"] is None and report["hard_normal"]["alarms_after"] == 0
    assert report["new"]["thresholds"] == by_hand["new"]["thresholds"] == {"tau": new_tau} and new_tau > old_tau
    assert report["moved"]["thresholds"]["tau"]["old"] == old_tau and report["moved"]["thresholds"]["tau"]["new"] == new_tau
    text = " ".join(output.split())
    assert f"moved: tau {old_tau:.5g} → {new_tau:.5g}" in text
    assert f"hard-normal set {folder}: 1 clip(s)" in text and "no clip yet" not in text
    assert read_manifest(model).threshold_history[-1]["replaced_by"]["hard_normal"]["events"] == [event["event_id"]]


def test_calibrate_with_a_configuration_whose_set_is_empty_says_so_in_one_line(copy):
    model = copy / "gate.onnx"
    config = site_config(copy, cameras=("gate", "road"))
    for camera in ("gate", "road"):  # gate's folder is absent, road's is there but empty
        if camera == "road":
            (copy / "hard-normal" / "road").mkdir(parents=True)
        output = ok("calibrate", model, "--data", OTHER_SPEC, "--config", config, "--camera", camera, "--dry-run",
                    "--json", copy / "empty.json")
        report = json.loads((copy / "empty.json").read_text())
        folder = copy / "hard-normal" / camera
        assert report["hard_normal"] is None and report["hard_normal_empty"] == str(folder)
        lines = [line for line in output.splitlines() if "no clip yet" in line]
        assert len(lines) == 1 and lines[0].startswith(f"hard-normal set {folder} (camera {camera}, {config}): no clip yet")
        assert report["frames"] == 80  # the footage alone


def test_calibrate_with_a_configuration_refusals_are_one_line(copy):
    model = copy / "gate.onnx"
    before = model.read_bytes()
    config = site_config(copy, cameras=("gate", "road"))
    assert "conflicts with --config" in refused("calibrate", model, "--data", OTHER_SPEC, "--config", config,
                                                "--hard-normal", copy / "hard-normal" / "gate")
    assert f"{config}: no camera named 'yard'; its cameras: gate, road" in refused(
        "calibrate", model, "--data", OTHER_SPEC, "--config", config, "--camera", "yard")
    assert f"{config}: has cameras gate, road; say which one with --camera NAME" in refused(
        "calibrate", model, "--data", OTHER_SPEC, "--config", config)
    assert "--camera gate goes with --config" in refused("calibrate", model, "--data", OTHER_SPEC, "--camera", "gate")
    assert str(copy / "missing.toml") in refused("calibrate", model, "--data", OTHER_SPEC, "--config", copy / "missing.toml")
    (copy / "broken.toml").write_text("[model\n")
    assert str(copy / "broken.toml") in refused("calibrate", model, "--data", OTHER_SPEC, "--config", copy / "broken.toml")
    assert model.read_bytes() == before

    # feedback with several cameras names the event's camera in its hint
    event = closed_events(copy)[0]
    hint = " ".join(ok("feedback", event["event_id"], "--not-anomaly", "--config", config).split())
    assert f"--config {config} --camera gate` counts it as normal" in hint
