"""The time window of a filter, which also bounds the time-ordered id."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import col

from storage import (
    Capture,
    CaptureFilter,
    add_capture_edit,
    filter_clauses,
    insert_captures,
    session_scope,
)


def captured_at(moment: datetime) -> dict[str, Any]:
    """A row whose id is made the way the proxy makes it, at ``moment``."""
    nanoseconds = int(moment.timestamp() * 1_000_000_000)
    return {
        "id": f"cap_{nanoseconds:016x}{nanoseconds % 997:010x}",
        "created_at": moment,
        "request": {"model": "m", "messages": []},
        "upstream": "default",
        "metadata_": {},
        "tags": [],
    }


def ids_matching(engine: Engine, capture_filter: CaptureFilter) -> list[str]:
    with session_scope(engine) as session:
        clauses = filter_clauses(capture_filter, engine.dialect.name)
        rows = session.execute(select(col(Capture.id)).where(*clauses).order_by(col(Capture.id)))
        return [row[0] for row in rows]


def test_a_window_in_the_past_finds_exactly_its_captures(engine: Engine) -> None:
    now = datetime.fromtimestamp(time.time(), UTC)
    moments = [now - timedelta(days=days) for days in (12, 10, 9, 1)]
    rows = [captured_at(moment) for moment in moments]
    with session_scope(engine) as session:
        insert_captures(rows, session=session)
    window = CaptureFilter(
        created_after=now - timedelta(days=11), created_before=now - timedelta(days=9, hours=12)
    )
    assert ids_matching(engine, window) == [rows[1]["id"]]


def test_the_upper_bound_keeps_a_capture_made_at_that_very_moment(engine: Engine) -> None:
    moment = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    row = captured_at(moment)
    with session_scope(engine) as session:
        insert_captures([row], session=session)
    just_after = CaptureFilter(created_before=moment + timedelta(microseconds=1))
    naive_just_after = CaptureFilter(
        created_before=(moment + timedelta(seconds=1)).replace(tzinfo=None)
    )
    assert ids_matching(engine, just_after) == [row["id"]]
    assert ids_matching(engine, naive_just_after) == [row["id"]]
    assert ids_matching(engine, CaptureFilter(created_before=moment)) == []


def test_edited_selects_the_captures_an_edit_replaced_and_its_negation_the_others(
    engine: Engine,
) -> None:
    now = datetime.fromtimestamp(time.time(), UTC)
    rows = [captured_at(now - timedelta(minutes=minutes)) for minutes in (3, 2, 1)]
    answer = {"role": "assistant", "content": "better"}
    with session_scope(engine) as session:
        insert_captures(rows, session=session)
        # Two edits of one capture still make it one edited capture.
        add_capture_edit(rows[1]["id"], answer, author="ana", reason=None, session=session)
        add_capture_edit(rows[1]["id"], answer, author="ana", reason=None, session=session)
    assert ids_matching(engine, CaptureFilter(edited=True)) == [rows[1]["id"]]
    assert ids_matching(engine, CaptureFilter(edited=False)) == [rows[0]["id"], rows[2]["id"]]
