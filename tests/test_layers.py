"""The layering written down in pyproject.toml ([tool.importlinter]) holds.

import-linter reads a package from the file system as it installs; in this repository the
subpackages live in top-level folders (train/, export/, runtime/...) mapped by setuptools'
package-dir, so the check runs on a copy laid out as the installed package."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib  # novermin (3.11+; the fallback below is for 3.10)
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def installed_layout(target: Path) -> Path:
    """Copy the sources into ``target/occ/...`` as setuptools' package-dir maps them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config["package-dir"]
    for package in config["packages"]:
        parent = max((p for p in mapping if package == p or package.startswith(p + ".")), key=len)
        source = ROOT / mapping[parent] / Path(*package.split(".")[len(parent.split(".")):])
        destination = target / Path(*package.split("."))
        destination.mkdir(parents=True, exist_ok=True)
        for module in source.glob("*.py"):
            shutil.copy(module, destination / module.name)
    return target


def test_import_linter_contracts_hold(tmp_path):
    site = installed_layout(tmp_path / "site")
    assert (site / "occ" / "runtime" / "detector" / "cpu.py").is_file()
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert linter, "import-linter is part of the test extra"
    result = subprocess.run([linter, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in result.stdout


def test_a_broken_contract_is_reported(tmp_path):
    """The check can fail: a runtime module importing the training code breaks the first contract."""
    site = installed_layout(tmp_path / "site")
    (site / "occ" / "runtime" / "leak.py").write_text("import occ.train.common\n")
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    result = subprocess.run([linter, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tmp_path, capture_output=True,
                            text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "occ.runtime.leak -> occ.train.common" in result.stdout
