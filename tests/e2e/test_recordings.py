"""Every recorded OpenAI exchange, replayed through a running stillroom by the real SDK.

One replay upstream and one ``stillroom serve`` per database backend. The upstream holds every
recording twice, once for the sync pass and once for the async pass: recordings that repeat the
same request are served in order, so each test compares what the client got and what was
captured with the recording that actually answered it (found by a per-call header).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import unquote

import openai
import pytest

from storage import Capture, make_engine
from tests.e2e._helpers import (
    BARRIER,
    CALL_HEADER,
    CHAT_CATEGORIES,
    CLIENT_KEY,
    PASS_THROUGH_CATEGORIES,
    AsyncTeeTransport,
    CaptureStore,
    SdkCall,
    Stack,
    TeeTransport,
    WireResponse,
    answer_of,
    assert_headers_relayed,
    fold_stream,
    interactions,
    multipart_fields,
    new_call_id,
    sdk_call_for,
    stream_chunks,
)
from tests.replay import Interaction, ReplayUpstream, split_sse_events
from tests.support import running_server

CHAT = interactions(CHAT_CATEGORIES)
NON_STREAMS = [i for i in CHAT if not i.is_event_stream]
STREAMS = [i for i in CHAT if i.is_event_stream]
PASS_THROUGH = interactions(PASS_THROUGH_CATEGORIES)

_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def _source(interaction: Interaction) -> str:
    return interaction.source


def _by_source(source: str) -> Interaction:
    return next(i for i in CHAT if i.source == source)


@pytest.fixture(scope="module")
def stack(server_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    recordings = CHAT + PASS_THROUGH
    with (
        ReplayUpstream([*recordings, *recordings, BARRIER]) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path_factory.mktemp("e2e-recordings"),
        ) as server,
    ):
        engine = make_engine(server_database_url)
        try:
            yield Stack(upstream, server, CaptureStore(engine))
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def tee(stack: Stack) -> TeeTransport:
    return TeeTransport()


@pytest.fixture(scope="module")
def client(stack: Stack, tee: TeeTransport) -> Iterator[openai.OpenAI]:
    http_client = openai.DefaultHttpxClient(transport=tee)
    with openai.OpenAI(
        base_url=stack.server.v1, api_key=CLIENT_KEY, max_retries=0, http_client=http_client
    ) as sdk:
        yield sdk


@pytest.fixture
def async_tee() -> AsyncTeeTransport:
    return AsyncTeeTransport()


@pytest.fixture
async def async_client(
    stack: Stack, async_tee: AsyncTeeTransport
) -> AsyncIterator[openai.AsyncOpenAI]:
    http_client = openai.DefaultAsyncHttpxClient(transport=async_tee)
    async with openai.AsyncOpenAI(
        base_url=stack.server.v1, api_key=CLIENT_KEY, max_retries=0, http_client=http_client
    ) as sdk:
        yield sdk


# -- shared checks -----------------------------------------------------------------------------


def _served(stack: Stack, call_id: str, request: dict[str, Any]) -> Interaction:
    """The recording that answered a chat call, after checking the request reached it as sent."""
    received = stack.received(call_id)
    assert received.method == "POST"
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == f"Bearer {CLIENT_KEY}"
    assert received.json() == request
    assert received.interaction is not None
    return received.interaction


def _check_completion_relayed(
    served: Interaction, wire: WireResponse, content: bytes, completion: dict[str, Any]
) -> None:
    assert wire.status == served.status
    assert_headers_relayed(wire.headers, served)
    assert bytes(wire.body) == served.response_body, "the body was re-encoded on the way"
    assert content == served.decoded_body()
    assert completion == served.response_json()


def _check_stream_relayed(
    served: Interaction, wire: WireResponse, chunks: list[dict[str, Any]]
) -> None:
    assert wire.status == served.status
    assert_headers_relayed(wire.headers, served)
    assert split_sse_events(bytes(wire.body)) == served.sse_events()
    assert chunks == stream_chunks(served.decoded_body())


def _check_capture_columns(
    capture: Capture, served: Interaction, request: dict[str, Any], *, stream: bool
) -> None:
    assert capture.request == request
    assert capture.status_code == served.status
    assert capture.stream is stream
    assert capture.abandoned is False
    assert capture.error is None
    assert capture.error_kind is None
    assert capture.requested_model == request["model"]
    assert capture.upstream_request_id == served.header("x-request-id")
    assert capture.ttfb_ms is not None
    assert capture.total_ms is not None
    assert 0 <= capture.ttfb_ms <= capture.total_ms
    assert capture.api_key_id is not None
    assert capture.api_key_id.startswith("pt_")
    assert CLIENT_KEY not in repr(capture.model_dump())


def _check_captured_answer(capture: Capture, expected: dict[str, Any]) -> None:
    """The capture's response is a complete chat.completion holding ``expected``."""
    response = capture.response
    assert response is not None
    assert response["object"] == "chat.completion"
    assert answer_of(response) == expected
    assert capture.completion_id == expected["id"]
    assert capture.finish_reason == expected["choices"][0]["finish_reason"]
    usage = expected["usage"]
    assert capture.usage == usage
    assert capture.prompt_tokens == (usage or {}).get("prompt_tokens")
    assert capture.completion_tokens == (usage or {}).get("completion_tokens")
    assert capture.total_tokens == (usage or {}).get("total_tokens")
    for choice in response["choices"]:
        for call in choice["message"].get("tool_calls") or []:
            json.loads(call["function"]["arguments"])


def _stored_view(stored: openai.types.chat.ChatCompletion) -> dict[str, Any]:
    """A stored completion as served by the proxy, without the tags the store adds."""
    return {k: v for k, v in stored.to_dict().items() if k not in ("metadata", "request_id")}


def _expected_result(served: Interaction, call: SdkCall) -> Any:
    return served.decoded_body() if call.method == "files.content" else served.response_json()


def _result_json(result: Any, call: SdkCall) -> Any:
    # The SDK types embeddings as floats even when base64 was asked for: do not warn about it.
    return result.content if call.method == "files.content" else result.to_dict(warnings=False)


def _check_pass_through(
    stack: Stack, interaction: Interaction, call: SdkCall, call_id: str, wire: WireResponse
) -> Interaction:
    received = stack.received(call_id)
    assert (received.method, received.path) == (interaction.method, unquote(interaction.path))
    assert received.headers["authorization"] == f"Bearer {CLIENT_KEY}"
    if call.upload is not None:
        assert multipart_fields(received.headers["content-type"], received.body) == call.upload
    elif call.json_body is not None:
        assert received.json() == call.json_body
    else:
        assert received.body == b""
    served = received.interaction
    assert served is not None
    assert wire.status == served.status
    assert_headers_relayed(wire.headers, served)
    assert bytes(wire.body) == served.response_body
    return served


def _check_error(error: openai.APIStatusError, served: Interaction) -> None:
    assert error.status_code == served.status
    assert error.body == served.response_json()["error"]
    assert error.request_id == served.header("x-request-id")


# -- sync --------------------------------------------------------------------------------------


@pytest.mark.parametrize("interaction", NON_STREAMS, ids=_source)
def test_completion_reaches_the_client_byte_for_byte_and_is_captured_whole(
    stack: Stack, client: openai.OpenAI, tee: TeeTransport, interaction: Interaction
) -> None:
    request = interaction.request_json()
    call_id = new_call_id()
    before = stack.captures.count()

    raw = client.chat.completions.with_raw_response.create(
        **request, extra_headers={CALL_HEADER: call_id}
    )
    completion = raw.parse()

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    served = _served(stack, call_id, request)
    _check_completion_relayed(served, tee.responses[call_id], raw.content, completion.to_dict())
    capture = stack.captures.wait_for_new(before)
    _check_capture_columns(capture, served, request, stream=False)
    assert capture.response == served.response_json()
    _check_captured_answer(capture, answer_of(served.response_json()))
    stored = client.chat.completions.retrieve(completion.id)
    assert _stored_view(stored) == served.response_json()


@pytest.mark.parametrize("interaction", STREAMS, ids=_source)
def test_stream_reaches_the_client_event_by_event_and_is_captured_whole(
    stack: Stack, client: openai.OpenAI, tee: TeeTransport, interaction: Interaction
) -> None:
    request = interaction.request_json()
    call_id = new_call_id()
    before = stack.captures.count()

    raw = client.chat.completions.with_raw_response.create(
        **request, extra_headers={CALL_HEADER: call_id}
    )
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    chunks = [chunk.to_dict() for chunk in stream]

    served = _served(stack, call_id, request)
    _check_stream_relayed(served, tee.responses[call_id], chunks)
    capture = stack.captures.wait_for_new(before)
    _check_capture_columns(capture, served, request, stream=True)
    expected = fold_stream(chunks)
    _check_captured_answer(capture, expected)
    stored = client.chat.completions.retrieve(expected["id"])
    assert answer_of(stored.to_dict()) == expected


@pytest.mark.parametrize("interaction", PASS_THROUGH, ids=_source)
def test_pass_through_call_gets_the_recorded_answer_and_makes_no_capture(
    stack: Stack, client: openai.OpenAI, tee: TeeTransport, interaction: Interaction
) -> None:
    call = sdk_call_for(interaction)
    call_id = new_call_id()
    before = stack.captures.count()
    method = call.bind(client)

    if interaction.status >= 400:
        with pytest.raises(_ERRORS[interaction.status]) as caught:
            method(*call.args, **call.kwargs, extra_headers={CALL_HEADER: call_id})
        served = _check_pass_through(stack, interaction, call, call_id, tee.responses[call_id])
        _check_error(caught.value, served)
    else:
        result = method(*call.args, **call.kwargs, extra_headers={CALL_HEADER: call_id})
        served = _check_pass_through(stack, interaction, call, call_id, tee.responses[call_id])
        assert _result_json(result, call) == _expected_result(served, call)
    stack.assert_nothing_captured_since(before)


# -- async -------------------------------------------------------------------------------------


@pytest.mark.parametrize("interaction", NON_STREAMS, ids=_source)
async def test_async_completion_reaches_the_client_byte_for_byte_and_is_captured_whole(
    stack: Stack,
    async_client: openai.AsyncOpenAI,
    async_tee: AsyncTeeTransport,
    interaction: Interaction,
) -> None:
    request = interaction.request_json()
    call_id = new_call_id()
    before = stack.captures.count()

    raw = await async_client.chat.completions.with_raw_response.create(
        **request, extra_headers={CALL_HEADER: call_id}
    )
    completion = raw.parse()

    assert isinstance(completion, openai.types.chat.ChatCompletion)
    served = _served(stack, call_id, request)
    _check_completion_relayed(
        served, async_tee.responses[call_id], raw.content, completion.to_dict()
    )
    capture = await asyncio.to_thread(stack.captures.wait_for_new, before)
    _check_capture_columns(capture, served, request, stream=False)
    assert capture.response == served.response_json()
    _check_captured_answer(capture, answer_of(served.response_json()))
    stored = await async_client.chat.completions.retrieve(completion.id)
    assert _stored_view(stored) == served.response_json()


@pytest.mark.parametrize("interaction", STREAMS, ids=_source)
async def test_async_stream_reaches_the_client_event_by_event_and_is_captured_whole(
    stack: Stack,
    async_client: openai.AsyncOpenAI,
    async_tee: AsyncTeeTransport,
    interaction: Interaction,
) -> None:
    request = interaction.request_json()
    call_id = new_call_id()
    before = stack.captures.count()

    raw = await async_client.chat.completions.with_raw_response.create(
        **request, extra_headers={CALL_HEADER: call_id}
    )
    stream = raw.parse()
    assert isinstance(stream, openai.AsyncStream)
    chunks = [chunk.to_dict() async for chunk in stream]

    served = _served(stack, call_id, request)
    _check_stream_relayed(served, async_tee.responses[call_id], chunks)
    capture = await asyncio.to_thread(stack.captures.wait_for_new, before)
    _check_capture_columns(capture, served, request, stream=True)
    expected = fold_stream(chunks)
    _check_captured_answer(capture, expected)
    stored = await async_client.chat.completions.retrieve(expected["id"])
    assert answer_of(stored.to_dict()) == expected


@pytest.mark.parametrize("interaction", PASS_THROUGH, ids=_source)
async def test_async_pass_through_call_gets_the_recorded_answer_and_makes_no_capture(
    stack: Stack,
    async_client: openai.AsyncOpenAI,
    async_tee: AsyncTeeTransport,
    interaction: Interaction,
) -> None:
    call = sdk_call_for(interaction)
    call_id = new_call_id()
    before = stack.captures.count()
    method = call.bind(async_client)

    if interaction.status >= 400:
        with pytest.raises(_ERRORS[interaction.status]) as caught:
            await method(*call.args, **call.kwargs, extra_headers={CALL_HEADER: call_id})
        wire = async_tee.responses[call_id]
        served = _check_pass_through(stack, interaction, call, call_id, wire)
        _check_error(caught.value, served)
    else:
        result = await method(*call.args, **call.kwargs, extra_headers={CALL_HEADER: call_id})
        wire = async_tee.responses[call_id]
        served = _check_pass_through(stack, interaction, call, call_id, wire)
        assert _result_json(result, call) == _expected_result(served, call)
    await asyncio.to_thread(stack.assert_nothing_captured_since, before)


# -- single behaviours (each replays a recording once more; the upstream repeats it) -----------


def test_refusal_is_captured_as_refusal_not_content(stack: Stack, client: openai.OpenAI) -> None:
    interaction = _by_source("openllmetry_chat_parse_refusal.yaml#0")
    call_id = new_call_id()
    before = stack.captures.count()

    completion = client.chat.completions.create(
        **interaction.request_json(), extra_headers={CALL_HEADER: call_id}
    )

    served = stack.received(call_id).interaction
    assert served is not None
    refusal = served.response_json()["choices"][0]["message"]["refusal"]
    assert refusal.startswith("I'm very sorry")
    assert completion.choices[0].message.refusal == refusal
    response = stack.captures.wait_for_new(before).response
    assert response is not None
    assert response["choices"][0]["message"]["refusal"] == refusal
    assert response["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize(
    "source",
    ["ruby_chat_stream_basic.yml#0", "openllmetry_stream_tool_call_deltas.yaml#0"],
)
def test_stream_content_type_reaches_the_client_unchanged(
    stack: Stack, client: openai.OpenAI, tee: TeeTransport, source: str
) -> None:
    interaction = _by_source(source)
    call_id = new_call_id()

    for _ in client.chat.completions.create(
        **interaction.request_json(), extra_headers={CALL_HEADER: call_id}
    ):
        pass

    served = stack.received(call_id).interaction
    assert served is not None
    assert tee.responses[call_id].headers["content-type"] == served.header("content-type")


def test_chat_completion_query_string_reaches_the_upstream(
    stack: Stack, client: openai.OpenAI
) -> None:
    interaction = _by_source("openllmetry_azure_openai_stream_prompt_filter_results.yaml#0")
    assert interaction.query == "api-version=2024-02-01"
    call_id = new_call_id()

    for _ in client.chat.completions.create(
        **interaction.request_json(),
        extra_headers={CALL_HEADER: call_id},
        extra_query={"api-version": "2024-02-01"},
    ):
        pass

    assert stack.received(call_id).query == interaction.query
