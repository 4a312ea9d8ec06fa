"""A batch of captures is stored as one INSERT would store it, whichever road it takes (COPY on
PostgreSQL), and an id stored meanwhile by another writer is skipped, never duplicated."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from storage import count_captures, get_capture, insert_captures, session_scope
from tests.storage.test_captures import row


def test_a_batch_returns_how_many_it_stored_and_keeps_values_as_written(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert insert_captures([row(1)], session=session) == 1
    naive = datetime(2026, 11, 2, 9, 30)
    request = {"model": "m", "messages": [{"role": "user", "content": "a\x00b"}]}
    with session_scope(engine) as session:
        stored = insert_captures(
            [
                row(1, tags=[], error=None),
                row(2, created_at=naive, request=request, tags=["x"], error=None),
            ],
            session=session,
        )
        assert stored == 1
    with session_scope(engine) as session:
        capture = get_capture(f"cap_{2:020d}", session=session)
        assert capture is not None
        assert capture.created_at.replace(tzinfo=None) == naive
        assert capture.created_at.utcoffset() is not None
        assert capture.request["messages"][0]["content"] in ("ab", "a\x00b")
        assert capture.tags == ["x"]
        assert capture.error is None
        assert count_captures(session=session) == 2


def test_an_id_stored_by_another_writer_meanwhile_is_skipped(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: nothing is stored meanwhile")
    other = Session(engine)
    insert_captures([row(2)], session=other)
    stored: list[int] = []

    def write() -> None:
        with session_scope(engine) as session:
            stored.append(insert_captures([row(1), row(2), row(3)], session=session))

    writer = threading.Thread(target=write)
    writer.start()
    # The writer waits on the other writer's uncommitted id; then that one commits.
    deadline = time.monotonic() + 10
    with engine.connect() as watch:
        while time.monotonic() < deadline:
            waiting = watch.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalar_one()
            if waiting:
                break
            time.sleep(0.02)
    other.commit()
    other.close()
    writer.join(10)
    assert stored == [2]
    with session_scope(engine) as session:
        assert count_captures(session=session) == 3
