"""Footage in any form: occ data record, footage specs split by time, train and calibrate on them.

Real video files written with OpenCV, a real ffmpeg HTTP stream where ffmpeg is installed, the real
CLI through typer's CliRunner.
"""
import dataclasses
import datetime
import json
import shutil
import time

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets import DatasetError
from occ.evaluation.datasets.walkway import generate_walkway
from occ.evaluation.datasets.footage import DEFAULT_SPLIT, Split, open_footage, split_footage
from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.video import read_video, write_video

from service_utils import free_port
from test_camera import FFMPEG, _serve

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def footage_frames(tiny_walkway, count: int) -> np.ndarray:
    """``count`` frames of normal walkway footage (the training clips, repeated)."""
    frames = np.concatenate([clip.frames for clip in tiny_walkway.train])
    return np.concatenate([frames] * (count // len(frames) + 1))[:count]


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


# ---- the split ----------------------------------------------------------------------------------

def test_split_cuts_the_timeline_by_time_across_files(tiny_walkway, tmp_path):
    # 10 s then 5 s at 10 fps: 15 s in all; 70/10/20 cuts at 10.5 s and 12 s, i.e. 0.5 s and 2 s into b.avi
    write_video(tmp_path / "cams" / "a.avi", footage_frames(tiny_walkway, 100), fps=10)
    write_video(tmp_path / "cams" / "b.avi", footage_frames(tiny_walkway, 50), fps=10)
    footage = open_footage(str(tmp_path / "cams" / "*.avi"))
    pieces = [(p.part, p.file.name, p.first, p.stop) for p in split_footage(footage, DEFAULT_SPLIT)]
    assert pieces == [("training", "a.avi", 0, 100), ("training", "b.avi", 0, 5), ("validation", "b.avi", 5, 20),
                      ("calibration", "b.avi", 20, 50)]
    # another split, and every frame in exactly one part
    pieces = split_footage(footage, Split.parse("50/0/50"))
    assert [(p.part, p.file.name, p.first, p.stop) for p in pieces] == [("training", "a.avi", 0, 75), ("calibration", "a.avi", 75, 100),
                                                                          ("calibration", "b.avi", 0, 50)]
    assert [r["from"] + "-" + r["to"] for r in (p.row() for p in pieces)] == ["0:00-0:08", "0:08-0:10", "0:00-0:05"]


@pytest.mark.parametrize("text", ["70/10", "50/50/10", "a/b/c", "-10/60/50"])
def test_a_bad_split_is_refused(text):
    with pytest.raises(DatasetError, match="percentages summing to 100"):
        Split.parse(text)


def test_every_footage_layout_reads_with_relative_names(tiny_walkway, tmp_path):
    frames = footage_frames(tiny_walkway, 50)
    write_video(tmp_path / "one.avi", frames, fps=10)
    write_video(tmp_path / "videos" / "cam-0900.avi", frames, fps=10)
    write_video(tmp_path / "videos" / "cam-1000.avi", frames, fps=10)
    write_video(tmp_path / "site" / "Train" / "cam1.avi", frames, fps=10)  # the layout: Train/ holding a video
    for spec, files, total in [(tmp_path / "one.avi", ["one.avi"], 50), (tmp_path / "videos", ["cam-0900.avi", "cam-1000.avi"], 100),
                               (tmp_path / "site", ["cam1.avi"], 50)]:
        data = load_video_data(str(spec), splits=("train", "validation", "calibration", "test"))
        assert sorted({p["file"] for p in data.footage["pieces"]}) == files
        assert sum(len(c) for c in data.train + data.validation + data.calibration) == total
        assert sum(len(c) for c in data.calibration) == round(0.2 * total) and data.test == []
        assert str(tmp_path) not in json.dumps(data.footage) + data.description
    # an image folder of normal frames (a UCSD clip folder) is footage too
    clip = tmp_path / "Train001"
    clip.mkdir()
    for i, frame in enumerate(frames[:20]):
        cv2.imwrite(str(clip / f"{i:03d}.png"), frame)
    data = load_video_data(str(clip), splits=("train", "validation", "calibration"))
    assert [len(data.train), len(data.validation), len(data.calibration)] == [1, 1, 1]
    assert [len(c) for c in data.train + data.validation + data.calibration] == [14, 2, 4]
    np.testing.assert_array_equal(data.train[0].frames, frames[:14])  # PNG is lossless


@pytest.mark.parametrize("make, message", [
    (lambda d: d.mkdir(), "no video files"),
    (lambda d: (d.mkdir(), (d / "broken.avi").write_bytes(b"not a video at all")), "broken.avi: OpenCV cannot open this video"),
    (lambda d: (d.mkdir(), _empty_video(d / "empty.avi")), "empty.avi: the video has no decodable frames"),
])
def test_bad_footage_gets_one_line(alocc_onnx, tmp_path, make, message):
    folder = tmp_path / "footage"
    make(folder)
    for command in (["data", "info", folder], ["calibrate", alocc_onnx, "--data", folder], ["train", "alocc", "--data", folder,
                                                                                            "--out", tmp_path / "m.pt"]):
        assert message in one_line_error(invoke(*command))


def _empty_video(path):
    """A video file OpenCV writes with no frame in it."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24), True)
    writer.release()
    assert path.is_file()


def test_a_glob_that_matches_nothing_gets_one_line(tmp_path):
    output = one_line_error(invoke("data", "info", tmp_path / "*.mp4"))
    assert "*.mp4: no video files or image folders match" in output


def test_normal_only_ucsd_folder_works_for_data_info(tiny_walkway, tmp_path):
    from occ.evaluation.datasets import write_ucsd_layout

    write_ucsd_layout(tiny_walkway, tmp_path / "site")
    shutil.rmtree(tmp_path / "site" / "Test")
    result = invoke("data", "info", tmp_path / "site", "--json", tmp_path / "info.json", "--quiet")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "info.json").read_text())["clips"]
    assert [(r["split"], r["frames"]) for r in rows] == [("train", 30), ("train", 30)]


# ---- recording --------------------------------------------------------------------------------------

def test_record_a_file_into_clips_and_a_manifest(tiny_walkway, tmp_path):
    frames = footage_frames(tiny_walkway, 200)
    video = write_video(tmp_path / "cam.avi", frames, fps=10)
    result = invoke("data", "record", video, "--out", tmp_path / "rec", "--minutes", "0.25", "--clip-seconds", "4",
                    "--json", tmp_path / "rec.json", "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "rec" / "recording.json").read_text())
    assert manifest == json.loads((tmp_path / "rec.json").read_text())
    # 15 s at 10 fps: 150 frames in clips of 4 s
    assert manifest["fps"] == 10 and (manifest["height"], manifest["width"]) == frames.shape[1:] and manifest["frames"] == 150
    assert [(c["file"], c["start_seconds"], c["frames"]) for c in manifest["clips"]] == [
        ("clip-0001.avi", 0.0, 40), ("clip-0002.avi", 4.0, 40), ("clip-0003.avi", 8.0, 40), ("clip-0004.avi", 12.0, 30)]
    assert manifest["camera"] == "cam.avi" and manifest["seconds"] == 15.0
    datetime.datetime.fromisoformat(manifest["start_time"])
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["clip-0001.avi", "clip-0002.avi", "clip-0003.avi", "clip-0004.avi",
                                                                     "recording.json"]
    recorded = np.stack(list(read_video(tmp_path / "rec" / "clip-0002.avi")))
    aligned, shifted = (np.abs(recorded.astype(int) - frames[first:first + 40]).mean() for first in (40, 41))
    assert aligned < 6 and aligned < shifted  # MJPG twice: close, not equal; and frames 40-79, in order
    # the recording as footage: 10.5 s training, 1.5 s validation, 3 s calibration
    data = load_video_data(str(tmp_path / "rec"), splits=("train", "validation", "calibration"))
    assert [c.name for c in data.train] == ["clip-0001.avi[0:40]", "clip-0002.avi[0:40]", "clip-0003.avi[0:25]"]
    assert [c.name for c in data.validation] == ["clip-0003.avi[25:40]"]
    assert [c.name for c in data.calibration] == ["clip-0004.avi[0:30]"]
    assert data.footage["camera"] == "cam.avi" and data.footage["start_time"] == manifest["start_time"]


def test_record_never_overwrites(tiny_walkway, tmp_path):
    video = write_video(tmp_path / "cam.avi", footage_frames(tiny_walkway, 20), fps=10)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    output = one_line_error(invoke("data", "record", video, "--out", tmp_path / "out", "--minutes", "1"))
    assert "out: not empty" in output and (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt"]
    output = one_line_error(invoke("data", "record", tmp_path / "none.avi", "--out", tmp_path / "new", "--minutes", "1"))
    assert "none.avi: no such file or folder" in output


@pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (make test installs it where apt-get works)")
def test_record_a_live_http_stream(tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", footage_frames(tiny_walkway, 60), fps=10)
    port = free_port()
    server = _serve(video, port)
    try:
        time.sleep(0.5)
        started = time.time()
        result = invoke("data", "record", f"http://viewer:secret@127.0.0.1:{port}/stream", "--out", tmp_path / "rec", "--minutes", "0.05",
                        "--clip-seconds", "1", "--quiet")
    finally:
        server.kill()
        server.wait()
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "rec" / "recording.json").read_text())
    assert manifest["camera"] == f"http://127.0.0.1:{port}/stream" and manifest["source_kind"] == "network"  # no password kept
    assert 7 <= manifest["fps"] <= 13 and 2.5 <= manifest["seconds"] <= 3.2  # ffmpeg -re serves 10 fps in real time
    assert len(manifest["clips"]) == 3 and sum(c["frames"] for c in manifest["clips"]) == manifest["frames"]
    assert abs(datetime.datetime.fromisoformat(manifest["start_time"]).timestamp() - started) < 10
    assert sum(len(c) for c in load_video_data(str(tmp_path / "rec"), splits=("train", "validation", "calibration")).train) > 0


# ---- train, calibrate, export on footage ---------------------------------------------------------------

def test_train_on_a_recording_records_the_split(tiny_walkway, tmp_path):
    from occ.train.common import load_checkpoint

    video = write_video(tmp_path / "cam.avi", footage_frames(tiny_walkway, 100), fps=10)
    assert invoke("data", "record", video, "--out", tmp_path / "rec", "--minutes", "1", "--clip-seconds", "5", "--quiet").exit_code == 0
    result = invoke("train", "alocc", "--data", tmp_path / "rec", "--out", tmp_path / "m.pt", "--epochs", "1", "--height", "48",
                    "--width", "72", "--patch-size", "16", "--stride", "16", "--base-width", "8", "--split", "60/20/20")
    assert result.exit_code == 0, result.output
    assert "split 60/20/20 %" in result.output and "calibration │ clip-0002.avi │ 0:03 │ 0:05" in result.output
    training = load_checkpoint(tmp_path / "m.pt").manifest.training
    dataset = training["dataset"]
    assert dataset["kind"] == "footage" and dataset["split"] == "60/20/20" and dataset["spec"] == "rec (occ recording)"
    # 10 s: training 0-6 s, validation 6-8 s, calibration 8-10 s, in clips of 5 s
    assert [(p["part"], p["file"], p["first_frame"], p["stop_frame"]) for p in dataset["pieces"]] == [
        ("training", "clip-0001.avi", 0, 50), ("training", "clip-0002.avi", 0, 10), ("validation", "clip-0002.avi", 10, 30),
        ("calibration", "clip-0002.avi", 30, 50)]
    assert training["validation_clips"] == ["clip-0002.avi[10:30]"]
    assert training["clips"] == ["clip-0001.avi[0:50]", "clip-0002.avi[0:10]", "clip-0002.avi[10:30]"]  # no calibration minute
    assert str(tmp_path) not in json.dumps(dataset)


def test_avid_holds_out_the_validation_part(tiny_walkway, tmp_path):
    from occ.train.train_avid import AvidConfig, video_data
    from occ.train.workflow import training_video

    write_video(tmp_path / "cam.avi", footage_frames(tiny_walkway, 100), fps=10)
    config = AvidConfig(height=32, width=48, base_width=4, depth=2)
    video, record = training_video(str(tmp_path / "cam.avi"), (config.height, config.width))
    assert [c.frames.shape for c in video.train] == [(70, 32, 48)] and [len(c) for c in video.validation] == [10]
    data = video_data(video.train, config, video.description, record, validation=video.validation)
    assert data.summary["validation_clips"] == ["cam.avi[70:80]"] and data.summary["train_frames"] == 70
    assert record["pieces"][-1] == {"part": "calibration", "file": "cam.avi", "from": "0:08", "to": "0:10", "first_frame": 80,
                                    "stop_frame": 100, "frames": 20}


def test_calibrate_uses_only_the_calibration_part(alocc_onnx, tiny_walkway, tmp_path):
    from occ.runtime.manifest import read_manifest

    model = tmp_path / "m.onnx"
    shutil.copy(alocc_onnx, model)
    write_video(tmp_path / "cam.avi", footage_frames(tiny_walkway, 100), fps=10)
    result = invoke("calibrate", model, "--data", tmp_path / "cam.avi", "--false-alarm-rate", "0.1", "--quiet")
    assert result.exit_code == 0, result.output
    tau = read_manifest(model).thresholds["tau"]
    assert tau.n_samples == 20 and "cam.avi 0:08-0:10" in tau.data  # the last 20 % of 10 s
    result = invoke("calibrate", model, "--data", tmp_path / "cam.avi", "--split", "100/0/0")
    assert "calibration part of the split (100/0/0 %) holds no frames" in one_line_error(result)


def test_int8_calibrates_on_normal_footage_only(alocc_onnx, tiny_walkway, tmp_path):
    from occ.evaluation.datasets import write_ucsd_layout

    model = tmp_path / "m.onnx"
    shutil.copy(alocc_onnx, model)
    # the fixture's scene at 300 frames a clip: the 1 % decision budget over 60 frames would allow no flip
    site = generate_walkway(dataclasses.replace(tiny_walkway.config, train_clips=2, test_clips=0, frames_per_clip=300))
    write_ucsd_layout(site, tmp_path / "site")
    shutil.rmtree(tmp_path / "site" / "Test", ignore_errors=True)  # normal footage only: once "Test: folder not found"
    result = invoke("export", model, "--int8", "--calib-data", tmp_path / "site", "--calib-frames", "8")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.int8.onnx").is_file()
    write_video(tmp_path / "videos" / "cam.avi", footage_frames(tiny_walkway, 60), fps=10)
    result = invoke("export", model, "--int8", "--calib-data", tmp_path / "videos", "--calib-frames", "8")
    assert result.exit_code == 0, result.output
    assert "calibration part of the footage" in result.output


def test_eval_on_normal_footage_says_why_not(alocc_onnx, tiny_walkway, tmp_path):
    write_video(tmp_path / "cam.avi", footage_frames(tiny_walkway, 30), fps=10)
    assert "no labelled Test/ clips to evaluate on" in one_line_error(invoke("eval", alocc_onnx, "--data", tmp_path / "cam.avi"))


def test_data_info_on_a_recording_lists_the_parts(tiny_walkway, tmp_path):
    video = write_video(tmp_path / "cam.avi", footage_frames(tiny_walkway, 100), fps=10)
    assert invoke("data", "record", video, "--out", tmp_path / "rec", "--minutes", "1", "--quiet").exit_code == 0
    result = invoke("data", "info", tmp_path / "rec", "--json", "-", "--quiet")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert [(r["split"], r["from"], r["to"], r["frames"]) for r in info["clips"]] == [
        ("training", "0:00", "0:07", 70), ("validation", "0:07", "0:08", 10), ("calibration", "0:08", "0:10", 20)]
    assert info["footage"]["split"] == "70/10/20" and "no labelled Test/ part" in info["title"]
