"""Metrics of one process: kept in memory, gauges read when /metrics is asked; and of several
workers, read back from their files."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key

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


def _worker_file(folder: Path, pid: int, answered: float) -> None:
    """A worker's counter file as prometheus_client's multiprocess mode writes it."""
    counts = MmapedDict(str(folder / f"counter_{pid}.db"))  # type: ignore[no-untyped-call]
    key = mmap_key(
        "stillroom_requests",
        "stillroom_requests_total",
        ["route", "status"],
        ["chat", "2xx"],
        "Requests answered on /v1, by route kind and status class.",
    )
    counts.write_value(key, answered, 0.0)  # type: ignore[no-untyped-call]
    counts.close()  # type: ignore[no-untyped-call]


def test_a_worker_file_still_empty_is_left_out_of_the_workers_metrics(tmp_path: Path) -> None:
    """A worker creates its file empty and sizes it a moment later; one killed in between
    leaves it so. /metrics reads the others' files all the same."""
    _worker_file(tmp_path, 101, 5)
    _worker_file(tmp_path, 102, 2)
    (tmp_path / "counter_103.db").touch()
    (tmp_path / "gauge_livesum_103.db").touch()
    metrics = Metrics(shared_dir=tmp_path)
    text = metrics.render().decode()
    assert metrics.shared
    assert sample(text, 'stillroom_requests_total{route="chat",status="2xx"}') == 7
