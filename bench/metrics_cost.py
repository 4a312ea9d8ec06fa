"""``python -m bench.metrics_cost``: what the metrics cost one request, in one process and in a
worker of ``serve --workers N`` (prometheus_client's multiprocess mode, samples in mmap files).

A request counts itself once (``Metrics.observe``: a counter and a histogram) and hands one
capture to the sink (a counter). Each mode runs in a fresh interpreter, because
prometheus_client picks its storage when it is imported. Prints figures, not a verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def measure(requests: int, rounds: int) -> dict[str, float]:
    """Run in the child: the best of ``rounds`` timings of ``requests`` requests' metrics."""
    from proxy._metrics import Metrics
    from proxy._workers import shared_metrics_dir_of_this_process

    metrics = Metrics(shared_dir=shared_metrics_dir_of_this_process())
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter_ns()
        for _ in range(requests):
            metrics.observe("chat", 200, 3.2)
            metrics.captures_submitted.inc()
        best = min(best, (time.perf_counter_ns() - started) / requests)
    render_started = time.perf_counter_ns()
    body = metrics.render()
    return {
        "ns_per_request": best,
        "render_ms": (time.perf_counter_ns() - render_started) / 1e6,
        "render_bytes": len(body),
    }


def _run_child(requests: int, rounds: int, shared: Path | None) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != _MULTIPROCESS_ENV}
    if shared is not None:
        env[_MULTIPROCESS_ENV] = str(shared)
    done = subprocess.run(
        [sys.executable, "-m", "bench.metrics_cost", "--child", str(requests), str(rounds)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    one = _run_child(args.requests, args.rounds, None)
    with tempfile.TemporaryDirectory(prefix="stillroom-metrics-bench-") as folder:
        shared = _run_child(args.requests, args.rounds, Path(folder))
    added = shared["ns_per_request"] - one["ns_per_request"]
    print(f"metrics per request, best of {args.rounds} x {args.requests:,}:")
    print(f"  one process (in memory):       {one['ns_per_request'] / 1000:6.2f} us")
    print(f"  a worker of several (mmap):    {shared['ns_per_request'] / 1000:6.2f} us")
    print(f"  added by multiprocess mode:    {added / 1000:+6.2f} us per request")
    print(
        f"  /metrics render: {one['render_ms']:.2f} ms in memory, "
        f"{shared['render_ms']:.2f} ms from one worker's files"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
