"""The create calls answered before routing: what the framework did for every other route,
the hot path does for them (body limits, errors in OpenAI's shape, a NUL in the query, methods
it does not answer), and an answer reaches the client as the upstream sent it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from sqlalchemy import Engine

from proxy import Settings, create_app
from proxy.gateway import HotPath
from storage import count_captures, session_scope
from tests.replay import ReplayUpstream, recording
from tests.responses_support import captures, http
from tests.support import openai_error

CHAT = "chat/ruby_chat_gpt35.yml"
KEY = {"authorization": "Bearer sk-client"}


@pytest.fixture
def upstream() -> Iterator[ReplayUpstream]:
    with ReplayUpstream(recording(CHAT)) as replay:
        yield replay


def _app(
    database_url: str, tmp_path: Path, upstream: ReplayUpstream, **overrides: object
) -> Litestar:
    values: dict[str, object] = {
        "database_url": database_url,
        "upstream_base_url": upstream.base_url,
        "spool_dir": tmp_path / "spool",
        "capture_flush_seconds": 0.05,
    }
    return create_app(Settings(**(values | overrides)))  # type: ignore[arg-type]


def _stored(engine: Engine) -> int:
    with session_scope(engine) as session:
        return count_captures(session=session)


def test_only_posts_to_the_two_create_paths_take_the_hot_path() -> None:
    def scope(method: str, path: str) -> dict[str, object]:
        return {"type": "http", "method": method, "path": path}

    assert HotPath.endpoint(scope("POST", "/v1/chat/completions")) == "chat"  # type: ignore[arg-type]
    assert HotPath.endpoint(scope("POST", "/v1/responses/")) == "responses"  # type: ignore[arg-type]
    assert HotPath.endpoint(scope("GET", "/v1/chat/completions")) is None  # type: ignore[arg-type]
    assert HotPath.endpoint(scope("POST", "/v1/chat/completions/cmpl_1")) is None  # type: ignore[arg-type]
    assert HotPath.endpoint(scope("POST", "/v1/embeddings")) is None  # type: ignore[arg-type]


async def test_a_chat_completion_is_relayed_as_sent_and_captured(
    database_url: str, tmp_path: Path, upstream: ReplayUpstream, engine: Engine
) -> None:
    (recorded,) = recording(CHAT)
    app = _app(database_url, tmp_path, upstream)
    async with app.lifespan(), http(app) as client:
        answer = await client.post(
            "/v1/chat/completions", json=recorded.request_json(), headers=KEY
        )
    assert answer.status_code == recorded.status
    assert answer.content == recorded.response_body
    assert answer.headers["content-length"] == str(len(recorded.response_body))
    assert answer.headers["content-type"].startswith("application/json")
    (capture,) = await captures(engine, 1)
    assert capture.response == recorded.response_json()


async def test_a_body_over_the_limit_is_refused_413_before_anything_is_sent(
    database_url: str, tmp_path: Path, upstream: ReplayUpstream, engine: Engine
) -> None:
    app = _app(database_url, tmp_path, upstream, max_request_bytes=1024)
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 2000}]}

    async def chunks() -> object:
        yield b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
        for _ in range(4):
            yield b"y" * 400
        yield b'"}]}'

    async with app.lifespan(), http(app) as client:
        declared = await client.post("/v1/chat/completions", json=big, headers=KEY)
        # No Content-Length: the limit holds as the chunks arrive.
        streamed = await client.post(
            "/v1/chat/completions",
            content=chunks(),  # type: ignore[arg-type]
            headers={**KEY, "content-type": "application/json"},
        )
    for answer in (declared, streamed):
        error = openai_error(answer, 413)
        assert error["code"] == "request_too_large"
        assert error["message"] == "The request body is larger than 1024 bytes."
    assert upstream.received == []
    assert _stored(engine) == 0


async def test_a_missing_key_and_a_bad_body_are_answered_in_openai_shape_and_not_sent(
    database_url: str, tmp_path: Path, upstream: ReplayUpstream, engine: Engine
) -> None:
    app = _app(database_url, tmp_path, upstream)
    async with app.lifespan(), http(app) as client:
        keyless = await client.post("/v1/chat/completions", json={"model": "m"})
        not_json = await client.post(
            "/v1/chat/completions",
            content=b"{nope",
            headers={**KEY, "content-type": "application/json"},
        )
        not_an_object = await client.post("/v1/responses", json=[1, 2], headers=KEY)
        form = await client.post("/v1/chat/completions", data={"a": "b"}, headers=KEY)
        nul = await client.post("/v1/chat/completions?x=%00", json={"model": "m"}, headers=KEY)
    assert openai_error(keyless, 401)["code"] == "missing_api_key"
    assert openai_error(not_json, 400)["code"] == "invalid_json"
    assert openai_error(not_an_object, 400)["message"] == "The request body must be a JSON object."
    assert openai_error(form, 415)["code"] == "unsupported_content_type"
    assert openai_error(nul, 400)["code"] == "invalid_character"
    assert upstream.received == []
    assert _stored(engine) == 0


async def test_other_methods_on_the_create_paths_still_reach_their_routes(
    database_url: str, tmp_path: Path, upstream: ReplayUpstream
) -> None:
    app = _app(database_url, tmp_path, upstream)
    async with app.lifespan(), http(app) as client:
        listed = await client.get("/v1/chat/completions", headers=KEY)
        put = await client.put("/v1/chat/completions", json={}, headers=KEY)
    assert listed.status_code == 200
    assert listed.json()["object"] == "list"
    assert openai_error(put, 405)["code"] == "method_not_allowed"
