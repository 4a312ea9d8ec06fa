"""Migration 0012 sets ``has_tool_calls`` on stored captures whose request holds an assistant
turn that called a tool, as the proxy now sets it on capture; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import MetaData, Table, select
from sqlmodel import col

from proxy.gateway._capture import Exchange, build_row
from storage import Capture, make_engine, session_scope, upgrade

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
USER = {"role": "user", "content": "Go."}


def _row(name: str, messages: Any, *, flagged: bool = False) -> dict[str, Any]:
    return {
        "id": f"cap_{name}",
        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
        "request": {"model": "m", "messages": messages},
        "upstream": "default",
        "metadata_": {},
        "tags": [],
        "has_tool_calls": flagged,
        "stream": False,
        "abandoned": False,
        "review_status": "pending",
    }


STORED = [
    _row("earlier_call", [USER, {"role": "assistant", "tool_calls": [CALL]}, USER]),
    _row("earlier_function_call", [USER, {"role": "assistant", "function_call": {"name": "f"}}]),
    _row("answer_called", [USER], flagged=True),
    _row("empty_call_list", [USER, {"role": "assistant", "content": "x", "tool_calls": []}]),
    _row("user_says_tool_calls", [{"role": "user", "content": '"tool_calls": [1]'}]),
    _row("user_turn_with_calls", [{"role": "user", "content": "x", "tool_calls": [CALL]}]),
    _row("messages_not_a_list", {"tool_calls": [CALL]}),
    _row("turns_not_objects", ['"tool_calls"', None, 3, [CALL]]),
]


def test_backfill_flags_captures_whose_earlier_turn_called_a_tool(unmigrated_url: str) -> None:
    engine = make_engine(unmigrated_url)
    try:
        upgrade(engine, "0011")
        # The table as it was then: the models of today know columns added after it.
        before = Table("captures", MetaData(), autoload_with=engine)
        rows = [{**row, "metadata": row["metadata_"]} for row in STORED]
        with engine.begin() as connection:
            connection.execute(
                before.insert(), [{k: v for k, v in r.items() if k != "metadata_"} for r in rows]
            )
        upgrade(engine)
        with session_scope(engine) as session:
            flagged = session.execute(
                select(col(Capture.id)).where(col(Capture.has_tool_calls)).order_by(col(Capture.id))
            )
            found = [row[0].removeprefix("cap_") for row in flagged]
    finally:
        engine.dispose()

    assert found == ["answer_called", "earlier_call", "earlier_function_call"]


@pytest.mark.parametrize("row", STORED, ids=[row["id"] for row in STORED])
def test_capture_time_flag_agrees_with_the_backfill(row: dict[str, Any]) -> None:
    exchange = Exchange(
        request=row["request"], api_key_id=None, upstream="default", served_model="m"
    )
    expected = row["id"] in ("cap_earlier_call", "cap_earlier_function_call")

    assert build_row(exchange)["has_tool_calls"] is expected
