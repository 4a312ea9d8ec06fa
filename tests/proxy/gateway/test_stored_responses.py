"""Stored reads of Responses: what stillroom captured is answered from its store, anything
else is the upstream's to answer; list parameters take every value the spec allows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from sqlalchemy import Engine

from tests.replay import ReplayUpstream, responses_recording
from tests.responses_support import captures, http, responses_app, sdk

ITEMS = "dotnet_ResponseStore_GetInputItemsWithPagination.json"
DELETE = "dotnet_Responses_CanDeleteResponse.json"
ELSEWHERE = "dotnet_Responses_GetResponseNoOptions.json"


@pytest.fixture
def upstream() -> Iterator[ReplayUpstream]:
    recorded = [
        *responses_recording(ITEMS)[:1],
        *responses_recording(DELETE),
        *responses_recording(ELSEWHERE)[1:],
    ]
    with ReplayUpstream(recorded) as replay:
        yield replay


@pytest.fixture
def app(database_url: str, tmp_path: Path, upstream: ReplayUpstream) -> Litestar:
    return responses_app(database_url, tmp_path, upstream.base_url)


async def test_a_captured_response_is_retrieved_from_the_store(
    app: Litestar, engine: Engine, upstream: ReplayUpstream
) -> None:
    created = responses_recording(DELETE)[0]
    async with app.lifespan(), sdk(app) as client:
        answer = await client.responses.create(**created.request_json())
        await captures(engine, 1)
        again = await client.responses.retrieve(answer.id)
    assert again.id == answer.id
    assert again.output_text == answer.output_text == "Hello! How can I assist you today?"
    assert [r.method for r in upstream.received] == ["POST"]


async def test_an_unknown_response_id_passes_through_to_the_upstream(
    app: Litestar, upstream: ReplayUpstream
) -> None:
    recorded = responses_recording(ELSEWHERE)[1]
    response_id = recorded.path.rsplit("/", 1)[-1]
    async with app.lifespan(), sdk(app) as client:
        answer = await client.responses.retrieve(response_id)
    assert answer.id == response_id
    assert [(r.method, r.path) for r in upstream.received] == [("GET", recorded.path)]


async def test_input_items_page_newest_first_as_openai_does(
    app: Litestar, engine: Engine, upstream: ReplayUpstream
) -> None:
    created = responses_recording(ITEMS)[0]
    async with app.lifespan(), sdk(app) as client:
        answer = await client.responses.create(**created.request_json())
        await captures(engine, 1)
        first = await client.responses.input_items.list(answer.id, limit=2)
        second = await client.responses.input_items.list(
            answer.id, limit=2, after=first.data[-1].id
        )
        oldest = await client.responses.input_items.list(answer.id, order="asc", limit=1)
    texts = [
        [item.model_dump()["content"][0]["text"] for item in page.data] for page in (first, second)
    ]
    assert texts == [["Item 4", "Item 3"], ["Item 2", "Item 1"]]
    assert (first.has_more, second.has_more) == (True, False)
    assert oldest.data[0].model_dump()["content"][0]["text"] == "Item 1"
    assert [r.method for r in upstream.received] == ["POST"]


async def test_limit_zero_is_an_empty_page_on_both_apis(app: Litestar, engine: Engine) -> None:
    created = responses_recording(ITEMS)[0]
    headers = {"authorization": "Bearer sk-client-key"}
    async with app.lifespan(), sdk(app) as client, http(app) as raw:
        answer = await client.responses.create(**created.request_json())
        await captures(engine, 1)
        items = await raw.get(f"/v1/responses/{answer.id}/input_items?limit=0", headers=headers)
        chats = await raw.get("/v1/chat/completions?limit=0", headers=headers)
        negative = await raw.get("/v1/chat/completions?limit=-1", headers=headers)
    assert items.status_code == 200
    assert (items.json()["data"], items.json()["has_more"]) == ([], True)
    assert chats.status_code == 200
    assert (chats.json()["data"], chats.json()["has_more"]) == ([], False)
    assert negative.status_code == 400
    assert negative.json()["error"]["param"] == "limit"


async def test_a_response_is_not_listed_among_chat_completions(
    app: Litestar, engine: Engine
) -> None:
    created = responses_recording(ITEMS)[0]
    async with app.lifespan(), sdk(app) as client:
        await client.responses.create(**created.request_json())
        await captures(engine, 1)
        listed = await client.chat.completions.list()
    assert listed.data == []


async def test_delete_removes_the_capture_and_later_reads_go_upstream(
    app: Litestar, engine: Engine, upstream: ReplayUpstream
) -> None:
    created = responses_recording(DELETE)[0]
    async with app.lifespan(), sdk(app) as client:
        answer = await client.responses.create(**created.request_json())
        await captures(engine, 1)
        await client.responses.delete(answer.id)
        remaining = await captures(engine, 0)
        async with http(app) as raw:
            gone = await raw.get(
                f"/v1/responses/{answer.id}", headers={"authorization": "Bearer sk-client-key"}
            )
    assert remaining == []
    assert [r.method for r in upstream.received] == ["POST", "GET"]
    assert gone.status_code == 200  # the replayed upstream still knows it: its answer came


async def test_feedback_takes_a_response_id(app: Litestar, engine: Engine) -> None:
    created = responses_recording(DELETE)[0]
    async with app.lifespan(), sdk(app) as client:
        answer = await client.responses.create(**created.request_json())
        await captures(engine, 1)
        async with http(app) as raw:
            given = await raw.post(
                "/v1/feedback",
                json={"response_id": answer.id, "thumbs": "up"},
                headers={"authorization": "Bearer sk-client-key"},
            )
    assert given.status_code == 200, given.text
    assert given.json()["completion_id"] == answer.id
    (capture,) = await captures(engine, 1)
    assert capture.feedback == "positive"
