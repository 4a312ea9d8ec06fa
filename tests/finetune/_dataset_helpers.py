"""Captures for dataset tests: real recorded conversations, and small hand-made ones."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from finetune import prompt_hash
from proxy.gateway._capture import Exchange, build_row
from storage import CaptureEdit, Feedback, insert_captures, session_scope
from tests.replay import all_cassettes, load_cassette

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def recorded_rows(categories: Sequence[str] = ("chat", "stream", "tools")) -> list[dict[str, Any]]:
    """One approved capture per chat completion recorded in tests/recordings, in
    file order, built as the proxy builds them (gzip and streams included)."""
    rows: list[dict[str, Any]] = []
    cassettes = all_cassettes()
    for category in categories:
        for path in cassettes[category]:
            for interaction in load_cassette(path):
                if not interaction.path.endswith("/chat/completions"):
                    continue
                request = interaction.request_json()
                encoding = interaction.content_encoding
                exchange = Exchange(
                    request=request,
                    api_key_id="key_test",
                    upstream="default",
                    served_model=request.get("model"),
                    capture_id=f"cap_{len(rows):020d}",
                    started_at=T0.timestamp() + len(rows),
                    stream=bool(request.get("stream")),
                    status_code=interaction.status,
                    body=interaction.response_body,
                    content_encoding=None if encoding == "identity" else encoding,
                )
                row = build_row(exchange)
                row["review_status"] = "approved"
                row["tags"] = [path.stem]
                rows.append(row)
    return rows


def answer(content: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def capture(
    n: int,
    messages: list[dict[str, Any]],
    reply: dict[str, Any] | None,
    *,
    status: str = "approved",
    **overrides: Any,
) -> dict[str, Any]:
    """A capture row answered with ``reply`` (none: an empty choice list)."""
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
    for field in ("tools", "parallel_tool_calls", "functions"):
        if field in overrides:
            request[field] = overrides.pop(field)
    choices = [] if reply is None else [{"index": 0, "message": reply, "finish_reason": "stop"}]
    row: dict[str, Any] = {
        "id": f"cap_{n:020d}",
        "completion_id": f"chatcmpl-{n}",
        "created_at": T0 + timedelta(seconds=n),
        "request": request,
        "response": {"id": f"chatcmpl-{n}", "object": "chat.completion", "choices": choices},
        "status_code": 200,
        "error": None,
        "error_kind": None,
        "rating": None,
        "feedback": None,
        "requested_model": "gpt-4o-mini",
        "served_model": "gpt-4o-mini",
        "upstream": "default",
        "stream": False,
        "abandoned": False,
        "metadata_": {},
        "review_status": status,
        "tags": [],
        "prompt_hash": prompt_hash(request),
        "has_tool_calls": bool(reply and reply.get("tool_calls")),
    }
    row.update(overrides)
    return row


def question(n: int, text: str | None = None) -> dict[str, Any]:
    """A one-turn capture: a user question and its answer."""
    text = text or f"What is {n} squared?"
    return capture(n, [{"role": "user", "content": text}], answer(f"{n * n}"))


def store(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    with session_scope(engine) as session:
        insert_captures(rows, session=session)


def add_edit(engine: Engine, capture_id: str, message: dict[str, Any]) -> None:
    with session_scope(engine) as session:
        session.add(CaptureEdit(capture_id=capture_id, message=message, reason="better"))


def add_feedback(engine: Engine, capture_id: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        session.add(
            Feedback(capture_id=capture_id, completion_id=f"chatcmpl-{capture_id}", **fields)
        )
