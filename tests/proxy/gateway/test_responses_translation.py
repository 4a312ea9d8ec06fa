"""A student upstream that speaks only chat completions (``api = "chat"``) serves Responses
clients: the request goes as chat, ``previous_response_id`` expanded from the store, and the
answer, streamed or not, comes back as Responses objects and events. The openai SDK is the
client; the sandbox, a chat-only server, is the student."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import Engine

from tests.replay import ReplayUpstream, responses_recording
from tests.responses_support import ADMIN, captures, http, responses_app, sdk
from tests.routing_support import empty_alias_tables
from tests.sandbox import answer_text, running_sandbox

STUDENT = "gpt-4o-mini-2024-07-18"
TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a thing up.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}


@pytest.fixture
def sandbox() -> Iterator[str]:
    with running_sandbox() as url:
        yield url


@pytest.fixture
def app(database_url: str, engine: Engine, tmp_path: Path, sandbox: str) -> Iterator[Litestar]:
    empty_alias_tables(engine)
    with ReplayUpstream(responses_recording("dotnet_Responses_CanDeleteResponse.json")) as teacher:
        upstreams = {"chat-students": {"base_url": sandbox, "api": "chat"}}
        yield responses_app(database_url, tmp_path, teacher.base_url, upstreams)


async def _student_alias(app: Litestar) -> None:
    targets = [
        {"upstream": "default", "model": "gpt-4o", "weight": 0, "role": "teacher"},
        {"upstream": "chat-students", "model": STUDENT, "weight": 1, "role": "student"},
    ]
    async with http(app) as client:
        answer = await client.put("/admin/aliases/helper", json={"targets": targets}, headers=ADMIN)
    assert answer.status_code == 200, answer.text


async def test_a_response_is_answered_by_a_chat_only_student(app: Litestar, engine: Engine) -> None:
    async with app.lifespan():
        await _student_alias(app)
        async with sdk(app) as client:
            answer = await client.responses.create(
                model="helper", instructions="Be brief.", input="What is a fjord?"
            )
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a fjord?"},
    ]
    assert answer.object == "response" and answer.status == "completed"
    assert answer.output_text == answer_text(STUDENT, messages)
    assert answer.usage is not None and answer.usage.total_tokens > 0
    (capture,) = await captures(engine, 1)
    assert (capture.api, capture.served_model, capture.completion_id) == (
        "responses",
        STUDENT,
        answer.id,
    )
    assert capture.metadata_["stillroom_upstream_api"] == "chat"
    assert capture.request["instructions"] == "Be brief."
    assert capture.response == answer.model_dump(mode="json", exclude_unset=True)


async def test_a_streamed_response_is_made_of_typed_events(app: Litestar, engine: Engine) -> None:
    async with app.lifespan():
        await _student_alias(app)
        async with sdk(app) as client:
            stream = await client.responses.create(
                model="helper", input="Tell me about cedar.", stream=True
            )
            events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    expected = answer_text(STUDENT, [{"role": "user", "content": "Tell me about cedar."}])
    assert text == expected
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == expected
    assert final.usage is not None and final.usage.output_tokens > 0
    (capture,) = await captures(engine, 1)
    assert capture.response == final.model_dump(mode="json", exclude_unset=True)
    assert capture.stream is True and capture.error_kind is None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_loop_by_previous_response_id_sends_the_whole_conversation(
    app: Litestar, engine: Engine, stream: bool
) -> None:
    async with app.lifespan():
        await _student_alias(app)
        async with sdk(app) as client:
            first = await _create(client, stream, input="Find amber.", tools=[TOOL])
            (call,) = [item for item in first["output"] if item["type"] == "function_call"]
            assert (call["name"], json.loads(call["arguments"])) == (
                "lookup",
                {"query": "Find amber."},
            )
            output = {"type": "function_call_output", "call_id": call["call_id"], "output": "42"}
            second = await _create(
                client, stream, input=[output], tools=[TOOL], previous_response_id=first["id"]
            )
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Find amber."},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call["call_id"],
                    "type": "function",
                    "function": {"name": "lookup", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["call_id"], "content": "42"},
    ]
    (message,) = second["output"]
    assert message["content"][0]["text"] == answer_text(STUDENT, messages)
    one, two = await captures(engine, 2)
    assert (one.finish_reason, two.finish_reason) == ("tool_calls", "stop")
    assert two.request["previous_response_id"] == one.completion_id == first["id"]


async def _create(client: Any, stream: bool, **fields: Any) -> dict[str, Any]:
    if not stream:
        answer = await client.responses.create(model="helper", **fields)
        result: dict[str, Any] = answer.model_dump(mode="json")
        return result
    events = [e async for e in await client.responses.create(model="helper", stream=True, **fields)]
    assert events[-1].type == "response.completed"
    final: dict[str, Any] = events[-1].response.model_dump(mode="json")
    return final
