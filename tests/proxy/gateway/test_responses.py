"""``POST /v1/responses`` through the proxy with the real ``openai`` SDK: answers reach the
client as the upstream sent them, streams byte for byte, and every call is captured."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from sqlalchemy import Engine

from tests.replay import CutStream, ReplayUpstream, responses_recording
from tests.responses_support import captures, http, responses_app, sdk

STREAM = "dotnet_Responses_HelloWorldStreaming_gpt-4o-mini.json"
TOOLS = "dotnet_Responses_FunctionCallWorks.json"


@pytest.fixture
def upstream() -> Iterator[ReplayUpstream]:
    with ReplayUpstream([*responses_recording(STREAM), *responses_recording(TOOLS)[:2]]) as replay:
        yield replay


@pytest.fixture
def app(database_url: str, tmp_path: Path, upstream: ReplayUpstream) -> Litestar:
    return responses_app(database_url, tmp_path, upstream.base_url)


async def test_a_function_call_and_its_output_are_captured_as_two_linked_calls(
    app: Litestar, engine: Engine
) -> None:
    first, second = responses_recording(TOOLS)[:2]
    async with app.lifespan(), sdk(app) as client:
        called = await client.responses.create(**first.request_json())
        answered = await client.responses.create(**second.request_json())
    assert called.output[0].type == "function_call"
    assert answered.previous_response_id == called.id
    one, two = await captures(engine, 2)
    assert (one.api, one.completion_id, one.finish_reason) == ("responses", called.id, "tool_calls")
    assert two.request["previous_response_id"] == one.completion_id
    assert (two.prompt_tokens, two.completion_tokens, two.total_tokens) == (109, 156, 265)
    assert two.response == second.response_json()
    assert (two.status_code, two.requested_model, two.served_model) == (
        200,
        "gpt-4o-mini",
        "gpt-4o-mini",
    )
    assert two.ttfb_ms is not None and two.total_ms is not None


async def test_a_stream_reaches_the_client_byte_for_byte_and_is_stored_whole(
    app: Litestar, engine: Engine
) -> None:
    (recorded,) = responses_recording(STREAM)
    async with app.lifespan(), http(app) as client:
        answer = await client.post(
            "/v1/responses",
            json=recorded.request_json(),
            headers={"authorization": "Bearer sk-client"},
        )
    assert answer.status_code == 200
    assert answer.content == recorded.response_body
    (capture,) = await captures(engine, 1)
    assert capture.stream is True and capture.abandoned is False
    assert capture.response is not None
    assert capture.response["status"] == "completed"
    assert capture.response["output"][0]["content"][0]["text"] == (
        "Hello! How can I assist you today?"
    )
    assert (capture.prompt_tokens, capture.completion_tokens) == (11, 10)
    assert capture.error_kind is None


async def test_the_sdk_stream_gives_the_same_text_the_capture_holds(
    app: Litestar, engine: Engine
) -> None:
    (recorded,) = responses_recording(STREAM)
    async with app.lifespan(), sdk(app) as client:
        stream = await client.responses.create(**recorded.request_json())
        events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    (capture,) = await captures(engine, 1)
    assert capture.response == events[-1].response.model_dump(mode="json", exclude_unset=True)


async def test_a_stream_cut_by_the_upstream_is_stored_partial_with_the_reason(
    app: Litestar, engine: Engine, upstream: ReplayUpstream
) -> None:
    (recorded,) = responses_recording(STREAM)
    upstream.set_fault("/v1/responses", CutStream(after_events=8))
    async with app.lifespan(), http(app) as client:
        with pytest.raises(Exception):  # noqa: B017,PT011 - the transport sees a cut stream
            await client.post(
                "/v1/responses",
                json=recorded.request_json(),
                headers={"authorization": "Bearer sk-client"},
            )
    (capture,) = await captures(engine, 1)
    assert capture.error_kind == "stream_cut"
    assert capture.response is not None
    assert capture.response["status"] == "in_progress"
    assert capture.response["output"][0]["type"] == "message"
    assert capture.completion_id == "resp_0976c6df58902d6a0068c9ef349f8881968e62cd0dd40b45bf"
