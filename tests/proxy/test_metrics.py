"""Metrics of one process: kept in memory, gauges read when /metrics is asked."""

from __future__ import annotations

import re

from proxy._metrics import Metrics


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_one_process_counts_in_memory_and_reads_its_gauges_when_asked() -> None:
    metrics = Metrics()
    queued = [3]
    metrics.watch_sink(lambda: queued[0], lambda: 4096)
    for status in (200, 200, 502):
        metrics.observe("chat", status, 12.0)
    metrics.start()  # nothing to sample: one process's gauges call back instead
    queued[0] = 7
    text = metrics.render().decode()
    metrics.stop()
    assert not metrics.shared
    assert sample(text, 'stillroom_requests_total{route="chat",status="2xx"}') == 2
    assert sample(text, 'stillroom_requests_total{route="chat",status="5xx"}') == 1
    assert sample(text, "stillroom_worker_requests") == 3
    assert sample(text, "stillroom_capture_queue_depth") == 7
    assert sample(text, "stillroom_spool_bytes") == 4096
