"""Aliases route ``/v1/responses`` as they route chat completions: the picked target answers,
a user stays on one target, a failing student falls back to the teacher before the first
byte, and shadow traffic to the teacher is captured beside the served answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from sqlalchemy import Engine

from tests.replay import ErrorReply, ReplayUpstream, responses_recording
from tests.responses_support import ADMIN, captures, http, responses_app, sdk
from tests.routing_support import empty_alias_tables

STREAM = "dotnet_Responses_HelloWorldStreaming_gpt-4o-mini.json"
PLAIN = "dotnet_Responses_CanDeleteResponse.json"


def _recorded() -> list[Any]:
    return [*responses_recording(STREAM), *responses_recording(PLAIN)[:1]]


@pytest.fixture
def teacher() -> Iterator[ReplayUpstream]:
    with ReplayUpstream(_recorded()) as upstream:
        yield upstream


@pytest.fixture
def student() -> Iterator[ReplayUpstream]:
    with ReplayUpstream(_recorded()) as upstream:
        yield upstream


@pytest.fixture
def app(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    teacher: ReplayUpstream,
    student: ReplayUpstream,
) -> Litestar:
    empty_alias_tables(engine)
    upstreams = {"students": {"base_url": student.base_url, "api_key": "sk-student-key"}}
    return responses_app(database_url, tmp_path, teacher.base_url, upstreams)


def _targets(teacher_weight: float, student_weight: float) -> list[dict[str, Any]]:
    return [
        {"upstream": "default", "model": "gpt-4o", "weight": teacher_weight, "role": "teacher"},
        {"upstream": "students", "model": "ft:small", "weight": student_weight, "role": "student"},
    ]


async def _set_alias(app: Litestar, body: dict[str, Any]) -> None:
    async with http(app) as client:
        answer = await client.put("/admin/aliases/support-bot", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text


async def test_an_alias_routes_a_response_to_the_student(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, {"targets": _targets(0, 1)})
        async with sdk(app) as client:
            answer = await client.responses.create(model="support-bot", input="Hello, model!")
    assert answer.output_text == "Hello! How can I assist you today?"
    assert [(r.path, r.json()["model"]) for r in student.received] == [
        ("/v1/responses", "ft:small")
    ]
    assert student.received[0].headers["authorization"] == "Bearer sk-student-key"
    assert teacher.received == []
    (capture,) = await captures(engine, 1)
    assert (capture.api, capture.alias, capture.served_model, capture.upstream) == (
        "responses",
        "support-bot",
        "ft:small",
        "students",
    )


async def test_a_user_stays_on_one_target(
    app: Litestar, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, {"targets": _targets(1, 1)})
        async with sdk(app) as client:
            for user in ("alice", "bob", "carol", "dave"):
                for _ in range(3):
                    await client.responses.create(model="support-bot", input="Hi", user=user)
    served: dict[str, set[str]] = {}
    for received in [*student.received, *teacher.received]:
        body = received.json()
        served.setdefault(body["user"], set()).add(body["model"])
    assert sorted(served) == ["alice", "bob", "carol", "dave"]
    assert all(len(models) == 1 for models in served.values())


async def test_a_failing_student_stream_falls_back_to_the_teacher_before_the_first_byte(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    student.set_fault(None, ErrorReply(503))
    (recorded,) = responses_recording(STREAM)
    async with app.lifespan():
        await _set_alias(app, {"targets": _targets(0, 1)})
        async with sdk(app) as client:
            stream = await client.responses.create(
                model="support-bot", input="Hello, responses!", stream=True
            )
            events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    assert [r.json()["model"] for r in teacher.received] == ["gpt-4o"]
    (capture,) = await captures(engine, 1)
    assert (capture.served_model, capture.upstream, capture.stream) == ("gpt-4o", "default", True)
    assert capture.metadata_["stillroom_fallback_reason"] == "status 503"
    assert capture.response is not None and capture.response["status"] == "completed"
    assert recorded.status == 200


async def test_shadow_traffic_to_the_teacher_is_captured_as_a_response(
    app: Litestar, engine: Engine, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, {"targets": _targets(0, 1), "shadow_rate": 1.0})
        async with sdk(app) as client:
            await client.responses.create(model="support-bot", input="Hello, model!")
        served, shadow = await captures(engine, 2)
    assert (served.served_model, served.tags) == ("ft:small", [])
    assert (shadow.api, shadow.served_model, shadow.tags) == ("responses", "gpt-4o", ["shadow"])
    assert shadow.metadata_["stillroom_shadow_of"] == served.id
    assert shadow.response is not None and shadow.response["object"] == "response"
    assert [(r.path, r.json()["model"]) for r in teacher.received] == [("/v1/responses", "gpt-4o")]
