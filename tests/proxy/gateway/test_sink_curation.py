"""The capture writer applies curation rules and storage redaction before a capture is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from finetune import RedactionConfig, RuleConfig, storage_redactor
from proxy._metrics import Metrics
from proxy.gateway._capture import Exchange
from proxy.gateway._sink import CaptureSink
from storage import count_captures, get_capture, session_scope
from tests.support import wait_for

RULES = [
    RuleConfig.model_validate(raw)
    for raw in (
        {"name": "tag-errors", "action": "tag", "tag": "error", "when": {"error": True}},
        {"name": "reject-errors", "action": "reject", "when": {"error": True}},
        {"name": "approve-billing", "action": "approve", "when": {"metadata": {"team": "billing"}}},
    )
]
PII = [
    "alice@example.com",
    "bob@example.org",
    "+1 415 555 0132",
    "4111 1111 1111 1111",
    "4111111111111111",
    "DE89 3704 0044 0532 0130 00",
    "DE89370400440532013000",
]


def make_sink(engine: Engine, tmp_path: Path, **curation: Any) -> CaptureSink:
    sink = CaptureSink(
        engine, Metrics(), spool_dir=tmp_path / "spool", flush_seconds=0.02, **curation
    )
    sink.start()
    return sink


@pytest.fixture
def ruled_sink(engine: Engine, tmp_path: Path) -> Iterator[CaptureSink]:
    sink = make_sink(engine, tmp_path, rules=RULES)
    yield sink
    sink.close(10)


def stored(engine: Engine, count: int) -> None:
    def enough() -> bool:
        with session_scope(engine) as session:
            return count_captures(session=session) >= count

    wait_for(enough)


def completion(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
        }
    ).encode()


def test_a_capture_with_an_error_arrives_rejected_and_tagged(
    ruled_sink: CaptureSink, engine: Engine
) -> None:
    error = {"error": {"message": "The server had an error", "type": "server_error"}}
    failed = Exchange(
        request={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        api_key_id=None,
        upstream="default",
        served_model="gpt-4o",
        status_code=500,
        body=json.dumps(error).encode(),
    )
    billing = Exchange(
        request={"model": "gpt-4o", "messages": [], "metadata": {"team": "billing"}},
        api_key_id=None,
        upstream="default",
        served_model="gpt-4o",
        status_code=200,
        body=completion("ok"),
    )
    plain = Exchange(
        request={"model": "gpt-4o", "messages": []},
        api_key_id=None,
        upstream="default",
        served_model="gpt-4o",
        status_code=200,
        body=completion("ok"),
    )
    for exchange in (failed, billing, plain):
        ruled_sink.submit(exchange)
    stored(engine, 3)
    with session_scope(engine) as session:
        found = {
            name: get_capture(exchange.capture_id, session=session)
            for name, exchange in (("failed", failed), ("billing", billing), ("plain", plain))
        }
        assert {name: (c.review_status, c.tags) for name, c in found.items() if c} == {
            "failed": ("rejected", ["error"]),
            "billing": ("approved", []),
            "plain": ("pending", []),
        }


def sse(*deltas: dict[str, Any]) -> bytes:
    last = len(deltas) - 1
    chunks = [
        {
            "id": "chatcmpl-s",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o",
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": "stop" if n == last else None}
            ],
        }
        for n, delta in enumerate(deltas)
    ]
    lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def pii_exchanges() -> list[Exchange]:
    request = {
        "model": "gpt-4o",
        "user": "alice@example.com",
        "metadata": {"customer": "alice@example.com", "team": "billing"},
        "messages": [
            {"role": "user", "content": "I'm alice@example.com, phone +1 415 555 0132."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "charge",
                            "arguments": json.dumps({"card": "4111 1111 1111 1111"}),
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": "IBAN DE89 3704 0044 0532 0130 00",
            },
            {"role": "user", "content": [{"type": "text", "text": "Card 4111111111111111 too"}]},
        ],
    }
    plain = Exchange(
        request=request,
        api_key_id=None,
        upstream="default",
        served_model="gpt-4o",
        status_code=200,
        body=completion("Refund sent to DE89370400440532013000, alice@example.com."),
    )
    streamed = Exchange(
        request={**request, "stream": True},
        api_key_id=None,
        upstream="default",
        served_model="gpt-4o",
        stream=True,
        status_code=200,
        # The address is split across chunks: only the assembled answer shows it whole.
        body=sse({"role": "assistant", "content": "Write to bob@exa"}, {"content": "mple.org"}),
    )
    return [plain, streamed]


def everything_stored(engine: Engine) -> str:
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM captures")).all()
    return json.dumps([[str(value) for value in row] for row in rows])


def test_storage_redaction_leaves_no_pii_in_the_database(engine: Engine, tmp_path: Path) -> None:
    redactor = storage_redactor(RedactionConfig(apply_at="storage"))
    sink = make_sink(engine, tmp_path, rules=RULES, redactor=redactor)
    exchanges = pii_exchanges()
    try:
        for exchange in exchanges:
            sink.submit(exchange)
        stored(engine, 2)
    finally:
        sink.close(10)
    dump = everything_stored(engine)
    assert [pii for pii in PII if pii in dump] == []
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]"):
        assert placeholder in dump
    with session_scope(engine) as session:
        plain = get_capture(exchanges[0].capture_id, session=session)
        streamed = get_capture(exchanges[1].capture_id, session=session)
    assert plain is not None and streamed is not None
    messages = plain.request["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]
    call = messages[1]["tool_calls"][0]
    assert (call["id"], call["function"]["name"]) == ("call_1", "charge")
    assert json.loads(call["function"]["arguments"]) == {"card": "[CARD]"}
    assert (plain.user, plain.metadata_) == ("[EMAIL]", {"customer": "[EMAIL]", "team": "billing"})
    assert plain.review_status == "approved"  # rules still see what redaction keeps
    assert streamed.response is not None
    assert streamed.response["choices"][0]["message"]["content"] == "Write to [EMAIL]"


def test_without_storage_redaction_the_text_is_stored_as_sent(
    engine: Engine, tmp_path: Path
) -> None:
    sink = make_sink(
        engine, tmp_path, redactor=storage_redactor(RedactionConfig(apply_at="export"))
    )
    try:
        for exchange in pii_exchanges():
            sink.submit(exchange)
        stored(engine, 2)
    finally:
        sink.close(10)
    dump = everything_stored(engine)
    assert "alice@example.com" in dump and "bob@example.org" in dump
