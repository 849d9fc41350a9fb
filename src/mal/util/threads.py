"""CPU threads on a machine that may be shared.

Two things go wrong with the libraries' defaults when another job uses the cores:

- torch starts as many threads as the machine has cores, not as many as this process may
  use (``taskset``, a container's cpuset), and data-loader workers come on top;
- OpenMP threads *spin* between parallel regions (GNU libgomp's default active wait). With
  the cores shared, a spinning thread holds a core that its partner thread, or the other job,
  needs: each parallel region then waits for a descheduled thread, and a 2-thread run is
  several times slower than a 1-thread one (issue 29: 20-26 s against 8.2 s).

:func:`calm_openmp` makes idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the
user chose otherwise; it must run before torch is imported (libgomp reads the variable once),
so the ``mal`` command calls it first thing. :func:`default_threads` counts the cores this
process may use, less the busy worker processes beside it. Measured in
``benchmarks/bench_load.py``.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity API
        return max(1, os.cpu_count() or 1)


def default_threads(workers: int = 0) -> int:
    """Threads for this process's own compute: the usable cores less ``workers`` busy worker processes."""
    return max(1, usable_cores() - max(0, int(workers)))


def calm_openmp() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless ``OMP_WAIT_POLICY`` is set); call before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
