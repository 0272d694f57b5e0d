"""A pytest plugin that makes ``import torch`` fail, as on a camera box without it:

    PYTHONPATH=tests/runtime python -m pytest -p block_torch tests/runtime

Loaded with ``-p`` it is in place before any conftest or test module is imported, and the run
fails if torch got imported anyway.
"""
import sys


class _BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"import of {name} blocked: the runtime tests run as on a camera box, without torch")
        return None


sys.meta_path.insert(0, _BlockTorch())


def pytest_sessionfinish(session, exitstatus):
    if "torch" in sys.modules:
        session.exitstatus = 1
        sys.stderr.write("block_torch: torch was imported\n")
