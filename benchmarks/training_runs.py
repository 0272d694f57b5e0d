"""What the accuracy benchmarks share about the models they train: ``--set`` overrides and the machine."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any


def config_overrides(items: list[str], config_class: type) -> dict[str, Any]:
    """``FIELD=VALUE`` strings to a dict of ``config_class`` fields, values read as JSON where they
    parse (numbers, lists, null), else kept as strings.

    Raises:
        ValueError: a field the config does not have.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        field, _, value = item.partition("=")
        try:
            overrides[field] = json.loads(value)
        except json.JSONDecodeError:
            overrides[field] = value
    unknown = sorted(set(overrides) - {f.name for f in fields(config_class)})
    if unknown:
        raise ValueError(f"--set: unknown {config_class.__name__} field(s) {unknown}")
    return overrides


def source_commit() -> str | None:
    """The git commit of the code that ran (``+dirty`` with uncommitted changes), None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


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
