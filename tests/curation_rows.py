"""Capture rows for the curation tests: one answered exchange per number, adjustable."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from storage import insert_captures, session_scope

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def capture_id(n: int) -> str:
    return f"cap_{n:020d}"


def capture_row(n: int, *, question: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Capture ``n``: asked ``question`` (``q{n}``), answered ``a{n}``, 10+5 tokens, pending."""
    answer = {"role": "assistant", "content": f"a{n}"}
    values: dict[str, Any] = {
        "id": capture_id(n),
        "completion_id": f"chatcmpl-{n}",
        "created_at": T0 + timedelta(seconds=n),
        "request": {
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": question or f"q{n}"},
            ],
        },
        "response": {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
        },
        "status_code": 200,
        "requested_model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini",
        "upstream": "default",
        "stream": False,
        "abandoned": False,
        "finish_reason": "stop",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "metadata_": {},
        "api_key_id": "key_a",
        "review_status": "pending",
        "tags": [],
        "has_tool_calls": False,
        # Every column, so rows stored together in one statement keep each their own values.
        "alias": None,
        "error": None,
        "error_kind": None,
        "feedback": None,
        "rating": None,
        "usage": None,
        "user": None,
        "store": None,
        "ttfb_ms": None,
        "total_ms": None,
        "upstream_request_id": None,
        "prompt_hash": None,
    }
    values.update(overrides)
    return values


def store(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    with session_scope(engine) as session:
        insert_captures(rows, session=session)


def store_numbered(engine: Engine, count: int, **overrides: Any) -> list[str]:
    """Captures 1..count; returns their ids, oldest first."""
    store(engine, [capture_row(n, **overrides) for n in range(1, count + 1)])
    return [capture_id(n) for n in range(1, count + 1)]
