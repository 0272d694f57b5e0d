"""One unreadable frame in an image folder is counted, logged once a minute and skipped; the camera
goes on (it used to end the camera's loop with exit code 4)."""
import json
import logging

import cv2
import pytest

from occ.runtime.events import ServiceMetrics
from occ.runtime.service import CameraConfig, Service, ServiceConfig
from occ.runtime.sources import FolderSource, SourceError


def folder_with_broken_frames(tiny_walkway, folder):
    """The 30 frames of a test clip as PNGs, frame 10 replaced by bytes that are no image and frame
    20 by an empty file (a copy cut short)."""
    folder.mkdir()
    for index, frame in enumerate(tiny_walkway.test[0].frames):
        cv2.imwrite(str(folder / f"{index:03d}.png"), frame)
    (folder / "010.png").write_bytes(b"this is not a PNG")
    (folder / "020.png").write_bytes(b"")
    return folder


def test_the_service_skips_broken_frames_and_goes_on(alocc_onnx, tiny_walkway, tmp_path, caplog):
    folder = folder_with_broken_frames(tiny_walkway, tmp_path / "door")
    frames_log = tmp_path / "frames.jsonl"
    config = ServiceConfig(model=str(alocc_onnx), cameras=[CameraConfig(str(folder), name="door")], events_log=str(tmp_path / "e.jsonl"),
                           frames_log=str(frames_log))
    service = Service(config)
    with caplog.at_level(logging.WARNING, logger="occ.source"):
        summary = service.run()
    assert summary.exit_code == 0 and summary.cameras[0].outcome == "finished", summary
    assert summary.cameras[0].frames == 28 and service.source.stats.unreadable == 2
    # every readable frame scored, at its place in the folder (10 frames/s): 1.0 s and 2.0 s are missing
    timestamps = [json.loads(line)["timestamp"] for line in frames_log.read_text().splitlines()]
    assert timestamps == [index / 10 for index in range(30) if index not in (10, 20)]
    # the first broken frame is logged, naming the file; the second, within the minute, only counted
    warnings = [record.getMessage() for record in caplog.records if "unreadable image" in record.getMessage()]
    assert warnings == [f"{folder / '010.png'}: unreadable image, skipped (1 so far)"]


def test_unreadable_frames_are_a_counter_per_camera_on_metrics(tiny_walkway, tmp_path):
    source = FolderSource(str(folder_with_broken_frames(tiny_walkway, tmp_path / "door")))
    metrics = ServiceMetrics("alocc.onnx")
    metrics.camera("door", source_stats=lambda: source.stats)
    assert sum(1 for _ in source) == 28
    body = metrics.render().decode()
    assert "# TYPE occ_frames_unreadable_total counter" in body
    assert 'occ_frames_unreadable_total{camera="door",model="alocc.onnx"} 2.0' in body


def test_a_folder_of_nothing_but_broken_images_is_one_line(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"\x00" * 10)
    source = FolderSource(str(folder)).check()  # the files are there; decoding them is the reader's job
    with pytest.raises(SourceError) as refused:
        list(source)
    assert str(refused.value) == f"{folder}: none of its 2 image files can be decoded"
    assert source.stats.unreadable == 2
