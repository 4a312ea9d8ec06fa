"""Several worker processes behind one ``stillroom serve`` port: how many, and what they share.

Each worker is a whole stillroom: its own capture writer and spool file, database pools, route
table and background duties. What the workers must agree on goes through the database (the
``cycles`` lease, evaluation leases, training-launch claims) or through the one thing this
module makes: a fresh folder where every worker keeps its Prometheus samples, so that
``/metrics``, whichever worker answers it, counts for all of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's own switch: set before a process imports it, its samples go to files
there (one set per process id) instead of living in memory."""

MAX_WORKERS = 64


def cpu_count() -> int:
    """CPUs this process may run on: its affinity mask, not the machine's count (a CPU quota
    of a container is not seen; set ``--workers`` there)."""
    process_cpu_count = getattr(os, "process_cpu_count", None)  # Python 3.13+
    if process_cpu_count is not None:
        found: int | None = process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        found = len(os.sched_getaffinity(0))
    else:
        found = os.cpu_count()
    return max(1, found or 1)


def worker_count(requested: int) -> int:
    """``requested`` processes; 0 (``auto``): one per CPU, at most ``MAX_WORKERS``."""
    if requested > 0:
        return requested
    return min(cpu_count(), MAX_WORKERS)


@contextmanager
def shared_metrics_dir() -> Iterator[Path]:
    """A new, empty folder for the workers' metric files, named in the environment they
    inherit, and removed with everything in it when serving ends.

    New for each ``serve``: counters of an earlier run must not be added to this one's."""
    path = Path(tempfile.mkdtemp(prefix="stillroom-metrics-"))
    previous = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def shared_metrics_dir_of_this_process() -> Path | None:
    """The folder this worker's samples go to, when it is one of several; else None.

    Read when the app is built, not at import: prometheus_client itself read the variable
    when it was imported, and both agree because ``serve`` sets it before workers start."""
    value = os.environ.get(MULTIPROCESS_ENV)
    return Path(value) if value else None
