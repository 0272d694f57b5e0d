"""What the machine was doing when a benchmark ran: CPU, GPU, clocks, library versions, Jetson power mode.

Everything is read from files and tools that exist on the machine; what cannot be read is
recorded as None, never guessed. Warnings say when numbers will not reproduce (unlocked clocks).
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _run(command: list[str], timeout: float = 5.0) -> str | None:
    if not shutil.which(command[0]):
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_state() -> dict[str, Any]:
    model = None
    info = _read("/proc/cpuinfo") or ""
    for line in info.splitlines():
        if line.lower().startswith(("model name", "hardware")):
            model = line.split(":", 1)[1].strip()
            break
    governor = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    freq = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    return {
        "model": model or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "governor": governor,
        "current_mhz": int(freq) / 1000 if freq and freq.isdigit() else None,
    }


def gpu_state() -> list[dict[str, Any]]:
    query = "name,compute_cap,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw"
    out = _run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"])
    if not out:
        return []
    gpus = []
    for line in out.splitlines():
        values = [v.strip() for v in line.split(",")]
        gpus.append(dict(zip(query.split(","), values)))
    return gpus


def jetson_state() -> dict[str, Any] | None:
    release = _read("/etc/nv_tegra_release")
    if release is None:
        return None
    mode = _run(["nvpmodel", "-q"])
    clocks = _run(["jetson_clocks", "--show"])
    return {
        "l4t_release": release.splitlines()[0],
        "nvpmodel": mode,
        "jetson_clocks_output": clocks,
        "clocks_locked": None if clocks is None else ("MaxFreq" in clocks and "CurrentFreq" in clocks
                                                        and _max_equals_current(clocks)),
    }


def _max_equals_current(text: str) -> bool:
    # jetson_clocks --show prints "... MinFreq=X MaxFreq=Y CurrentFreq=Z" per core; locked means Z == Y.
    for line in text.splitlines():
        fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
        if "MaxFreq" in fields and "CurrentFreq" in fields and fields["MaxFreq"] != fields["CurrentFreq"]:
            return False
    return True


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for module in ("numpy", "onnxruntime", "torch", "tensorrt", "cv2"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # absent or broken optional libraries are recorded as None
            versions[module] = None
    try:
        import onnxruntime

        versions["onnxruntime_providers"] = ",".join(onnxruntime.get_available_providers())
    except Exception:
        pass
    if versions.get("torch"):
        import torch

        versions["cuda (torch)"] = torch.version.cuda
        versions["cudnn (torch)"] = str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else None
    return versions


def device_state() -> dict[str, Any]:
    state = {"platform": platform.platform(), "cpu": cpu_state(), "gpus": gpu_state(), "jetson": jetson_state(),
             "versions": library_versions(), "warnings": []}
    cpu = state["cpu"]
    if cpu["governor"] not in (None, "performance"):
        state["warnings"].append(f"CPU governor is '{cpu['governor']}', not 'performance': timings may vary")
    jetson = state["jetson"]
    if jetson is not None and not jetson.get("clocks_locked"):
        state["warnings"].append("Jetson clocks are not locked: run `sudo jetson_clocks` for reproducible numbers")
    return state
