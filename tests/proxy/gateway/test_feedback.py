"""``POST /v1/feedback`` through the real ``openai`` SDK: stored, summed up on the capture,
a correction kept as an edit, and refused in OpenAI's shape for the wrong caller or input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx2
import openai
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import Engine

from finetune import capture_detail
from proxy import Settings, create_app
from storage import create_api_key, list_feedback, session_scope
from tests.curation_rows import capture_id, capture_row, store


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[Litestar]:
    """The app, started (lifespan run) and stopped around the test."""
    settings = Settings(
        database_url=database_url,
        upstream_api_key="sk-upstream-test",
        spool_dir=tmp_path / "spool",
        upstream_base_url="http://127.0.0.1:9/v1",
        capture_flush_seconds=0.05,
    )
    application = create_app(settings)
    async with AsyncTestClient(app=application):
        yield application


def _transport(app: Litestar) -> httpx2.ASGITransport:
    # Litestar types its ASGI callable more narrowly than httpx does; the protocol is the same.
    return httpx2.ASGITransport(app=cast(Any, app))


def _sdk(app: Litestar, key: str) -> openai.AsyncOpenAI:
    """The SDK, its HTTP handed straight to the app by an ASGI transport."""
    transport = _transport(app)
    return openai.AsyncOpenAI(
        api_key=key,
        base_url="http://stillroom.test/v1",
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


async def _send(app: Litestar, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with _sdk(app, key) as client:
        answer: dict[str, Any] = await client.post("/feedback", body=body, cast_to=dict[str, Any])
    return answer


@pytest.fixture
def owner(engine: Engine) -> tuple[str, str]:
    """A stillroom key and the capture made with it: (secret, capture id)."""
    with session_scope(engine) as session:
        key, secret = create_api_key("team-a", session=session)
    store(engine, [capture_row(1, api_key_id=key.id)])
    return secret, capture_id(1)


async def test_thumbs_up_is_stored_and_shows_on_the_capture(
    app: Litestar, engine: Engine, owner: tuple[str, str]
) -> None:
    secret, capture = owner
    answer = await _send(app, secret, {"completion_id": "chatcmpl-1", "thumbs": "up", "score": 0.9})
    assert answer["object"] == "chat.completion.feedback"
    assert (answer["thumbs"], answer["score"], answer["feedback"]) == (1, 0.9, "positive")
    with session_scope(engine) as session:
        detail = capture_detail(capture, session=session)
    assert detail.capture.feedback == "positive"
    assert [(f.thumbs, f.score) for f in detail.feedback] == [(1, 0.9)]


async def test_a_correction_becomes_the_captures_answer(
    app: Litestar, engine: Engine, owner: tuple[str, str]
) -> None:
    secret, capture = owner
    corrected = {"role": "assistant", "content": "Paris, not Lyon."}
    body = {"completion_id": "chatcmpl-1", "thumbs": -1, "corrected": corrected}
    assert (await _send(app, secret, body))["feedback"] == "negative"
    with session_scope(engine) as session:
        detail = capture_detail(capture, session=session)
    assert detail.answer == corrected
    assert detail.edits[0].author == "feedback"
    assert detail.original_answer == {"role": "assistant", "content": "a1"}


async def test_feedback_on_someone_elses_or_an_unknown_completion_is_a_404(
    app: Litestar, engine: Engine, owner: tuple[str, str]
) -> None:
    _, capture = owner
    with session_scope(engine) as session:
        _, other_secret = create_api_key("team-b", session=session)
    for key, completion_id in [(other_secret, "chatcmpl-1"), (owner[0], "chatcmpl-unknown")]:
        with pytest.raises(openai.NotFoundError) as refused:
            await _send(app, key, {"completion_id": completion_id, "thumbs": "up"})
        assert refused.value.param == "completion_id"
        assert refused.value.code == "not_found"
    with session_scope(engine) as session:
        assert list_feedback(capture, session=session) == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"completion_id": "chatcmpl-1", "score": 5}, "score"),
        ({"completion_id": "chatcmpl-1", "thumbs": "sideways"}, "thumbs"),
        ({"completion_id": "chatcmpl-1", "corrected": {"content": 3}}, "corrected.content"),
        ({"thumbs": "up"}, "completion_id"),
    ],
)
async def test_bad_feedback_is_a_400_that_changes_nothing(
    app: Litestar,
    engine: Engine,
    owner: tuple[str, str],
    body: dict[str, Any],
    param: str,
) -> None:
    secret, capture = owner
    with pytest.raises(openai.BadRequestError) as refused:
        await _send(app, secret, body)
    assert refused.value.param == param
    with session_scope(engine) as session:
        detail = capture_detail(capture, session=session)
    assert (detail.feedback, detail.edits, detail.capture.feedback) == ([], [], None)


async def test_feedback_needs_a_key_and_json(app: Litestar) -> None:
    async with httpx2.AsyncClient(
        transport=_transport(app), base_url="http://stillroom.test"
    ) as raw:
        keyless = await raw.post("/v1/feedback", json={"completion_id": "c", "thumbs": "up"})
        malformed = await raw.post(
            "/v1/feedback", content=b"{", headers={"authorization": "Bearer sk-client"}
        )
    assert keyless.status_code == 401
    assert keyless.json()["error"]["code"] == "missing_api_key"
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "invalid_json"
