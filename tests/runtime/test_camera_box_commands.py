"""What a camera box runs without torch besides the runtime: the CLI, `occ calibrate` and engine builds
from ONNX (the README's promise). The runtime tier runs with torch unimportable (`block_torch`), so a
module here that needs torch fails its import."""
import importlib

import pytest


@pytest.mark.parametrize("module", ["occ.cli", "occ.evaluation.calibration", "occ.export.engine", "occ.export.fp16",
                                    "occ.export.int8", "occ.export.triton", "occ.export.deepstream"])
def test_imports_without_torch(module):
    importlib.import_module(module)
