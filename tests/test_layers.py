"""The layering written down in pyproject.toml ([tool.importlinter]) holds, checked as `make lint`
checks it: scripts/lint_imports.py lays the sources out as the installed package (see its
docstring for why plain `lint-imports` from a checkout cannot)."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("lint_imports", ROOT / "scripts" / "lint_imports.py")
lint_imports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lint_imports)


def test_import_linter_contracts_hold(tmp_path):
    site = lint_imports.installed_layout(tmp_path / "site")
    assert (site / "occ" / "runtime" / "detector" / "cpu.py").is_file()
    result = lint_imports.lint(site)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 5 kept, 0 broken." in result.stdout


def test_a_broken_contract_is_reported(tmp_path):
    """The check can fail: a runtime module importing the training code breaks the first contract."""
    site = lint_imports.installed_layout(tmp_path / "site")
    (site / "occ" / "runtime" / "leak.py").write_text("import occ.train.common\n")
    result = lint_imports.lint(site)
    assert result.returncode != 0
    assert "occ.runtime.leak -> occ.train.common" in result.stdout


def test_the_export_contract_is_not_vacuous(tmp_path):
    """Engine building may reach torch only through its one ignored import: an export module that
    imports the checkpoint export indirectly, through another module, breaks the contract."""
    site = lint_imports.installed_layout(tmp_path / "site")
    (site / "occ" / "export" / "relay.py").write_text("import occ.export.onnx_export\n")
    (site / "occ" / "export" / "engine.py").write_text((site / "occ" / "export" / "engine.py").read_text() + "\nimport occ.export.relay\n")
    result = lint_imports.lint(site)
    assert result.returncode != 0
    assert "occ.export.engine is not allowed to import torch" in result.stdout
