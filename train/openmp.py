"""How PyTorch's OpenMP workers wait between parallel regions: set before torch is imported.

PyTorch's CPU build runs its ops and oneDNN's on GNU OpenMP. Unless told otherwise, a worker that
finishes its share of a parallel region spins for 300,000 PAUSE instructions before it sleeps (up to
about 20 ms on an Intel Xeon since Skylake, where a PAUSE takes about 140 cycles). GNU OpenMP
shortens the spin only when the process itself has more threads than cores; it does not see other
processes. On a 2-core CPU that runs anything else, the spinning worker takes the time slices the
step's other thread waits for; a worker that sleeps at once instead pays a wake-up for every one of
the thousands of small regions a training step runs.

So training asks for a short spin, :data:`SPIN_COUNT` PAUSEs (tens of microseconds: about the gap
between two ops of a step). The demo's training steps on a 2-core AMD EPYC, 2026-12-07, against
sleeping at once (``python -m occ.benchmarks.demo_time``; ALOCC / AVID): idle 0.61 / 0.85 of the
time, beside 2 busy processes 1.00 / 1.26, beside 6 1.14 / 1.01; GNU OpenMP's default spin took 0.65 /
0.81, 1.71 / 2.74 and 3.76 / 3.25. How the workers wait changes no arithmetic: the trained weights
are the same bits.
"""
from __future__ import annotations

import os

WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SPIN_COUNT = 2000


def let_idle_workers_spin_briefly() -> None:
    """Ask OpenMP for workers that spin :data:`SPIN_COUNT` PAUSEs, then sleep, unless the environment
    already says how they wait. GNU OpenMP reads it once, when torch is first imported: called after
    that, it only reaches the processes this one starts (``torchrun`` ranks)."""
    if not any(name in os.environ for name in WAIT_VARIABLES):
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
