"""What the accuracy benchmarks share about the models they train: the machine."""
from __future__ import annotations

import os
import platform


def machine() -> str:
    """Where the benchmark ran and trained, for its report: architecture, usable cores, the GPU if training used one."""
    text = f"{platform.machine()} CPU, {len(os.sched_getaffinity(0))} cores"
    model = cpu_model()
    if model:
        text += f" ({model})"
    try:
        import torch

        if torch.cuda.is_available() and os.environ.get("OCC_TRAIN_DEVICE", "auto") != "cpu":
            text += f", trained on {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def cpu_model() -> str | None:
    """The CPU's model name and its wide vector units from /proc/cpuinfo (Linux), e.g. ``Intel(R)
    Xeon(R) Processor; AVX-512, AMX``: the demo's digits and times move with them (oneDNN picks its
    kernels by them)."""
    try:
        with open("/proc/cpuinfo") as info:
            fields = dict(line.split(":", 1) for line in info.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return None
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    units = [name for flag, name in (("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag in flags]
    model = fields.get("model name")
    return "; ".join(filter(None, [model, ", ".join(units)])) or None
