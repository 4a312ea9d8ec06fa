"""The replay upstream serves recordings faithfully and its faults really happen on the wire."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import aiohttp
import httpx
import pytest

import tests.replay
from tests.replay import (
    RECORDINGS_DIR,
    CutStream,
    Delay,
    EndlessStream,
    ErrorReply,
    Interaction,
    ReplayUpstream,
    all_cassettes,
    load_cassette,
    recording,
)

ALL_FILES = [path for paths in all_cassettes().values() for path in paths]


def _post(upstream: ReplayUpstream, interaction: Interaction) -> httpx.Response:
    return httpx.post(
        upstream.url + interaction.path,
        params=interaction.query or None,
        content=interaction.request_body,
        headers={"content-type": "application/json", "authorization": "Bearer sk-replay"},
    )


def test_exported_names_are_exactly_the_public_api() -> None:
    public = {name for name in vars(tests.replay) if not name.startswith("_")}
    modules = {"_cassettes", "_faults", "_server"}

    assert set(tests.replay.__all__) == public - modules


def test_every_category_has_recordings() -> None:
    grouped = all_cassettes()

    assert set(grouped) == {"chat", "stream", "tools", "embeddings", "models", "files", "finetune"}
    assert all(grouped.values()), grouped


@pytest.mark.parametrize(
    "path", ALL_FILES, ids=[str(p.relative_to(RECORDINGS_DIR)) for p in ALL_FILES]
)
def test_every_recording_loads_with_status_and_decodable_body(path: Path) -> None:
    interactions = load_cassette(path)

    assert interactions
    for interaction in interactions:
        assert 100 <= interaction.status < 600
        assert interaction.method in {"GET", "POST", "DELETE"}
        assert interaction.path.startswith("/")
        assert interaction.decoded_body()
        if interaction.is_event_stream:
            assert interaction.sse_events()[-1] == b"data: [DONE]\n\n"


def test_loader_copes_with_ruby_and_python_yaml_quirks(tmp_path: Path) -> None:
    cassette = tmp_path / "quirks.yml"
    cassette.write_text(
        """\
--- !ruby/object:VCR::Cassette
http_interactions:
- request: !ruby/struct:VCR::Request
    method: post
    uri: https://api.openai.com/v1/chat/completions?x=1
    body:
      encoding: ASCII-8BIT
      string: !binary |-
        eyJtb2RlbCI6ImdwdC00byJ9
    headers:
      Authorization: Bearer <TOKEN>
  response:
    status:
      code: 503
      message: Service Unavailable
    headers:
      Content-Type:
      - application/json
      X-Ratelimit-Remaining-Requests:
      - 9
    body:
      encoding: ASCII-8BIT
      base64_string: |
        eyJlcnJvciI6IHt9fQ==
- request:
    method: get
    uri: https://api.openai.com/v1/models
    body: null
  response:
    status: {code: 200, message: OK}
    headers: {}
    body:
      string: 'b''{"object": "list"}'''
"""
    )

    first, second = load_cassette(cassette)

    assert (first.method, first.path, first.query) == ("POST", "/v1/chat/completions", "x=1")
    assert first.request_body == b'{"model":"gpt-4o"}'
    assert first.request_headers == (("Authorization", "Bearer <TOKEN>"),)
    assert (first.status, first.reason) == (503, "Service Unavailable")
    assert first.header("x-ratelimit-remaining-requests") == "9"
    assert first.response_body == b'{"error": {}}'
    assert second.request_body == b""
    assert second.response_body == b'{"object": "list"}'


def test_gzip_recording_is_served_as_its_wire_bytes() -> None:
    interaction = recording("chat/openllmetry_chat_gzip_body.yaml")[0]
    assert interaction.content_encoding == "gzip"

    with (
        ReplayUpstream([interaction]) as upstream,
        httpx.Client() as client,
        client.stream("POST", upstream.url + interaction.path, content=b"{}") as response,
    ):
        raw = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["x-request-id"] == interaction.header("x-request-id")
    assert response.headers["openai-processing-ms"] == interaction.header("openai-processing-ms")
    assert "transfer-encoding" not in response.headers
    assert raw == interaction.response_body
    assert gzip.decompress(raw) == interaction.decoded_body()
    assert json.loads(gzip.decompress(raw))["object"] == "chat.completion"


def test_stream_arrives_as_the_recorded_events_one_chunk_each() -> None:
    interaction = recording("stream/ruby_chat_stream_basic.yml")[0]
    events = interaction.sse_events()
    assert len(events) == 12

    with (
        ReplayUpstream([interaction]) as upstream,
        httpx.Client() as client,
        client.stream(
            "POST", upstream.base_url + "/chat/completions", content=interaction.request_body
        ) as response,
    ):
        chunks = list(response.iter_raw())

    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["transfer-encoding"] == "chunked"
    assert chunks == events


async def test_stream_reaches_an_aiohttp_client_in_order() -> None:
    interaction = recording("tools/openllmetry_stream_tool_call_deltas.yaml")[0]
    with ReplayUpstream([interaction]) as upstream:
        async with (
            aiohttp.ClientSession() as session,
            session.post(upstream.base_url + "/chat/completions", data=b"{}") as response,
        ):
            received = [chunk async for chunk, _ in response.content.iter_chunks()]

    assert b"".join(received) == interaction.response_body
    assert [e for e in b"".join(received).split(b"\n\n") if e] == [
        e.rstrip(b"\n") for e in interaction.sse_events()
    ]


def test_body_matching_picks_the_interaction_with_equal_json() -> None:
    first, second, third = recording("tools/llm_tool_chain_three_turns_gzip.yaml")
    reordered = dict(reversed(list(third.request_json().items())))
    reordered["stream_options"] = {"include_usage": True}

    with ReplayUpstream([first, second, third]) as upstream:
        answer = httpx.post(upstream.base_url + "/chat/completions", json=reordered)
        fallback = httpx.post(upstream.base_url + "/chat/completions", json={"model": "other"})

    assert answer.json() == third.response_json()
    assert fallback.json() == first.response_json()
    assert [r.interaction for r in upstream.received] == [third, first]


def test_received_requests_keep_what_the_client_sent() -> None:
    interaction = recording("chat/ruby_chat_gpt35.yml")[0]

    with ReplayUpstream([interaction]) as upstream:
        response = _post(upstream, interaction)

    assert response.status_code == 200
    (received,) = upstream.received
    assert received.headers["Authorization"] == "Bearer sk-replay"
    assert (received.method, received.path) == ("POST", "/v1/chat/completions")
    assert received.json() == interaction.request_json()


def test_unmatched_request_gets_an_openai_shaped_404() -> None:
    with ReplayUpstream(recording("models/ruby_models_list.yml")) as upstream:
        response = httpx.get(upstream.base_url + "/files")

    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No recorded interaction for GET /v1/files.",
            "type": "invalid_request_error",
            "param": None,
            "code": "replay_no_match",
        }
    }


def test_error_fault_sends_status_headers_and_error_body_then_recovers() -> None:
    interaction = recording("chat/ruby_chat_gpt35.yml")[0]
    plan = [ErrorReply.rate_limited(retry_after=1), ErrorReply.server_error()]

    with ReplayUpstream([interaction], faults={interaction.path: plan}) as upstream:
        limited, broken, ok = (_post(upstream, interaction) for _ in range(3))

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert broken.status_code == 500
    assert broken.json()["error"]["type"] == "server_error"
    assert ok.status_code == 200
    assert ok.content == interaction.response_body


def test_delay_fault_outlasts_a_client_timeout() -> None:
    interaction = recording("chat/ruby_chat_gpt35.yml")[0]

    with ReplayUpstream([interaction], fault=Delay(2.0)) as upstream:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(upstream.base_url + "/chat/completions", content=b"{}", timeout=0.2)
        assert time.monotonic() - started < 1.5
        assert upstream.wait_for(lambda up: up.disconnects == 1)


def test_cut_stream_leaves_the_client_with_an_incomplete_body() -> None:
    interaction = recording("stream/ruby_chat_stream_basic.yml")[0]
    chunks: list[bytes] = []

    with (
        ReplayUpstream([interaction], fault=CutStream(after_events=3)) as upstream,
        httpx.Client() as client,
        client.stream("POST", upstream.base_url + "/chat/completions", content=b"{}") as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            chunks.extend(response.iter_raw())

    assert chunks == interaction.sse_events()[:3]


def test_endless_stream_counts_the_client_leaving() -> None:
    with (
        ReplayUpstream([], fault=EndlessStream(interval=0.05)) as upstream,
        httpx.Client() as client,
    ):
        with client.stream("POST", upstream.base_url + "/chat/completions") as response:
            stream = response.iter_raw()
            first_three = [next(stream) for _ in range(3)]
        assert upstream.wait_for(lambda up: up.disconnects == 1, within=2.0)

    assert all(chunk.startswith(b"data: {") for chunk in first_three)


async def test_endless_stream_disconnect_is_visible_to_async_tests() -> None:
    with ReplayUpstream([], fault=EndlessStream(interval=0.05)) as upstream:
        async with httpx.AsyncClient() as client:
            async with client.stream("POST", upstream.base_url + "/chat/completions") as response:
                async for _chunk in response.aiter_raw():
                    break
            assert await upstream.wait_for_async(lambda up: up.disconnects == 1, within=2.0)
