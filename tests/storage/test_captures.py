"""Capture data access, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select

from storage import (
    count_captures,
    delete_capture,
    get_capture,
    get_capture_by_completion_id,
    insert_captures,
    list_capture_summaries,
    list_stored_completions,
    session_scope,
    update_capture_metadata,
)
from storage._captures import _to_columns
from storage._models import Capture

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def row(n: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": f"cap_{n:020d}",
        "completion_id": f"chatcmpl-{n}",
        "created_at": T0 + timedelta(seconds=n),
        "request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{n}"}]},
        "response": {"id": f"chatcmpl-{n}", "object": "chat.completion", "choices": []},
        "status_code": 200,
        "requested_model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini",
        "upstream": "default",
        "stream": False,
        "abandoned": False,
        "metadata_": {},
        "api_key_id": "key_a",
    }
    values.update(overrides)
    return values


def test_insert_skips_ids_already_stored(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures([row(1), row(2)], session=session)
    with session_scope(engine) as session:
        insert_captures([row(2), row(3)], session=session)
        assert count_captures(session=session) == 3


def test_capture_keeps_json_bodies_and_aware_times(engine: Engine) -> None:
    request = {"model": "m", "messages": [{"role": "user", "content": "héllo"}], "x_unknown": [1]}
    with session_scope(engine) as session:
        insert_captures([row(1, request=request, metadata_={"team": "a"})], session=session)
    with session_scope(engine) as session:
        capture = get_capture("cap_" + "1".zfill(20), session=session)
        assert capture is not None
        assert capture.request == request
        assert capture.metadata_ == {"team": "a"}
        assert capture.created_at.replace(
            tzinfo=capture.created_at.tzinfo or UTC
        ) == T0 + timedelta(seconds=1)


def test_list_filters_by_metadata_model_and_caller(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures(
            [
                row(1, metadata_={"team": "a"}),
                row(2, metadata_={"team": "b"}),
                row(3, metadata_={"team": "a"}, requested_model="gpt-4o"),
                row(4, metadata_={"team": "a"}, api_key_id="key_other"),
                row(5, completion_id=None, response=None, status_code=500),
            ],
            session=session,
        )
    with session_scope(engine) as session:
        team_a, _ = list_stored_completions(
            session=session, api_key_id="key_a", metadata={"team": "a"}
        )
        assert [c.completion_id for c in team_a] == ["chatcmpl-1", "chatcmpl-3"]
        by_model, _ = list_stored_completions(session=session, api_key_id="key_a", model="gpt-4o")
        assert [c.completion_id for c in by_model] == ["chatcmpl-3"]
        everything, _ = list_stored_completions(session=session, api_key_id=None)
        assert len(everything) == 4


def test_list_pages_with_after_in_both_orders(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures([row(n) for n in range(1, 8)], session=session)
    with session_scope(engine) as session:
        first, more = list_stored_completions(session=session, api_key_id="key_a", limit=3)
        assert [c.completion_id for c in first] == ["chatcmpl-1", "chatcmpl-2", "chatcmpl-3"]
        assert more is True
        second, more = list_stored_completions(
            session=session, api_key_id="key_a", limit=3, after="chatcmpl-3"
        )
        assert [c.completion_id for c in second] == ["chatcmpl-4", "chatcmpl-5", "chatcmpl-6"]
        last, more = list_stored_completions(
            session=session, api_key_id="key_a", limit=3, after="chatcmpl-6"
        )
        assert [c.completion_id for c in last] == ["chatcmpl-7"]
        assert more is False
        newest, _ = list_stored_completions(
            session=session, api_key_id="key_a", limit=2, order="desc", after="chatcmpl-5"
        )
        assert [c.completion_id for c in newest] == ["chatcmpl-4", "chatcmpl-3"]


def test_update_metadata_and_delete(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures([row(1, metadata_={"team": "a"})], session=session)
    with session_scope(engine) as session:
        capture = get_capture_by_completion_id("chatcmpl-1", session=session, api_key_id="key_a")
        assert capture is not None
        update_capture_metadata(capture, {"team": "z", "reviewed": "yes"}, session=session)
    with session_scope(engine) as session:
        found, _ = list_stored_completions(
            session=session, api_key_id="key_a", metadata={"team": "z"}
        )
        assert [c.metadata_ for c in found] == [{"team": "z", "reviewed": "yes"}]
        delete_capture(found[0], session=session)
    with session_scope(engine) as session:
        assert count_captures(session=session) == 0


def test_other_callers_cannot_see_a_completion(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures([row(1)], session=session)
    with session_scope(engine) as session:
        assert (
            get_capture_by_completion_id("chatcmpl-1", session=session, api_key_id="key_b") is None
        )


def test_summaries_are_newest_first_without_bodies(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures([row(n) for n in range(1, 5)], session=session)
    with session_scope(engine) as session:
        summaries = list_capture_summaries(session=session, limit=2)
        assert [s["completion_id"] for s in summaries] == ["chatcmpl-4", "chatcmpl-3"]
        assert "request" not in summaries[0] and "response" not in summaries[0]
        older = list_capture_summaries(session=session, before=summaries[-1]["id"], limit=5)
        assert [s["completion_id"] for s in older] == ["chatcmpl-2", "chatcmpl-1"]


def test_insert_stores_each_column_as_the_orm_would(engine: Engine) -> None:
    """The SQLite writer binds values itself: every stored column must equal what SQLAlchemy's
    own insert of the same row stores (JSON, times, booleans, NULLs, cut text)."""
    alike: dict[str, Any] = {
        "tags": [],
        "usage": None,
        "error": None,
        "store": None,
        "rating": None,
    }
    variants = [
        row(1, **alike | {"tags": ["gold", "x"], "metadata_": {"team": "é"}, "usage": {"n": 3}}),
        row(2, **alike | {"response": None, "error": {"message": "late"}, "store": True}),
        row(3, **alike | {"served_model": "m" * 250, "stream": True, "rating": 4}),
    ]
    table = Capture.__table__  # type: ignore[attr-defined]
    twins = [{**v, "id": v["id"].replace("cap_", "twn_")} for v in variants]
    with session_scope(engine) as session:
        insert_captures(variants, session=session)
        session.execute(insert(table), [_to_columns(t) for t in twins])
    with engine.connect() as connection:
        stored = {r["id"]: dict(r) for r in connection.execute(select(table)).mappings()}
    for variant in variants:
        ours = stored[variant["id"]]
        theirs = stored[variant["id"].replace("cap_", "twn_")]
        assert {k: v for k, v in ours.items() if k != "id"} == {
            k: v for k, v in theirs.items() if k != "id"
        }
    assert stored["cap_00000000000000000003"]["served_model"] == "m" * 200
