"""A bounded capture queue: what is offered past the bound goes to the overflow spool file, not
to memory, and is stored once, exactly, when the writer catches up (or by the next process)."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event
from sqlmodel import col, select

from proxy._metrics import Metrics
from proxy.gateway._capture import Exchange
from proxy.gateway._sink import CaptureSink
from proxy.gateway._spool_files import decode_line, encode_exchange
from storage import Capture, session_scope
from tests.proxy.gateway.test_sink import exchange
from tests.support import wait_for

LIMIT = 10


class Stall:
    """Holds every statement on an engine until released, as a database that stalls would."""

    def __init__(self, engine: Engine) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()
        event.listen(engine, "before_cursor_execute", self._hold)

    def _hold(self, *_: Any) -> None:
        self.entered.set()
        self.released.wait(30)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def sink(engine: Engine, metrics: Metrics, spool_dir: Path) -> Iterator[CaptureSink]:
    sink = CaptureSink(
        engine,
        metrics,
        spool_dir=spool_dir,
        batch_size=50,
        queue_limit=LIMIT,
        flush_seconds=0.02,
        retry_seconds=0.1,
    )
    sink.start()
    yield sink
    sink.close(10)


def stored_ids(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return list(session.exec(select(col(Capture.id))).all())


def overflow_file(spool_dir: Path) -> Path:
    return next(spool_dir.glob("spool-*.overflow.jsonl"))


def test_a_full_queue_spools_what_is_offered_past_it_and_stores_each_capture_once(
    engine: Engine, sink: CaptureSink, metrics: Metrics, spool_dir: Path
) -> None:
    stall = Stall(engine)
    first = exchange(0)
    sink.submit(first)
    assert stall.entered.wait(10)
    # The writer is stuck on the database with the first capture; the rest queue, then spill.
    offered = [exchange(n) for n in range(1, 101)]
    for item in offered:
        sink.submit(item)
    assert sink.pending() == LIMIT
    lines = overflow_file(spool_dir).read_bytes().splitlines()
    spilled = [decode_line(line) for line in lines]
    assert [e.capture_id for e in spilled if isinstance(e, Exchange)] == [
        e.capture_id for e in offered[LIMIT:]
    ]
    assert metrics.captures_overflowed._value.get() == 100 - LIMIT
    stall.released.set()
    wait_for(lambda: len(stored_ids(engine)) == 101)
    wait_for(lambda: overflow_file(spool_dir).stat().st_size == 0)
    assert sorted(stored_ids(engine)) == sorted(e.capture_id for e in [first, *offered])
    assert metrics.captures_written._value.get() == 101


def test_overflow_offered_while_the_writer_takes_it_back_is_not_lost(
    engine: Engine, sink: CaptureSink
) -> None:
    offered = [exchange(n) for n in range(400)]
    for item in offered:
        sink.submit(item)
    sink.close(10)
    ids = stored_ids(engine)
    assert len(ids) == 400
    assert set(ids) == {e.capture_id for e in offered}


def test_an_overflow_file_left_by_a_process_that_died_is_replayed_once(
    engine: Engine, spool_dir: Path
) -> None:
    spool_dir.mkdir()
    left = [exchange(n) for n in range(30)]
    dead = spool_dir / f"spool-{socket.gethostname()}-999999.overflow.jsonl"
    dead.write_bytes(b"".join(encode_exchange(e) for e in left))
    # One of them was already stored before that process died.
    metrics = Metrics()
    first = CaptureSink(engine, metrics, spool_dir=spool_dir, flush_seconds=0.02)
    first.submit(left[0])
    first.start()
    try:
        wait_for(lambda: len(stored_ids(engine)) == 30)
    finally:
        first.close(10)
    assert sorted(stored_ids(engine)) == sorted(e.capture_id for e in left)
    assert not dead.exists()
    assert list(spool_dir.glob("spool-*.jsonl")) == []


def test_the_overflow_shows_in_the_metrics(
    engine: Engine, sink: CaptureSink, metrics: Metrics
) -> None:
    stall = Stall(engine)
    sink.submit(exchange(0))
    assert stall.entered.wait(10)
    for n in range(1, 31):
        sink.submit(exchange(n))
    rendered = metrics.render().decode()
    stall.released.set()
    assert f"stillroom_captures_overflowed_total {30.0 - LIMIT}" in rendered
    assert f"stillroom_capture_queue_depth {float(LIMIT)}" in rendered


def test_an_overflow_file_removed_under_the_sink_is_written_again_and_taken_back(
    engine: Engine, sink: CaptureSink, metrics: Metrics, spool_dir: Path
) -> None:
    stall = Stall(engine)
    first = exchange(0)
    sink.submit(first)
    assert stall.entered.wait(10)
    offered = [exchange(n) for n in range(1, 41)]
    for item in offered[:20]:
        sink.submit(item)
    shutil.rmtree(spool_dir)
    for item in offered[20:]:
        sink.submit(item)
    stall.released.set()
    wait_for(lambda: len(stored_ids(engine)) == 41)
    assert sorted(stored_ids(engine)) == sorted(e.capture_id for e in [first, *offered])
    assert overflow_file(spool_dir).exists()
    assert metrics.writer_restarts._value.get() == 0
