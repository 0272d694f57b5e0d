"""The source registry: one parse of a source string, one list of accepted forms, one place to add a kind."""
from typing import Iterator

import cv2
import numpy as np
import pytest

from occ.runtime.sources import (ACCEPTED_FORMS, REGISTRY, SOURCE_FORMS, FileSource, FolderSource, Frame, LiveSource, Source, SourceError,
                                 SourceKind, SourceSpec, is_live, open_source, register_source, resolve_source, unregister_source)


def test_each_spec_is_parsed_once_into_its_kind_and_the_opencv_backend_that_reads_it(tmp_path):
    video, folder = tmp_path / "clip.avi", tmp_path / "frames"
    video.write_bytes(b"")  # resolve_source looks at the file system only; opening it is FileSource's job
    folder.mkdir()
    expected = {"csi://0": ("csi", cv2.CAP_GSTREAMER), "v4l2:///dev/video3": ("v4l2", cv2.CAP_V4L2), "/dev/video3": ("v4l2", cv2.CAP_V4L2),
                "rtsp://10.0.0.5/main": ("network", cv2.CAP_FFMPEG), "https://cam/mjpg": ("network", cv2.CAP_FFMPEG),
                "videotestsrc ! appsink": ("gstreamer", cv2.CAP_GSTREAMER)}
    for spec, (kind, api) in expected.items():
        resolved = resolve_source(spec)
        assert resolved.kind == kind and resolved.live and is_live(spec), spec
        source = open_source(spec)  # a live source connects in its reader thread, at the first frame
        assert isinstance(source, LiveSource) and source.api == api and source.spec == resolved.target, spec
    assert resolve_source(str(video)) == SourceSpec("file", str(video))
    assert resolve_source(f"file://{folder}") == SourceSpec("folder", str(folder))
    assert not is_live(str(video)) and not is_live(str(folder)) and not resolve_source(str(folder)).live


def test_the_accepted_forms_are_listed_once_each_recordings_first():
    assert ACCEPTED_FORMS == ("a video file or image folder (PATH or file://PATH)", "csi://N (Jetson CSI camera)",
                              "v4l2:///dev/videoN or /dev/videoN", "rtsp://, rtsps://, http://, https:// URLs",
                              "a GStreamer pipeline (... ! appsink)")
    assert SOURCE_FORMS == "; ".join(ACCEPTED_FORMS)
    with pytest.raises(SourceError) as refused:
        resolve_source("ftp://host/clip.avi")
    assert str(refused.value) == f"ftp://host/clip.avi: unknown scheme 'ftp://'; sources are: {SOURCE_FORMS}"


class ColorSource(Source):
    """``color://N``: N uniform gray frames, brightness 0, 10, 20, ..."""

    def __iter__(self) -> Iterator[Frame]:
        for index in range(int(self.spec)):
            self.stats.frames += 1
            yield Frame(np.full((8, 8), 10 * index, np.uint8), index, index / 10)


def _color_count(spec: str) -> str:
    count = spec[len("color://"):]
    if not count.isdigit():
        raise SourceError(f"{spec}: a color source is color://N")
    return count


@pytest.fixture
def color_kind():
    register_source(SourceKind("color", "color://N (N gray frames)", lambda spec: spec.startswith("color://"), _color_count,
                               lambda target, options: ColorSource(target), live=False))
    yield REGISTRY["color"]
    unregister_source("color")


def test_a_kind_added_in_one_place_is_parsed_opened_and_listed_like_the_built_in_ones(color_kind):
    """Adding a source kind: its Source class, one SourceKind line, its test. In the tree that is three
    files (a module in runtime/sources/, runtime/sources/__init__.py's KINDS, a test); here all three
    are this file, and nothing else in occ changed."""
    assert resolve_source("color://3") == SourceSpec("color", "3") and not is_live("color://3")
    with open_source("color://3") as source:
        assert [int(frame.image[0, 0]) for frame in source] == [0, 10, 20]
    with pytest.raises(SourceError, match="a color source is color://N"):
        open_source("color://many")
    with pytest.raises(SourceError) as refused:
        open_source("gopher://x")
    assert "color://N (N gray frames)" in str(refused.value) and "\n" not in str(refused.value)


def test_recordings_open_as_their_own_sources(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), np.zeros((4, 4), np.uint8))
    assert isinstance(open_source(str(folder)), FolderSource)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (16, 16), False)
    writer.write(np.zeros((16, 16), np.uint8))
    writer.release()
    assert isinstance(open_source(f"file://{video}"), FileSource)
