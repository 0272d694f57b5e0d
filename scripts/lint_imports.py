"""The layering of pyproject.toml ([tool.importlinter]) checked on occ as it installs.

    python scripts/lint_imports.py      # what `make lint` and tests/test_layers.py run

Plain ``lint-imports`` from a checkout cannot see the package: import-linter reads a package's
folder, and here the subpackages live in top-level folders (train/, export/, runtime/...) that
setuptools' package-dir maps under ``occ``. So the sources are copied into a temporary folder laid
out as the installed package, and lint-imports runs there with this checkout's contracts.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def lint(site: Path) -> subprocess.CompletedProcess:
    """lint-imports (from this interpreter's environment) on the layout in ``site``."""
    linter = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if linter is None:
        raise SystemExit("lint-imports is missing: pip install -e '.[test]'")
    return subprocess.run([linter, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=site.parent, capture_output=True,
                          text=True, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="occ-lint.") as folder:
        result = lint(installed_layout(Path(folder) / "site"))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
