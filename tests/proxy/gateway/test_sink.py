"""The capture sink: batched writes, a spool while the database refuses, and replay."""

from __future__ import annotations

import json
import queue
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from proxy._metrics import Metrics
from proxy.gateway._capture import Exchange
from proxy.gateway._sink import CaptureSink
from proxy.gateway._spool_files import replaced_or_gone
from storage import count_captures, get_capture, session_scope
from tests.support import wait_for


class Outage:
    """Makes every statement on an engine fail as a database that is down would."""

    def __init__(self, engine: Engine) -> None:
        self.down = False
        event.listen(engine, "before_cursor_execute", self._check)

    def _check(self, *_: Any) -> None:
        if self.down:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("database is down"))


def exchange(n: int, body: bytes | None = None) -> Exchange:
    completion = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"a{n}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
    }
    return Exchange(
        request={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n}"}]},
        api_key_id="key_a",
        upstream="default",
        served_model="gpt-4o-mini",
        status_code=200,
        body=json.dumps(completion).encode() if body is None else body,
    )


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def sink(engine: Engine, metrics: Metrics, tmp_path: Path) -> Iterator[CaptureSink]:
    sink = CaptureSink(
        engine,
        metrics,
        spool_dir=tmp_path / "spool",
        batch_size=50,
        flush_seconds=0.02,
        retry_seconds=0.1,
    )
    sink.start()
    yield sink
    sink.close(10)


class CountingQueue(queue.SimpleQueue[Any]):
    """A queue that counts the waits on it: each may wake the thread that waits."""

    blocking_gets = 0

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if block:
            self.blocking_gets += 1
        return super().get(block, timeout)


def stored(engine: Engine) -> int:
    with session_scope(engine) as session:
        return count_captures(session=session)


def test_every_submitted_capture_is_written_on_close(
    engine: Engine, sink: CaptureSink, metrics: Metrics
) -> None:
    for n in range(230):
        sink.submit(exchange(n))
    sink.close(10)
    assert stored(engine) == 230
    assert metrics.captures_written._value.get() == 230


def test_database_outage_spools_then_replays_without_loss_or_duplicates(
    engine: Engine, sink: CaptureSink, metrics: Metrics, tmp_path: Path
) -> None:
    outage = Outage(engine)
    for n in range(20):
        sink.submit(exchange(n))
    wait_for(lambda: stored(engine) == 20)
    outage.down = True
    for n in range(20, 120):
        sink.submit(exchange(n))
    wait_for(lambda: metrics.captures_spooled._value.get() == 100)
    spool_lines = sum(
        len(p.read_bytes().splitlines()) for p in (tmp_path / "spool").glob("*.jsonl")
    )
    assert spool_lines == 100
    outage.down = False
    wait_for(lambda: stored(engine) == 120)
    assert metrics.captures_replayed._value.get() == 100
    assert sink.spool_bytes() == 0


def test_close_while_database_is_down_spools_and_next_process_replays(
    engine: Engine, metrics: Metrics, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    outage = Outage(engine)
    outage.down = True
    first = CaptureSink(engine, metrics, spool_dir=spool_dir, flush_seconds=0.02, retry_seconds=60)
    first.start()
    for n in range(15):
        first.submit(exchange(n))
    first.close(10)
    assert stored_lines(spool_dir) == 15
    outage.down = False
    second = CaptureSink(engine, Metrics(), spool_dir=spool_dir, flush_seconds=0.02)
    second.start()
    try:
        wait_for(lambda: stored(engine) == 15)
    finally:
        second.close(10)
    assert list(spool_dir.glob("*.jsonl")) == []


def test_an_orphan_replayed_and_removed_by_another_worker_meanwhile_is_seen_as_gone(
    tmp_path: Path,
) -> None:
    """Two workers may open the same orphan; the one that gets its lock second must not read
    a file the first has replayed and removed (or one made anew under its name)."""
    orphan = tmp_path / "spool-host-1.jsonl"
    orphan.write_bytes(b'{"id": "cap_1"}\n')
    with orphan.open("rb+") as handle:
        assert not replaced_or_gone(orphan, handle)
        orphan.unlink()
        assert replaced_or_gone(orphan, handle)
        orphan.write_bytes(b'{"id": "cap_2"}\n')
        assert replaced_or_gone(orphan, handle)


def stored_lines(spool_dir: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in spool_dir.glob("*.jsonl"))


def test_unparseable_response_is_still_captured_with_the_reason(
    engine: Engine, sink: CaptureSink
) -> None:
    broken = exchange(1, body=b"\x1f\x8b not really gzip")
    broken.content_encoding = "gzip"
    sink.submit(broken)
    sink.close(10)
    with session_scope(engine) as session:
        capture = get_capture(broken.capture_id, session=session)
        assert capture is not None
        assert capture.response is None
        assert capture.error is not None and "undecodable" in capture.error["message"]


def test_the_writer_waits_on_the_queue_once_a_batch_not_once_an_exchange(
    engine: Engine, metrics: Metrics, tmp_path: Path
) -> None:
    """Exchanges arriving one at a time within a flush interval are gathered by draining the
    queue between naps: a blocking ``get`` per exchange would wake the writer thread, and
    take the interpreter from the event loop, once for every request."""
    sink = CaptureSink(engine, metrics, spool_dir=tmp_path / "spool", flush_seconds=0.5)
    batches: list[int] = []
    insert = sink._insert

    def counted_insert(rows: list[dict[str, Any]]) -> None:
        batches.append(len(rows))
        insert(rows)

    sink._insert = counted_insert  # type: ignore[method-assign]
    sink._queue = CountingQueue()
    sink.start()
    try:
        wait_for(lambda: sink._queue.blocking_gets >= 1)
        for n in range(20):
            sink.submit(exchange(n))
            time.sleep(0.005)
        wait_for(lambda: stored(engine) == 20)
    finally:
        sink.close(10)
    assert batches == [20]
    # One wait for the first exchange, and one after the batch was written (then the close).
    assert sink._queue.blocking_gets <= 3


def test_a_spool_folder_removed_under_the_sink_is_written_again_with_what_it_held(
    engine: Engine, metrics: Metrics, tmp_path: Path
) -> None:
    """Spooled lines only in a removed file would vanish with the process."""
    spool_dir = tmp_path / "spool"
    outage = Outage(engine)
    outage.down = True
    sink = CaptureSink(engine, metrics, spool_dir=spool_dir, flush_seconds=0.02, retry_seconds=0.1)
    offered = [exchange(n) for n in range(20)]
    sink.start()
    try:
        for item in offered[:10]:
            sink.submit(item)
        wait_for(lambda: metrics.captures_spooled._value.get() == 10)
        shutil.rmtree(spool_dir)
        for item in offered[10:]:
            sink.submit(item)
        wait_for(lambda: metrics.captures_spooled._value.get() == 20)
        (spool,) = (p for p in spool_dir.glob("spool-*.jsonl") if "overflow" not in p.name)
        spooled = [json.loads(line)["id"] for line in spool.read_bytes().splitlines()]
        assert sorted(spooled) == sorted(item.capture_id for item in offered)
        outage.down = False
        wait_for(lambda: stored(engine) == 20)
    finally:
        sink.close(10)
    assert metrics.writer_restarts._value.get() == 0
