"""Prometheus metrics, in a registry per app so tests and workers never share state.

One process keeps its samples in memory. The workers of ``serve --workers N`` each write
theirs to files in one shared folder (prometheus_client's multiprocess mode), and ``/metrics``
reads every worker's files: counters and histograms are summed over the workers, the dead
ones included, so a worker that restarts loses no count. Gauges cannot call back into another
process, so each worker samples its own into its file every second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SAMPLE_SECONDS = 1.0
log = logging.getLogger("stillroom.metrics")


class Metrics:
    def __init__(self, *, shared_dir: Path | None = None) -> None:
        """``shared_dir``: the folder of a multi-worker ``serve`` (its metric files); None for
        one process."""
        self._request_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._shared_dir = shared_dir
        self._watched: tuple[Callable[[], int], Callable[[], int]] | None = None
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        # In a worker these metrics only feed its files: what /metrics shows is read back
        # from all the files, never from this process's objects (it would count them twice).
        self.registry = own = CollectorRegistry(auto_describe=True)
        if shared_dir is not None:
            self.registry = CollectorRegistry()
            self.registry.register(_ReadableFiles(shared_dir))
        self.requests = Counter(
            "stillroom_requests",
            "Requests answered on /v1, by route kind and status class.",
            ["route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "stillroom_request_seconds",
            "Time from request to the last byte sent, by route kind.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=own,
        )
        self.captures_submitted = Counter(
            "stillroom_captures_submitted", "Captures handed to the sink.", registry=own
        )
        self.captures_written = Counter(
            "stillroom_captures_written",
            "Captures committed to the database.",
            registry=own,
        )
        self.capture_write_failures = Counter(
            "stillroom_capture_write_failures",
            "Batches the database refused (their captures went to the spool).",
            registry=own,
        )
        self.captures_spooled = Counter(
            "stillroom_captures_spooled",
            "Captures written to the spool file.",
            registry=own,
        )
        self.captures_overflowed = Counter(
            "stillroom_captures_overflowed",
            "Captures offered while the queue was full, appended to the overflow spool file "
            "instead of memory (each is stored once the writer catches up).",
            registry=self.registry,
        )
        self.captures_replayed = Counter(
            "stillroom_captures_replayed",
            "Spooled captures later committed to the database.",
            registry=own,
        )
        self.captures_quarantined = Counter(
            "stillroom_captures_quarantined",
            "Captures that could not be built or were refused by the database, stored as raw "
            "quarantined records instead.",
            registry=own,
        )
        self.captures_dead_lettered = Counter(
            "stillroom_captures_dead_lettered",
            "Captures not even storable quarantined, kept in the dead-letter file.",
            registry=own,
        )
        self.writer_restarts = Counter(
            "stillroom_capture_writer_restarts",
            "Times the capture writer was restarted after a failure.",
            registry=own,
        )
        self.capture_queue_depth = Gauge(
            "stillroom_capture_queue_depth",
            "Captures waiting in memory for the writer (of all live workers).",
            registry=own,
            multiprocess_mode="livesum",
        )
        # Every worker sees the whole spool folder: the largest recent look is the truth.
        self.spool_bytes = Gauge(
            "stillroom_spool_bytes",
            "Bytes waiting in spool files.",
            registry=own,
            multiprocess_mode="livemax",
        )
        self.worker_requests = Gauge(
            "stillroom_worker_requests",
            "Requests answered on /v1 by each live worker process, by pid (several workers).",
            registry=own,
            multiprocess_mode="liveall",
        )

    @property
    def shared(self) -> bool:
        """Whether this process is one of several workers writing to a shared folder."""
        return self._shared_dir is not None

    def watch_sink(self, depth: Callable[[], int], spool_bytes: Callable[[], int]) -> None:
        if self._shared_dir is None:
            self.capture_queue_depth.set_function(depth)
            self.spool_bytes.set_function(spool_bytes)
            self.worker_requests.set_function(self._answered)
        self._watched = (depth, spool_bytes)

    def start(self) -> None:
        """A worker's gauges are sampled into its file from now on; one process needs none."""
        if self._shared_dir is None or self._sampler is not None:
            return
        self._sample()
        self._sampler = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._sampler.name = "metrics-sampler"
        self._sampler.start()

    def stop(self) -> None:
        """Stop sampling; this worker's gauges leave /metrics (its counts stay)."""
        if self._shared_dir is None:
            return
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
            self._sampler = None
        _drop_live_gauges(os.getpid(), self._shared_dir)

    def _sample_until_stopped(self) -> None:
        while not self._stop_sampling.wait(_SAMPLE_SECONDS):
            try:
                self._sample()
                _forget_dead_workers(self._shared_dir)
            except Exception:  # a gauge left stale must not end the sampling
                log.exception("sampling the metrics of worker %d failed", os.getpid())

    def _sample(self) -> None:
        if self._watched is not None:
            depth, spool_bytes = self._watched
            self.capture_queue_depth.set(depth())
            self.spool_bytes.set(spool_bytes())
        self.worker_requests.set(self._answered())

    def _answered(self) -> float:
        """Requests this process answered (a worker's own count, not the sum of all)."""
        return sum(
            sample.value
            for metric in self.requests.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, route: str, status: int | None, milliseconds: float) -> None:
        """Count one answered request; label children are cached, this runs per request."""
        status_class = f"{status // 100}xx" if status else "none"
        key = (route, status_class)
        counter = self._request_children.get(key)
        if counter is None:
            counter = self._request_children[key] = self.requests.labels(route, status_class)
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self._latency_children[route] = self.latency.labels(route)
        counter.inc()
        histogram.observe(milliseconds / 1000)


_FILE_HEADER_BYTES = 8
"""The used-bytes count and padding that begin every metric file."""


class _ReadableFiles(Collector):
    """Every worker's metric files, merged as prometheus_client's multiprocess collector does,
    but only those that hold a header yet. A worker creates its file empty and sizes it a moment
    later (prometheus/client_python#1199), and one killed in between leaves it empty for good:
    read as it was, such a file failed the whole of ``/metrics``, a 500, for as long as it was
    there."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def collect(self) -> Iterable[Metric]:
        files = []
        for path in self._folder.glob("*.db"):
            with contextlib.suppress(FileNotFoundError):  # a dead worker's live gauges, dropped
                if path.stat().st_size >= _FILE_HEADER_BYTES:
                    files.append(str(path))
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-any-return,no-untyped-call]


def _forget_dead_workers(shared_dir: Path | None) -> None:
    """Drop the live gauges of workers that died without saying so (killed): a worker that
    stops cleanly drops its own in ``Metrics.stop``."""
    if shared_dir is None:
        return
    for path in shared_dir.glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            _drop_live_gauges(pid, shared_dir)
        except PermissionError:
            continue  # alive, another user's


def _drop_live_gauges(pid: int, shared_dir: Path) -> None:
    # Two workers may sweep the same dead one at once: a file already gone is fine.
    with contextlib.suppress(FileNotFoundError):
        mark_process_dead(pid, str(shared_dir))  # type: ignore[no-untyped-call]
