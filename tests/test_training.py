import pytest
import torch

from occ.train.common import load_checkpoint
from occ.train.train_alocc import alocc_config, build_scorer, train_alocc, video_data


def _quiet():
    import io

    from rich.console import Console

    return Console(file=io.StringIO())


def test_checkpoint_opens_with_weights_only(alocc_checkpoint):
    payload = torch.load(alocc_checkpoint, weights_only=True)
    assert payload["format"] == "occ-checkpoint-1"
    checkpoint = load_checkpoint(alocc_checkpoint)
    assert checkpoint.manifest.method == "alocc"
    assert "tau" in checkpoint.manifest.thresholds
    scorer = build_scorer(checkpoint.architecture, checkpoint.state_dicts)
    x = torch.from_numpy(checkpoint.state_dicts["verification"]["inputs"].numpy()[0])
    assert scorer(x)[0].shape == (x.shape[0],)


def test_one_alocc_epoch_lowers_reconstruction_error(tiny_walkway, tmp_path):
    config = alocc_config("video", height=48, width=72, patch_size=16, stride=16, base_width=8, depth=2, epochs=1, batch_size=8)
    data = video_data(tiny_walkway.train, config, "tiny")
    train_alocc(data, config, tmp_path / "a.pt", _quiet())
    trained = build_scorer(**_parts(tmp_path / "a.pt"))
    from occ.train.alocc import create_alocc

    torch.manual_seed(0)
    r0, _ = create_alocc(2, 16, 8, 2)
    x = torch.from_numpy(data.val_frames.reshape(-1, 2, 16, 16)[:256])
    with torch.no_grad():
        before = float(torch.mean((r0.eval()(x) - x) ** 2))
        after = float(torch.mean((trained.reconstructor(x) - x) ** 2))
    assert after < 0.7 * before


def _parts(path):
    checkpoint = load_checkpoint(path)
    return {"architecture": checkpoint.architecture, "state_dicts": checkpoint.state_dicts}


def test_alocc_training_is_deterministic(tiny_walkway, tmp_path):
    config = alocc_config("video", height=48, width=72, patch_size=16, stride=16, base_width=4, depth=2, epochs=1,
                          batch_size=64, max_train_patches=400)
    data = video_data(tiny_walkway.train, config, "tiny")
    a = train_alocc(data, config, tmp_path / "a.pt", _quiet())
    b = train_alocc(data, config, tmp_path / "b.pt", _quiet())
    wa, wb = load_checkpoint(tmp_path / "a.pt").state_dicts, load_checkpoint(tmp_path / "b.pt").state_dicts
    for name in wa["discriminator"]:
        assert torch.equal(wa["discriminator"][name], wb["discriminator"][name])
    assert a.threshold("tau") == b.threshold("tau")


def test_avid_step_lowers_losses(avid_checkpoint):
    history = load_checkpoint(avid_checkpoint).history
    assert history[0]["val_reconstruction"] < 0.2  # per pixel, normalized units: I reconstructs
    from occ.train.avid import create_avid
    from occ.train.common import squared_error

    torch.manual_seed(0)
    inpainter, _ = create_avid(3, 4, 2)
    opt = torch.optim.Adam(inpainter.parameters(), 1e-3)
    x = torch.randn(4, 3, 16, 16).clamp(-1, 1)
    losses = []
    for _ in range(5):
        loss = squared_error(inpainter(x + 0.4 * torch.randn_like(x)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# 15 frames a clip: 12 to train on after its validation tail, 24 rows in whole batches of 8 (a partial
# last batch adds steps whose rounding differs between one process and two)
TINY_WALKWAY = "walkway:height=48,width=72,train_clips=2,test_clips=0,frames_per_clip=15,seed=3"
TRAIN_ARGS = {
    "alocc": ["--height", "48", "--width", "72", "--patch-size", "16", "--stride", "16", "--base-width", "8",
              "--batch-size", "32", "--epochs", "1"],
    "avid": ["--height", "32", "--width", "48", "--base-width", "4", "--batch-size", "8", "--epochs", "1"],
}


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_two_gloo_processes_train_like_one_process_on_the_same_global_batch(method, tmp_path):
    """`occ train --devices 2` (torchrun, gloo, synchronised batch norm, averaged gradients) ends
    with the weights of one process on the same global batches, up to float32 summation order:
    tolerance 1e-4 absolute on every weight after one epoch of SGD."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same thread count as torchrun's workers
    for name, devices in (("one", "1"), ("two", "2")):
        run = subprocess.run([sys.executable, "-m", "occ", "train", method, "--data", TINY_WALKWAY, "--out",
                              str(tmp_path / f"{name}.pt"), "--devices", devices, *TRAIN_ARGS[method]],
                             capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    one, two = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    assert one.state_dicts.keys() == two.state_dicts.keys()
    worst = 0.0
    for network, weights in one.state_dicts.items():
        assert weights.keys() == two.state_dicts[network].keys()
        for key, value in weights.items():
            if value.is_floating_point():
                worst = max(worst, float((value - two.state_dicts[network][key]).abs().max()))
            else:
                assert torch.equal(value, two.state_dicts[network][key]), key  # batch counters
    print(f"{method}: largest weight difference {worst:.2e}")
    assert worst <= 1e-4, worst
    # the weights moved: the comparison is not between two untouched initialisations
    from occ.train.alocc import create_alocc
    from occ.train.avid import create_avid

    torch.manual_seed(0)
    fresh = create_alocc(2, 16, 8, 3)[0] if method == "alocc" else create_avid(3, 4, 3)[0]
    first = next(iter(one.state_dicts))
    moved = max(float((v - one.state_dicts[first][k]).abs().max()) for k, v in fresh.state_dict().items() if v.is_floating_point())
    assert moved > 1e-3


def _square_clip(name, speed, frames=40, height=32, width=64, seed=0):
    """Gray frames of bright squares crossing a textured static scene at ``speed`` pixels per frame."""
    import numpy as np

    from occ.evaluation.datasets.common import Clip

    rng = np.random.default_rng(seed)
    background = rng.uniform(60, 90, (height, width)).astype(np.float32)
    video = np.repeat(background[None], frames, axis=0)
    for row in (4, 18):
        start = rng.integers(0, width)
        for t in range(frames):
            left = int(start + speed * t) % (width - 8)
            video[t, row : row + 8, left : left + 8] = 210.0
    return Clip(name, video.astype(np.uint8), np.zeros(frames, bool))


def test_alocc_synthetic_fast_patches_teach_it_what_fast_motion_is(tmp_path):
    """Normal squares move 1 px per frame, the test square 4: plain training never saw motion of
    another speed, training with synthetic 'fast' patches made from the normal clips did."""
    import numpy as np

    from occ.evaluation.metrics import roc_auc

    clips = [_square_clip(f"Train{i}", speed=1, seed=i) for i in range(4)]
    scores = {}
    for weight in (0.0, 1.0):
        config = alocc_config("video", height=32, width=64, patch_size=16, stride=8, base_width=8, depth=2, epochs=3, batch_size=32,
                              irregular_weight=weight, irregular_patches=2000, d_weight=1.0, seed=0)
        train_alocc(video_data(clips, config, "squares"), config, tmp_path / f"w{weight}.pt", _quiet())
        scorer = build_scorer(**_parts(tmp_path / f"w{weight}.pt"))
        # moving-square patches at the normal speed and at 4×, from clips never trained on
        test = {speed: video_data([_square_clip("T", speed, seed=9)] * 2, config, "t").val_frames for speed in (1, 4)}
        moving = {}
        for speed, frames in test.items():
            patches = frames.reshape(-1, *frames.shape[2:])
            patches = patches[np.abs(patches[:, 1]).mean(axis=(1, 2)) > 0.05]  # patches the square moves in
            with torch.no_grad():
                moving[speed] = -scorer.discriminator(torch.from_numpy(patches)).numpy()
        labels = np.r_[np.zeros(len(moving[1]), bool), np.ones(len(moving[4]), bool)]
        scores[weight] = roc_auc(labels, np.r_[moving[1], moving[4]])
    assert scores[1.0] > 0.9 and scores[1.0] > scores[0.0] + 0.1, scores


def test_recipes_are_named_and_checked_against_the_data():
    from occ.train.train_avid import AVID_RECIPES, avid_config

    assert set(AVID_RECIPES) == {"video", "images", "paper"}
    images = avid_config("images")
    assert (images.height, images.depth, images.frame_score, images.region_memory) == (176, 4, "evidence", 60000)
    assert avid_config("paper").optimizer == "sgd" and avid_config("paper").irregular_fraction == 0
    assert alocc_config("paper").score == "paper" and alocc_config("images").bottleneck == 16
    # one concept, one name in both methods' configurations (and their manifests)
    from dataclasses import fields

    from occ.train.train_alocc import AloccConfig
    from occ.train.train_avid import AvidConfig

    shared = {f.name for f in fields(AloccConfig)} & {f.name for f in fields(AvidConfig)}
    assert {"recipe", "noise_sigma", "lam", "epochs", "batch_size", "base_width", "depth", "false_alarm_rate", "val_fraction",
            "seed"} <= shared
    with pytest.raises(ValueError, match="unknown AVID recipe 'fancy'; recipes: video, images, paper"):
        avid_config("fancy")
    with pytest.raises(ValueError, match=r"unknown AVID setting\(s\) \['gate'\]"):
        avid_config("video", gate="soft")


def test_a_recipe_for_the_wrong_kind_of_data_is_one_line(tmp_path):
    """The images recipe on video, or the video recipe on MNIST, is refused before any training."""
    from typer.testing import CliRunner

    from occ.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "avid", "--data", TINY_WALKWAY, "--recipe", "images", "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 2 and "the AVID recipe 'images' is for images; this data is video: use --recipe video" in result.output
    result = runner.invoke(app, ["train", "avid", "--data", TINY_WALKWAY, "--region-memory", "100", "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 2 and "the region memory is for single images" in result.output
    result = runner.invoke(app, ["train", "alocc", "--data", f"mnist:{tmp_path}", "--recipe", "video", "--out", str(tmp_path / "a.pt")])
    assert result.exit_code == 2 and "the ALOCC recipe 'video' is for video" in result.output
    result = runner.invoke(app, ["train", "alocc", "--data", TINY_WALKWAY, "--out", str(tmp_path / "missing" / "a.pt")])
    assert result.exit_code == 2 and "does not exist or is not writable" in result.output
    assert not any(tmp_path.iterdir())


# A child process: OpenMP reads how its workers wait when torch is imported, so each way needs its own process.
_TRAIN_IN_CHILD = """
import hashlib, io, os
from occ.train.openmp import let_idle_workers_spin_briefly
let_idle_workers_spin_briefly()
import torch
from rich.console import Console
from occ.evaluation.datasets import WalkwayConfig, generate_walkway
from occ.train.common import load_checkpoint
from occ.train.train_alocc import alocc_config, train_alocc, video_data
torch.set_num_threads(2)
walkway = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=2, test_clips=1, frames_per_clip=30, seed=7))
config = alocc_config("video", height=48, width=72, patch_size=16, stride=16, base_width=4, depth=2, epochs=1, batch_size=64,
                      max_train_patches=400)
train_alocc(video_data(walkway.train, config, "tiny"), config, "model.pt", Console(file=io.StringIO()))
digest = hashlib.sha256()
for network, weights in sorted(load_checkpoint("model.pt").state_dicts.items()):
    for name, tensor in sorted(weights.items()):
        digest.update(tensor.numpy().tobytes())
print(os.environ.get("OMP_WAIT_POLICY", "-"), os.environ.get("GOMP_SPINCOUNT", "-"), digest.hexdigest())
"""


def test_briefly_spinning_openmp_workers_train_the_same_weights(tmp_path):
    import os
    import subprocess
    import sys

    def train(**wait: str) -> list[str]:
        env = {name: value for name, value in os.environ.items() if name not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        done = subprocess.run([sys.executable, "-c", _TRAIN_IN_CHILD], cwd=tmp_path, env={**env, **wait}, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.split()

    brief, spinning = train(), train(OMP_WAIT_POLICY="ACTIVE")
    assert brief[:2] == ["-", "2000"] and spinning[:2] == ["ACTIVE", "-"]  # a policy already set is kept
    assert brief[2] == spinning[2]


def test_the_video_recipes_threshold_rules():
    from occ.train.train_alocc import alocc_config
    from occ.train.train_avid import avid_config, check_config

    assert alocc_config("video").false_alarm_rate == 0.0  # τ at the largest held-out normal frame
    assert alocc_config("images").false_alarm_rate == alocc_config("paper").false_alarm_rate == 0.01
    # AVID's α at the largest held-out normal frame missed events on Ped2's folds (docs/accuracy-log.md, 2026-12-07)
    assert avid_config("video").false_alarm_rate == avid_config("images").false_alarm_rate == avid_config("paper").false_alarm_rate == 0.01
    check_config(avid_config("paper", false_alarm_rate=0.0), "video")  # the binary gate with the peak score: α at the largest
    for refused in (avid_config("images", false_alarm_rate=0.0), avid_config("video", frame_score="evidence", false_alarm_rate=0.0)):
        with pytest.raises(ValueError, match="a false-alarm rate of 0 needs the binary gate and the peak frame score"):
            check_config(refused, "images" if refused.region_memory else "video")


def test_training_stores_the_episode_rule(avid_onnx):
    from occ.runtime.manifest import EpisodeRule, read_manifest

    assert read_manifest(avid_onnx).episodes == EpisodeRule() and (EpisodeRule().k, EpisodeRule().n) == (4, 4)
