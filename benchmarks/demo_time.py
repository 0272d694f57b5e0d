"""``python -m occ.benchmarks.demo_time OUT.json [STEPS] [ROUNDS] [BUSY]``: the demo's training steps with
PyTorch's idle OpenMP workers spinning for GNU OpenMP's default 300,000 PAUSEs, for fewer, and
sleeping at once (:mod:`occ.train.openmp` says which the demo and ``occ train`` ask for), on an
otherwise idle CPU or beside BUSY processes that each keep a core busy (a shared machine).

The demo's data and configurations (walkway seed 0; ALOCC 60×90, AVID 64×96) are prepared once;
then, per round, method and way of waiting, a fresh process (OpenMP reads how its workers wait when
torch is imported) builds the method's networks, runs one step to create oneDNN's kernels and times
the next STEPS steps on the demo's 2 threads. Each process reports the digest of its weights:
the two ways must train the same bits. The ways alternate within a round, so that other work on a
shared CPU weighs on both; compare the ratios, not the seconds, between machines.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import pickle
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from occ.runtime.files import write_atomic

from occ.train.openmp import WAIT_VARIABLES

from .training_runs import commit, machine

SCHEMA = "occ-bench-demo-time/1"
METHODS = ("alocc", "avid")
WAITS = {"spinning": {}, **{f"spinning {count:,} PAUSEs": {"GOMP_SPINCOUNT": str(count)} for count in (10000, 2000, 500)},
         "sleeping": {"OMP_WAIT_POLICY": "PASSIVE"}}


def demo_configs() -> dict:
    from occ.train.train_alocc import alocc_config
    from occ.train.train_avid import avid_config

    return {"alocc": alocc_config("video", epochs=4, seed=0), "avid": avid_config("video", epochs=12, seed=0)}


def prepare(folder: Path) -> dict[str, float]:
    """The demo's data for both methods, pickled into ``folder``; seconds of each stage."""
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway, write_ucsd_layout
    from occ.evaluation.datasets.spec import load_video_data
    from occ.train.train_alocc import video_data as alocc_video
    from occ.train.train_avid import video_data as avid_video

    seconds = {}
    started = time.perf_counter()
    data_dir = write_ucsd_layout(generate_walkway(WalkwayConfig(seed=0)), folder / "walkway")
    video = load_video_data(str(data_dir))
    seconds["walkway"] = time.perf_counter() - started
    configs = demo_configs()
    for method, prepare_data in (("alocc", alocc_video), ("avid", avid_video)):
        started = time.perf_counter()
        data = prepare_data(video.train, configs[method], video.description, {"kind": "video", "spec": str(data_dir)})
        seconds[f"{method} data"] = time.perf_counter() - started
        (folder / f"{method}.pkl").write_bytes(pickle.dumps(data))
    return {name: round(value, 2) for name, value in seconds.items()}


def time_steps(folder: Path, method: str, steps: int) -> dict:
    """In this process: STEPS training steps of ``method`` after one warm-up step."""
    import torch
    from rich.console import Console

    from occ.demo import THREADS
    from occ.train.common import batches
    from occ.train.train_alocc import AloccTraining
    from occ.train.train_avid import AvidTraining

    torch.set_num_threads(THREADS)
    config, data = demo_configs()[method], pickle.loads((folder / f"{method}.pkl").read_bytes())
    training = (AloccTraining if method == "alocc" else AvidTraining)(config, data, Console(file=io.StringIO()))
    for network in training.networks.values():
        network.train()
    order = batches(len(data.train), config.batch_size, training.generator)
    training.step(order[0])
    wall, cpu = time.perf_counter(), time.process_time()
    for index in order[1 : steps + 1]:
        training.step(index)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    digest = hashlib.sha256()
    for name in sorted(training.networks):
        for tensor in training.networks[name].state_dict().values():
            digest.update(tensor.detach().contiguous().numpy().tobytes())
    return {"steps": min(steps, len(order) - 1), "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "weights": digest.hexdigest()[:16]}


def run(steps: int = 5, rounds: int = 2, busy: int = 0) -> dict:
    base_env = {name: value for name, value in os.environ.items() if name not in WAIT_VARIABLES}
    runs: dict[str, dict[str, list[dict]]] = {method: {wait: [] for wait in WAITS} for method in METHODS}
    with tempfile.TemporaryDirectory() as folder:
        prepared = prepare(Path(folder))
        busy_processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            for _ in range(rounds):
                for method in METHODS:
                    for wait, variables in WAITS.items():
                        done = subprocess.run([sys.executable, "-m", "occ.benchmarks.demo_time", "--steps-in-this-process", folder,
                                               method, str(steps)], env={**base_env, **variables}, capture_output=True, text=True)
                        if done.returncode != 0:
                            raise RuntimeError(f"{method} ({wait}) failed: {done.stderr.strip()[-500:]}")
                        runs[method][wait].append(json.loads(done.stdout.strip().splitlines()[-1]))
        finally:
            for process in busy_processes:
                process.kill()
                process.wait()
    methods = {}
    for method, by_wait in runs.items():
        median = {wait: statistics.median(r["seconds"] for r in rows) for wait, rows in by_wait.items()}
        methods[method] = {"runs": by_wait, "median_seconds": median,
                           "over_sleeping": {wait: round(median[wait] / median["sleeping"], 2) for wait in WAITS},
                           "same_weights": len({r["weights"] for rows in by_wait.values() for r in rows}) == 1}
    load = os.getloadavg()
    return {"schema": SCHEMA, "date": _dt.date.today().isoformat(), "machine": machine(), "commit": commit(),
            "command": shlex.join(["python", "-m", "occ.benchmarks.demo_time", *sys.argv[1:]]),
            "load_average_1min_at_end": round(load[0], 2), "steps": steps, "rounds": rounds, "busy_processes_beside": busy,
            "data_seconds": prepared, "methods": methods}


def main(args: list[str]) -> int:
    if args[:1] == ["--steps-in-this-process"]:
        print(json.dumps(time_steps(Path(args[1]), args[2], int(args[3]))))
        return 0
    if not 1 <= len(args) <= 4 or not all(a.isdigit() and int(a) > 0 for a in args[1:3]) or not all(a.isdigit() for a in args[3:]):
        print("usage: python -m occ.benchmarks.demo_time OUT.json [STEPS (5)] [ROUNDS (2)] [BUSY (0)]", file=sys.stderr)
        return 2
    result = run(*(int(a) for a in args[1:]))
    write_atomic(Path(args[0]), json.dumps(result, indent=2).encode())
    print(json.dumps({method: {k: v for k, v in entry.items() if k != "runs"} for method, entry in result["methods"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
