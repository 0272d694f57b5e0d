"""What the accuracy benchmarks share about the models they train: the machine."""
from __future__ import annotations

import os
import platform


def machine() -> str:
    """Where the benchmark ran and trained, for its report: architecture, usable cores, the GPU if training used one."""
    text = f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores"
    try:
        import torch

        if torch.cuda.is_available() and os.environ.get("OCC_TRAIN_DEVICE", "auto") != "cpu":
            text += f", trained on {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text
