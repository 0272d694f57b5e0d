import pytest
import torch

from occ.train.common import load_checkpoint
from occ.train.train_alocc import AloccConfig, build_scorer, train_alocc, video_data


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
    config = AloccConfig(height=48, width=72, patch_size=16, stride=16, base_width=8, depth=2, epochs=1, batch_size=8)
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
    config = AloccConfig(height=48, width=72, patch_size=16, stride=16, base_width=4, depth=2, epochs=1,
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


TINY_WALKWAY = "walkway:height=48,width=72,train_clips=2,test_clips=0,frames_per_clip=24,seed=3"
TRAIN_ARGS = {
    "alocc": ["--height", "48", "--width", "72", "--patch-size", "16", "--stride", "16", "--base-width", "8", "--depth", "2",
              "--batch-size", "32", "--epochs", "1", "--optimizer", "sgd", "--lr", "0.01"],
    "avid": ["--height", "32", "--width", "48", "--base-width", "4", "--depth", "2", "--batch-size", "8", "--epochs", "1",
             "--optimizer", "sgd", "--lr", "0.002", "--momentum", "0.9"],
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
    fresh = create_alocc(2, 16, 8, 2)[0] if method == "alocc" else create_avid(3, 4, 2)[0]
    first = next(iter(one.state_dicts))
    moved = max(float((v - one.state_dicts[first][k]).abs().max()) for k, v in fresh.state_dict().items() if v.is_floating_point())
    assert moved > 1e-3
