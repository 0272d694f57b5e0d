"""What the benchmarks share about where and what ran (the machine and the commit), how the fold
benchmarks read their inputs (holdout-fold results, or their own earlier results), and how they pool
the runs' alarms."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Callable, Sequence

from occ.evaluation.metrics import poisson_rate_interval


def commit() -> str | None:
    """The git commit of the code that ran (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


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


class ResultError(ValueError):
    """A benchmark input that cannot be used, in one line that names its file."""


def fold_benchmark_arguments(prog: str, description: str, folds_help: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """The fold benchmarks' command line: the folds' (or earlier results') JSONs and ``--json OUT``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("folds", nargs="+", type=Path, help=f"{folds_help}, or earlier results of this benchmark (their runs are "
                        "taken as they are)")
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    return parser.parse_args(argv)


def gather_runs(paths: Sequence[Path], earlier_runs: Callable[[Path, Any], list | None],
                fold_run: Callable[[Path, dict], dict]) -> list[dict]:
    """Every run of ``paths``, in order: an earlier result's runs as they are (``earlier_runs``: None
    when the document is not one), else the fold measured (``fold_run``). A file that is not
    readable JSON, or that neither can use (they raise), raises :class:`ResultError`."""
    runs: list[dict] = []
    for path in paths:
        try:
            document = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ResultError(f"{path}: not a readable JSON file ({exc})") from None
        earlier = earlier_runs(path, document)
        runs += earlier if earlier is not None else [fold_run(path, document)]
    return runs


def pooled_alarms(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Runs pooled: their episodes over their normal footage, per hour with its exact 95 % Poisson
    interval, and the events caught. Each entry has ``episodes``, ``normal_hours``,
    ``events_caught`` and ``events``."""
    episodes, hours = sum(e["episodes"] for e in entries), sum(e["normal_hours"] for e in entries)
    low, high = poisson_rate_interval(episodes, hours)
    return {"episodes": episodes, "normal_minutes": hours * 60, "per_hour": episodes / hours, "per_hour_low": low, "per_hour_high": high,
            "events_caught": sum(e["events_caught"] for e in entries), "events": sum(e["events"] for e in entries)}
