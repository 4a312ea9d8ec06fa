"""Curation data access: filtered pages, review state, tags, edits and feedback rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from storage import (
    CaptureFilter,
    Feedback,
    Order,
    add_capture_edit,
    add_feedback,
    capture_page_statement,
    conversation_ends,
    count_bulk_candidates,
    delete_captures,
    get_capture,
    latest_edit_messages,
    list_capture_edits,
    list_capture_page,
    list_feedback,
    next_bulk_batch,
    replace_tags,
    session_scope,
    set_review_status,
)
from tests.curation_rows import T0, capture_id, capture_row, store, store_numbered


def _page_ids(engine: Engine, capture_filter: CaptureFilter, **paging: Any) -> list[str]:
    with session_scope(engine) as session:
        rows, _ = list_capture_page(capture_filter, session=session, limit=500, **paging)
    return [str(row["id"]) for row in rows]


def test_a_page_holds_summaries_without_bodies_newest_first(engine: Engine) -> None:
    store_numbered(engine, 3, metadata_={"team": "a"})
    with session_scope(engine) as session:
        rows, next_cursor = list_capture_page(CaptureFilter(), session=session, limit=10)
    assert [row["id"] for row in rows] == [capture_id(3), capture_id(2), capture_id(1)]
    assert next_cursor is None
    assert "request" not in rows[0] and "response" not in rows[0]
    assert rows[0]["metadata"] == {"team": "a"}
    assert rows[0]["review_status"] == "pending" and rows[0]["tags"] == []


@pytest.mark.parametrize("order", ["desc", "asc"])
def test_walking_every_page_sees_each_capture_once(engine: Engine, order: Order) -> None:
    store_numbered(engine, 40)
    approved = [capture_id(n) for n in range(1, 41) if n % 3 != 0]
    with session_scope(engine) as session:
        set_review_status(approved, "approved", session=session)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        with session_scope(engine) as session:
            rows, cursor = list_capture_page(
                CaptureFilter(status=["approved"]),
                session=session,
                cursor=cursor,
                limit=7,
                order=order,
            )
        seen += [str(row["id"]) for row in rows]
        pages += 1
        if cursor is None:
            break
    assert pages == 4  # 27 approved captures: 7 + 7 + 7 + 6
    assert seen == sorted(approved, reverse=order == "desc")


def _varied(engine: Engine) -> None:
    """Twelve captures, each unlike the plain ones in one way."""
    tool_answer = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    store(
        engine,
        [
            capture_row(
                1, review_status="approved", tags=["good", "short"], metadata_={"team": "a"}
            ),
            capture_row(2, review_status="rejected", finish_reason="length"),
            capture_row(3, requested_model="gpt-4o", served_model="gpt-4o"),
            capture_row(4, alias="support-bot", served_model="ft:student"),
            capture_row(
                5,
                has_tool_calls=True,
                finish_reason="tool_calls",
                response={"choices": [{"message": tool_answer, "finish_reason": "tool_calls"}]},
            ),
            capture_row(
                6,
                status_code=500,
                response=None,
                completion_id=None,
                error={"message": "boom"},
                finish_reason=None,
                prompt_tokens=None,
                completion_tokens=None,
                total_tokens=None,
            ),
            capture_row(7, feedback="negative", tags=["good"]),
            capture_row(8, prompt_tokens=900, completion_tokens=300, total_tokens=1200),
            capture_row(9, question="How wide is a Zebra crossing?"),
            capture_row(10, stream=True),
            capture_row(11, created_at=T0 + timedelta(days=1)),
            capture_row(12, metadata_={"team": "b"}),
        ],
    )


EVERY = set(range(1, 13))

FILTER_CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("status", {"status": ["approved"]}, {1}),
    ("statuses", {"status": ["approved", "rejected"]}, {1, 2}),
    ("requested model", {"model": ["gpt-4o"]}, {3}),
    ("served model", {"model": ["ft:student"]}, {4}),
    ("alias", {"alias": ["support-bot"]}, {4}),
    ("one tag", {"tags": ["good"]}, {1, 7}),
    ("every tag", {"tags": ["good", "short"]}, {1}),
    ("metadata", {"metadata": {"team": "a"}}, {1}),
    ("created after", {"created_after": T0 + timedelta(hours=1)}, {11}),
    ("created before", {"created_before": T0 + timedelta(hours=1)}, EVERY - {11}),
    ("finish reason", {"finish_reason": ["length"]}, {2}),
    ("has tool calls", {"has_tool_calls": True}, {5}),
    ("error", {"error": True}, {6}),
    ("no error", {"error": False}, EVERY - {6}),
    ("feedback", {"feedback": ["negative"]}, {7}),
    ("no feedback", {"feedback": ["none"]}, EVERY - {7}),
    ("min total tokens", {"min_total_tokens": 1000}, {8}),
    ("max prompt tokens", {"max_prompt_tokens": 100}, EVERY - {6, 8}),
    ("search, any case", {"search": "zebra"}, {9}),
    ("search in the answer", {"search": "a12"}, {12}),
    ("stream", {"stream": True}, {10}),
    ("together", {"tags": ["good"], "status": ["pending"]}, {7}),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [(fields, expected) for _, fields, expected in FILTER_CASES],
    ids=[name for name, _, _ in FILTER_CASES],
)
def test_each_filter_selects_its_captures(
    engine: Engine, fields: dict[str, Any], expected: set[int]
) -> None:
    _varied(engine)
    found = _page_ids(engine, CaptureFilter(**fields))
    assert found == [capture_id(n) for n in sorted(expected, reverse=True)]


def test_review_status_counts_only_captures_it_changed(engine: Engine) -> None:
    ids = store_numbered(engine, 3)
    with session_scope(engine) as session:
        assert set_review_status(ids[:2], "approved", session=session) == 2
    with session_scope(engine) as session:
        assert set_review_status(ids, "approved", session=session) == 1
        assert set_review_status([], "approved", session=session) == 0
    assert _page_ids(engine, CaptureFilter(status=["approved"])) == ids[::-1]


def test_bulk_candidates_are_only_captures_the_action_would_change(engine: Engine) -> None:
    store(
        engine,
        [
            capture_row(1, tags=["good"], review_status="approved"),
            capture_row(2, tags=["good", "old"]),
            capture_row(3),
        ],
    )
    everything = CaptureFilter()
    with session_scope(engine) as session:

        def count(action: Any, tags: tuple[str, ...] = ()) -> int:
            return count_bulk_candidates(everything, action, tags=tags, session=session)

        assert count("approve") == 2
        assert count("pending") == 1
        assert count("tag", ("good",)) == 1
        assert count("tag", ("good", "old")) == 2
        assert count("untag", ("old",)) == 1
        assert count("delete") == 3
        batch = next_bulk_batch(
            everything, "tag", tags=("good",), after=None, limit=10, session=session
        )
        assert batch == [(capture_id(3), [])]
        after_first = next_bulk_batch(
            everything, "delete", after=capture_id(1), limit=1, session=session
        )
        assert after_first == [(capture_id(2), ["good", "old"])]


def test_replace_tags_writes_each_capture_its_own_list(engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    with session_scope(engine) as session:
        replace_tags([(ids[0], ["a", "b"]), (ids[1], ["c"])], session=session)
    with session_scope(engine) as session:
        assert [get_capture(i, session=session).tags for i in ids] == [["a", "b"], ["c"]]  # type: ignore[union-attr]


def test_edits_keep_their_history_and_the_newest_is_current(engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    with session_scope(engine) as session:
        for content in ("first", "second"):
            message = {"role": "assistant", "content": content}
            add_capture_edit(ids[0], message, author="ana", reason=None, session=session)
    with session_scope(engine) as session:
        history = list_capture_edits(ids[0], session=session)
        assert [edit.message["content"] for edit in history] == ["first", "second"]
        assert latest_edit_messages(ids, session=session) == {
            ids[0]: {"role": "assistant", "content": "second"}
        }
        original = get_capture(ids[0], session=session)
        assert original is not None
        assert original.response is not None
        assert original.response["choices"][0]["message"]["content"] == "a1"


def test_deleting_captures_removes_their_edits_and_feedback(engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    with session_scope(engine) as session:
        for capture in ids:
            message = {"role": "assistant", "content": "x"}
            add_capture_edit(capture, message, author="ana", reason=None, session=session)
            add_feedback(Feedback(capture_id=capture, completion_id="c", thumbs=1), session=session)
    with session_scope(engine) as session:
        assert delete_captures([ids[0]], session=session) == 1
    with session_scope(engine) as session:
        assert get_capture(ids[0], session=session) is None
        assert list_capture_edits(ids[0], session=session) == []
        assert list_feedback(ids[0], session=session) == []
        assert len(list_feedback(ids[1], session=session)) == 1


def _fill(engine: Engine, count: int) -> None:
    """Many small captures, straight in SQL; a twentieth of them rejected."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "INSERT INTO captures (id, created_at, request, upstream, stream, abandoned,"
                    " metadata, review_status, tags, has_tool_calls, requested_model, alias)"
                    " SELECT 'cap_' || lpad(g::text, 20, '0'), now(), '{}', 'default', false,"
                    " false, '{}', CASE WHEN g % 20 = 0 THEN 'rejected' ELSE 'pending' END,"
                    " '[]', false, 'model-' || (g % 10), 'alias-' || (g % 50)"
                    " FROM generate_series(1, :count) AS g"
                ),
                {"count": count},
            )
            connection.execute(text("ANALYZE captures"))
        else:
            store_numbered(engine, 200)


@pytest.mark.parametrize(
    ("fields", "index"),
    [
        ({"status": ["rejected"]}, "ix_captures_review_status_id"),
        ({"alias": ["alias-7"]}, "ix_captures_alias_id"),
    ],
)
def test_a_filtered_first_page_reads_an_index(
    engine: Engine, fields: dict[str, Any], index: str
) -> None:
    _fill(engine, 20_000)
    stmt = capture_page_statement(CaptureFilter(**fields), engine.dialect.name, limit=50)
    sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        plan = "\n".join(str(row[-1]) for row in connection.execute(text(explain + sql)))
    assert index in plan, plan
    assert "Seq Scan" not in plan and "Sort" not in plan and "TEMP B-TREE" not in plan, plan


def test_conversation_ends_read_the_messages_and_the_first_choice_of_the_page_only(
    engine: Engine,
) -> None:
    store(engine, [capture_row(1, question="Where is my parcel?"), capture_row(2)])
    store(engine, [capture_row(3, response=None, status_code=502)])
    with session_scope(engine) as session:
        ends = conversation_ends([capture_id(1), capture_id(3), "cap_missing"], session=session)
    assert ends == {
        capture_id(1): (
            [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Where is my parcel?"},
            ],
            {"role": "assistant", "content": "a1"},
        ),
        capture_id(3): (
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q3"}],
            None,
        ),
    }
