"""How PyTorch's OpenMP workers wait between parallel regions: set before torch is imported.

PyTorch's CPU build runs its ops and oneDNN's on GNU OpenMP. Unless told otherwise, a worker that
finishes its share of a parallel region spins for 300,000 PAUSE instructions before it sleeps; a
PAUSE takes about 140 cycles on Intel Xeons since Skylake (about 10 before), so an idle worker
spins for up to about 20 ms. GNU OpenMP shortens the spin only when the process itself has
more threads than cores; it does not see other processes. Training runs thousands of small regions
a second, and on a 2-core CPU that runs anything else the spinning worker takes the time slices the
step's other thread is waiting for: on a shared 2-core Xeon (2026-12-06) the demo's training steps
ran 2 to 23 times slower than with sleeping workers (docs/accuracy-log.md). How the workers wait
changes no arithmetic: the trained weights are the same bits.
"""
from __future__ import annotations

import os

WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def let_idle_workers_sleep() -> None:
    """Ask OpenMP for workers that sleep as soon as they are idle, unless the environment already
    says how they wait. GNU OpenMP reads it once, when torch is first imported: called after that,
    it only reaches the processes this one starts (``torchrun`` ranks)."""
    if not any(name in os.environ for name in WAIT_VARIABLES):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
