"""Prometheus metrics, in a registry per app so tests and workers never share state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self._request_children: dict[tuple[str, str], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "stillroom_requests",
            "Requests answered on /v1, by route kind and status class.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stillroom_request_seconds",
            "Time from request to the last byte sent, by route kind.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.captures_submitted = Counter(
            "stillroom_captures_submitted", "Captures handed to the sink.", registry=self.registry
        )
        self.captures_written = Counter(
            "stillroom_captures_written",
            "Captures committed to the database.",
            registry=self.registry,
        )
        self.capture_write_failures = Counter(
            "stillroom_capture_write_failures",
            "Batches the database refused (their captures went to the spool).",
            registry=self.registry,
        )
        self.captures_spooled = Counter(
            "stillroom_captures_spooled",
            "Captures written to the spool file.",
            registry=self.registry,
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
            registry=self.registry,
        )
        self.captures_quarantined = Counter(
            "stillroom_captures_quarantined",
            "Captures that could not be built or were refused by the database, stored as raw "
            "quarantined records instead.",
            registry=self.registry,
        )
        self.captures_dead_lettered = Counter(
            "stillroom_captures_dead_lettered",
            "Captures not even storable quarantined, kept in the dead-letter file.",
            registry=self.registry,
        )
        self.writer_restarts = Counter(
            "stillroom_capture_writer_restarts",
            "Times the capture writer was restarted after a failure.",
            registry=self.registry,
        )
        self.capture_queue_depth = Gauge(
            "stillroom_capture_queue_depth",
            "Captures waiting in memory for the writer.",
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "stillroom_spool_bytes", "Bytes waiting in spool files.", registry=self.registry
        )

    def watch_sink(self, depth: Callable[[], int], spool_bytes: Callable[[], int]) -> None:
        self.capture_queue_depth.set_function(depth)
        self.spool_bytes.set_function(spool_bytes)

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
