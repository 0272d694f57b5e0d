"""Each camera's state beside the events log (cameras/<camera>.json) and `occ inspect` on it: the real
service on a bumped view says the camera needs `occ calibrate`, why and since when; a restart on
the calibrated view says it no longer does, which the events log alone cannot tell."""
import json
import shutil

import jsonschema
import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.calibration import calibrate_model
from occ.evaluation.datasets.video import write_video
from occ.runtime.events import CAMERA_STATE_SCHEMA, SCHEMA_FILES
from occ.runtime.service import CameraConfig, Service, ServiceConfig

from test_scene_guard import FPS, shifted

runner = CliRunner()


@pytest.fixture(scope="module")
def calibrated(alocc_onnx, tiny_walkway, tmp_path_factory):
    """The tiny ALOCC model calibrated on 12 s of the walkway's view (its manifest holds the view)."""
    folder = tmp_path_factory.mktemp("calibrated")
    model = shutil.copy(alocc_onnx, folder / "alocc.onnx")
    normal = np.concatenate([tiny_walkway.train[0].frames] * 4)
    calibrate_model(model, str(write_video(folder / "normal.avi", normal, fps=FPS)), false_alarm_rate=0.05, force=True)
    return model


def run_service(model, frames, folder, name: str) -> list[dict]:
    """The service on ``frames`` as a video, its events log in ``folder``; the log's lines."""
    video = write_video(folder / f"{name}.avi", frames, fps=FPS)
    events_log = folder / "events.jsonl"
    config = ServiceConfig(model=str(model), cameras=[CameraConfig(str(video), name="gate")], events_log=str(events_log),
                           thresholds={"tau": 1e9})
    assert Service(config).run().exit_code == 0
    return [json.loads(line) for line in events_log.read_text().splitlines()] if events_log.exists() else []


def test_occ_inspect_says_a_bumped_camera_needs_calibration_and_a_restart_on_its_view_that_it_does_not(calibrated, tiny_walkway,
                                                                                                         tmp_path):
    bumped = shifted(tiny_walkway.train[1].frames, 0.08 * 72, 0.04 * 48)
    lines = run_service(calibrated, bumped, tmp_path, "bumped")
    changed = [line for line in lines if line["type"] == "scene_changed"]
    assert [line["reason"] for line in changed] == ["moved"]
    state = json.loads((tmp_path / "cameras" / "gate.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILES[CAMERA_STATE_SCHEMA].read_text()),
                                    format_checker=jsonschema.FormatChecker()).validate(state)
    assert state["needs_calibration"] and state["service"] == "stopped" and state["model"] == "alocc.onnx"
    (cause,) = state["causes"]
    assert (cause["type"], cause["reason"], cause["frame"], cause["clip_s"], cause["wall_time"]) == \
        ("scene_changed", "moved", changed[0]["frame"], changed[0]["clip_s"], None)

    shown = runner.invoke(app, ["inspect", str(tmp_path / "cameras")])
    text = " ".join(shown.output.split())
    assert shown.exit_code == 0, shown.output
    assert "gate: needs occ calibrate: scene changed: moved since" in text and f"{changed[0]['clip_s']:g} s into the file" in text
    as_json = runner.invoke(app, ["inspect", str(tmp_path / "events.jsonl"), "--json", "-"])  # the events log: the folder beside it
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["cameras"] == [state]

    # restarted on the calibrated view: nothing ends the old change in the events log, the state says the present
    lines = run_service(calibrated, tiny_walkway.train[0].frames, tmp_path, "normal")
    assert [line["type"] for line in lines if line["type"].startswith("scene")] == ["scene_changed"]
    out = tmp_path / "inspect.json"
    quiet = runner.invoke(app, ["inspect", str(tmp_path / "cameras" / "gate.json"), "--json", str(out), "--quiet"])
    assert quiet.exit_code == 0 and not quiet.output.strip()
    (state,) = json.loads(out.read_text())["cameras"]
    assert not state["needs_calibration"] and state["causes"] == [] and state["service"] == "stopped"
    shown = runner.invoke(app, ["inspect", str(tmp_path / "cameras")])
    assert shown.exit_code == 0 and "gate: no calibration needed (service stopped" in shown.output


def test_drift_is_a_cause_until_it_ends(tmp_path):
    from occ.runtime.events import CameraState, read_camera_states

    state = CameraState(tmp_path / "cameras", "yard 2", "m.onnx", None)
    state.started()
    drift = {"type": "drift", "camera": "yard 2", "frame": 7200, "wall_time": "2026-12-06T09:40:00.000Z", "clip_s": None,
             "state": "started", "statistic": 0.61, "threshold": 0.556}
    state.update(drift)
    (read,) = read_camera_states(tmp_path / "cameras")
    assert read["camera"] == "yard 2" and read["needs_calibration"] and read["service"] == "running"
    assert read["causes"][0]["reason"] == "drift" and read["causes"][0]["statistic"] == 0.61
    shown = runner.invoke(app, ["inspect", str(tmp_path / "cameras" / "yard_2.json")])
    assert shown.exit_code == 0 and "KS statistic 0.61 over 0.556" in " ".join(shown.output.split())
    assert "2026-12-06T09:40:00.000Z" in " ".join(shown.output.split())
    state.update({**drift, "type": "drift_ended", "state": "ended"})
    assert not read_camera_states(tmp_path / "cameras")[0]["needs_calibration"]


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "cameras" / "gate.json", "gate.json: not found"),
    (lambda p: (p / "cameras").mkdir() or p / "cameras", "cameras: no camera state files"),
    (lambda p: (p / "gate.json").write_text("{") and p / "gate.json", "gate.json: not JSON"),
    (lambda p: (p / "gate.json").write_text('{"schema": "occ.event.v1"}') and p / "gate.json",
     "gate.json: not a camera state (schema 'occ.event.v1', expected 'occ.camera_state.v1')"),
    (lambda p: (p / "events.jsonl").write_text("") or p / "events.jsonl", "cameras: not found (the service writes it on its next start)"),
    (lambda p: (p / "gate.json").write_text(json.dumps({"schema": "occ.camera_state.v1", "camera": "gate", "service": "running", "updated": "",
                                                        "needs_calibration": True, "causes": [{"type": "drift"}]})) and p / "gate.json",
     "gate.json: camera state whose causes are not [{clip_s, frame, noticed, reason, statistic, threshold, type, wall_time}, ...]"),
], ids=["missing file", "empty folder", "not JSON", "another schema", "events log without its folder", "a cause without its fields"])
def test_bad_camera_state_is_one_line(tmp_path, make, problem):
    result = runner.invoke(app, ["inspect", str(make(tmp_path))])
    assert result.exit_code == 2 and problem in " ".join(result.output.split()) and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
