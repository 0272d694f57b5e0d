"""tests/runtime passes where torch cannot be imported, as on a camera box (what `make test-runtime`
and `make check-aarch64` run)."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_runtime_tier_passes_with_torch_blocked(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "runtime")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "block_torch", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"),
                           str(ROOT / "tests" / "runtime")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
    assert "torch was imported" not in done.stderr


def test_the_blocker_blocks(tmp_path):
    """The check can fail: a runtime test that imports torch fails under the blocker."""
    (tmp_path / "test_leak.py").write_text("def test_leak():\n    import torch  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "runtime")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "block_torch", "-p", "no:cacheprovider", "-q", str(tmp_path / "test_leak.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "import of torch blocked" in done.stdout, done.stdout[-2000:]


def test_the_committed_models_are_what_the_training_code_makes_today(alocc_onnx, avid_onnx):
    """tests/data/ holds what scripts/make_test_models.py makes: the trained fixtures here use the
    same settings, and training is deterministic on one CPU, so weights and thresholds agree. Across
    CPUs the float sums run in another order (vector width, thread count), which moves a weight by a
    few 1e-6 after training; a change to the training or export moves them by orders more. When this
    fails, the training or export changed: run the script again."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from occ.runtime.manifest import read_manifest

    for trained in (alocc_onnx, avid_onnx):
        committed = ROOT / "tests" / "data" / trained.name
        weights = {init.name: numpy_helper.to_array(init) for init in onnx.load(str(committed)).graph.initializer}
        fresh = {init.name: numpy_helper.to_array(init) for init in onnx.load(str(trained)).graph.initializer}
        assert weights.keys() == fresh.keys(), trained.name
        for name, value in fresh.items():
            np.testing.assert_allclose(weights[name], value, rtol=1e-3, atol=1e-4, err_msg=f"{trained.name}: {name}")
        ours, theirs = read_manifest(committed), read_manifest(trained)
        assert {k: t.value for k, t in ours.thresholds.items()} == pytest.approx({k: t.value for k, t in theirs.thresholds.items()}, rel=1e-3)
        assert ours.input == theirs.input
        ours_leaves, theirs_leaves = _leaves(dataclasses.asdict(ours.scoring)), _leaves(dataclasses.asdict(theirs.scoring))
        numbers = {path for path, leaf in theirs_leaves.items() if isinstance(leaf, float)}
        assert {p: v for p, v in ours_leaves.items() if p not in numbers} == {p: v for p, v in theirs_leaves.items() if p not in numbers}
        assert {p: ours_leaves.get(p) for p in numbers} == pytest.approx({p: theirs_leaves[p] for p in numbers}, rel=1e-3, abs=1e-6)


def _leaves(tree, prefix=""):
    """A nested dict or list as one flat {path: leaf} dict, for approximate comparison."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else None
    if items is None:
        return {prefix: tree}
    return {path: leaf for key, value in items for path, leaf in _leaves(value, f"{prefix}/{key}").items()}
