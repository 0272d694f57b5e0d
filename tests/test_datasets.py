import gzip
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from occ.evaluation.datasets import (
    DatasetError,
    WalkwayConfig,
    generate_walkway,
    load_mnist,
    load_ucsd,
    read_frame_ranges,
    read_idx,
    read_image_folder,
    read_video,
    write_ucsd_layout,
)
from occ.evaluation.datasets.spec import load_video_data
from occ.evaluation.datasets.video import write_video

from mnist_files import idx_bytes


# ---- synthetic walkway ----------------------------------------------------------------------
def test_walkway_is_deterministic_by_seed():
    config = WalkwayConfig(height=40, width=60, train_clips=1, test_clips=1, frames_per_clip=20, seed=3)
    a, b = generate_walkway(config), generate_walkway(config)
    np.testing.assert_array_equal(a.test[0].frames, b.test[0].frames)
    np.testing.assert_array_equal(a.test[0].masks, b.test[0].masks)
    config.seed = 4
    assert not np.array_equal(generate_walkway(config).train[0].frames, a.train[0].frames)


def test_walkway_ground_truth_is_exact(tiny_walkway):
    data = tiny_walkway
    assert all(not clip.labels.any() and clip.masks is None for clip in data.train)
    assert data.kinds == ["car", "fast", "against_flow"]
    for clip in data.test:
        assert clip.labels.any() and not clip.labels.all()  # normal frames before the episode
        np.testing.assert_array_equal(clip.labels, clip.masks.reshape(len(clip), -1).any(axis=1))
    car = data.test[0]
    t = int(np.argmax(car.masks.reshape(len(car), -1).sum(axis=1)))
    inside = car.frames[t][car.masks[t]].astype(float)
    # the car body is painted at 230 (windows 60) under ~2 grey levels of noise and 8 % drift
    assert np.mean(inside > 180) > 0.5
    assert car.masks[t].sum() > 100


def test_walkway_any_frame_size():
    data = generate_walkway(WalkwayConfig(height=31, width=97, train_clips=1, test_clips=1, frames_per_clip=12))
    assert data.train[0].frames.shape == (12, 31, 97)
    with pytest.raises(DatasetError, match="at least 24x24"):
        generate_walkway(WalkwayConfig(height=10, width=10))


def test_walkway_spec_options():
    data = load_video_data("walkway:height=32,width=48,train_clips=1,test_clips=1,frames_per_clip=12,seed=2")
    assert data.train[0].frames.shape == (12, 32, 48)
    with pytest.raises(DatasetError, match="bad walkway option"):
        load_video_data("walkway:colour=red")
    with pytest.raises(DatasetError, match="no such data folder"):
        load_video_data("/nonexistent/place")


# ---- UCSD layout ----------------------------------------------------------------------------
def test_ucsd_round_trip(tmp_path, tiny_walkway):
    root = write_ucsd_layout(tiny_walkway, tmp_path / "UCSDwalkway")
    assert (root / "Test" / "UCSDwalkway.m").is_file()
    assert sorted(p.name for p in (root / "Train").iterdir()) == ["Train001", "Train002"]
    test = load_ucsd(tmp_path, "test")  # the parent folder works too
    for original, loaded in zip(tiny_walkway.test, test):
        np.testing.assert_array_equal(original.frames, loaded.frames)
        np.testing.assert_array_equal(original.labels, loaded.labels)
        np.testing.assert_array_equal(original.masks, loaded.masks)
    train = load_ucsd(root, "train")
    assert all(not c.labels.any() for c in train)
    half = load_ucsd(root, "test", size=(24, 36), clips=["Test002"])
    assert [c.name for c in half] == ["Test002"] and half[0].frames.shape[1:] == (24, 36)
    assert half[0].masks.shape[1:] == (24, 36)


def test_clips_carry_their_frame_rate(tmp_path, tiny_walkway):
    assert {c.fps for c in tiny_walkway.train + tiny_walkway.test} == {10.0}  # the walkway's default
    assert load_video_data("walkway:height=32,width=48,train_clips=1,test_clips=1,frames_per_clip=12,fps=25").test[0].fps == 25.0
    with pytest.raises(DatasetError, match="fps must be a positive frame rate"):
        load_video_data("walkway:fps=0")
    # a written walkway keeps its rate in occ-dataset.json; one written before walkways had a rate reads as the default
    data = generate_walkway(WalkwayConfig(height=32, width=48, train_clips=1, test_clips=1, frames_per_clip=12, fps=12.5))
    root = write_ucsd_layout(data, tmp_path / "walkway")
    assert {c.fps for c in load_ucsd(root, "train") + load_ucsd(root, "test")} == {12.5}
    marker = json.loads((root / "occ-dataset.json").read_text())
    del marker["config"]["fps"]
    (root / "occ-dataset.json").write_text(json.dumps(marker))
    assert load_ucsd(root, "test")[0].fps == 10.0
    # UCSD Ped2 (10 frames/s) by its folder name or its .m file; any other folder: unknown
    (root / "occ-dataset.json").unlink()
    assert load_ucsd(root, "test")[0].fps is None
    (root / "Test" / "UCSDwalkway.m").rename(root / "Test" / "UCSDped2.m")
    assert load_ucsd(root, "test")[0].fps == 10.0
    (root / "Test" / "UCSDped2.m").rename(root / "Test" / "Mine.m")
    root.rename(tmp_path / "UCSDped2")
    assert load_ucsd(tmp_path, "test")[0].fps == 10.0


def test_ucsd_m_file_with_two_ranges(tmp_path):
    m = tmp_path / "UCSDped1.m"
    m.write_text(
        "TestVideoFile = {};\n"
        "TestVideoFile{end+1}.gt_frame = [61:180];\n"
        "TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n"
    )
    assert read_frame_ranges(m) == [[(61, 180)], [(5, 90), (140, 200)]]
    m.write_text("TestVideoFile{end+1}.gt_frame = [9:3];\n")
    with pytest.raises(DatasetError, match="malformed"):
        read_frame_ranges(m)


def _small_layout(tmp_path):
    data = generate_walkway(WalkwayConfig(height=32, width=48, train_clips=1, test_clips=2, frames_per_clip=12))
    return write_ucsd_layout(data, tmp_path / "ds")


def test_ucsd_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_ucsd(tmp_path / "missing")
    root = _small_layout(tmp_path)
    # a frame that is not an image
    (root / "Test" / "Test001" / "005.tif").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"005\.tif: unreadable image"):
        load_ucsd(root, "test")
    root = _small_layout(tmp_path)
    # a mask missing
    os.remove(root / "Test" / "Test002_gt" / "003.bmp")
    with pytest.raises(DatasetError, match="11 masks for 12 frames"):
        load_ucsd(root, "test")
    root = _small_layout(tmp_path)
    # .m entries that do not match the clips
    m = root / "Test" / "UCSDwalkway.m"
    m.write_text(m.read_text().splitlines()[1] + "\n")
    with pytest.raises(DatasetError, match="1 gt_frame entries for 2 test clips"):
        load_ucsd(root, "test")


def test_ucsd_accepts_jpg_frames(tmp_path):
    folder = tmp_path / "Ped" / "Train" / "Train001"
    folder.mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i + 1:03d}.jpg"), np.full((16, 16, 3), 100, np.uint8))
    clips = load_ucsd(tmp_path / "Ped", "train")
    assert clips[0].frames.shape == (3, 16, 16) and abs(int(clips[0].frames[0, 0, 0]) - 100) <= 2


# ---- MNIST IDX ------------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_mnist_idx_reader(tmp_path, rng, compress):
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels)):
        payload = idx_bytes(array)
        if compress:
            (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (tmp_path / stem).write_bytes(payload)
    got_images, got_labels = load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    with pytest.raises(DatasetError, match="no train-images"):
        load_mnist(tmp_path, "train")


def test_mnist_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="bad magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8))[:-1])
    with pytest.raises(DatasetError, match="payload is 3 bytes, header says 4"):
        read_idx(short)


# ---- video files and image folders ----------------------------------------------------------
def test_video_file_round_trip(tmp_path, tiny_walkway):
    frames = tiny_walkway.test[0].frames[:10]
    path = write_video(tmp_path / "clip.avi", frames)
    decoded = np.stack(list(read_video(path)))
    assert decoded.shape == frames.shape
    # MJPG is lossy: a few grey levels on average
    assert np.abs(decoded.astype(float) - frames).mean() < 4
    with pytest.raises(DatasetError, match="not found"):
        list(read_video(tmp_path / "none.avi"))
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(DatasetError, match="junk.avi"):
        list(read_video(tmp_path / "junk.avi"))


def test_image_folder(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8), i * 10, np.uint8))
    frames = list(read_image_folder(tmp_path))
    assert [int(f[0, 0]) for f in frames] == [0, 10, 20]
    cv2.imwrite(str(tmp_path / "3.png"), np.zeros((9, 8), np.uint8))
    with pytest.raises(DatasetError, match="3.png: size"):
        list(read_image_folder(tmp_path))


def test_data_cli_generate_and_info(tmp_path):
    from typer.testing import CliRunner

    from occ.cli import app

    runner = CliRunner()
    out = tmp_path / "walk"
    args = ["data", "generate", str(out), "--height", "32", "--width", "48", "--train-clips", "1", "--test-clips", "1",
            "--frames-per-clip", "12"]
    result = runner.invoke(app, [*args, "--json", "-"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [c["anomaly"] for c in summary["clips"]] == ["", "car"] and summary["clips"][1]["frames"] == 12
    info = runner.invoke(app, ["data", "info", str(out), "--json", str(tmp_path / "info.json"), "--quiet"])
    assert info.exit_code == 0 and info.output == ""
    assert json.loads((tmp_path / "info.json").read_text())["clips"][1]["anomalous_frames"] > 0
    info = runner.invoke(app, ["data", "info", str(tmp_path / "nothing")])
    assert info.exit_code == 2 and info.output.startswith("error: ") and "nothing: no such data folder" in info.output
    # an earlier occ data set is replaced; a folder of someone else's files is never touched
    again = runner.invoke(app, [*args, "--seed", "1", "--quiet"])
    assert again.exit_code == 0, again.output
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    refused = runner.invoke(app, ["data", "generate", str(precious), "--height", "32", "--width", "48"])
    assert refused.exit_code == 2 and "not empty and not an occ data set; refusing to replace it" in refused.output
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    refused = runner.invoke(app, ["data", "generate", ".", "--height", "32", "--width", "48"])
    assert refused.exit_code == 2 and "refusing to replace it" in refused.output


def test_a_full_disk_never_publishes_a_truncated_data_set(tmp_path):
    """Writing under a file-size limit (a real fault: the kernel refuses the bytes) leaves nothing behind."""
    import resource
    import signal

    def limit_file_size() -> None:  # in the child: writes past 2,000 bytes fail (EFBIG) instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    result = subprocess.run([sys.executable, "-m", "occ", "data", "generate", str(tmp_path / "walk"), "--height", "64", "--width", "96"],
                            capture_output=True, text=True, preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-1000:]
    assert "could not write the image" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "walk").exists() and list(tmp_path.iterdir()) == []


def _labelled_digits(count: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Digits whose pixels encode their label (label × 20), so ground truth is checkable cell by cell."""
    from occ.evaluation.datasets.irmnist import CELL

    labels = np.arange(count) % 10
    return np.repeat(labels[:, None, None], CELL * CELL, axis=1).reshape(count, CELL, CELL).astype(np.uint8) * 20, labels


def _cell_labels(grid_image: np.ndarray, grid: int) -> np.ndarray:
    from occ.evaluation.datasets.irmnist import CELL

    return grid_image.reshape(grid, CELL, grid, CELL)[:, 0, :, 0] // 20


def test_irmnist_builder_ground_truth(rng):
    from occ.evaluation.datasets.irmnist import CELL, build_irmnist

    images, labels = _labelled_digits()
    data = build_irmnist(images, labels, images, labels, n_train=6, n_test=10, grid=5, seed=1)
    assert data.train.shape == (6, 5 * CELL, 5 * CELL)
    assert all((_cell_labels(image, 5) != 3).all() for image in data.train)  # no 3 in training
    for image, truth in zip(data.test, data.test_cells):
        np.testing.assert_array_equal(_cell_labels(image, 5) == 3, truth)
    assert data.test_labels.tolist() == [False, True] * 5
    assert all(1 <= t.sum() <= 5 for t in data.test_cells[1::2])
    # evaluation only: no training grids, the same test grids
    test_only = build_irmnist(images, labels, images, labels, n_train=6, n_test=10, grid=5, seed=1, with_train=False)
    assert len(test_only.train) == 0
    assert np.array_equal(test_only.test, data.test) and np.array_equal(test_only.test_cells, data.test_cells)


def test_irmnist_natural_positives_draw_every_cell_from_all_digits():
    from occ.evaluation.datasets.common import DatasetError
    from occ.evaluation.datasets.irmnist import build_irmnist

    images, labels = _labelled_digits()
    few = build_irmnist(images, labels, images, labels, n_train=6, n_test=40, grid=11, seed=1)
    natural = build_irmnist(images, labels, images, labels, n_train=6, n_test=40, grid=11, positives="natural", seed=1)
    np.testing.assert_array_equal(few.train, natural.train)  # one model serves both constructions
    for image, truth in zip(natural.test, natural.test_cells):
        np.testing.assert_array_equal(_cell_labels(image, 11) == 3, truth)
    assert natural.test_labels.tolist() == [False, True] * 20
    # every digit at its rate of one in ten: about 12 threes per positive grid, far more than "few" allows
    threes = natural.test_cells[1::2].sum(axis=(1, 2))
    assert 9 <= threes.mean() <= 15 and threes.max() > 5
    positive_digits = np.concatenate([_cell_labels(image, 11).ravel() for image in natural.test[1::2]])
    assert set(positive_digits.tolist()) == set(range(10))
    with pytest.raises(DatasetError, match="unknown IR-MNIST positives 'many'"):
        build_irmnist(images, labels, images, labels, n_train=1, n_test=2, positives="many")
