"""Alias routing in the proxy, through the real ``openai`` SDK: the picked target answers,
a user stays on their target, a failing student falls back to the teacher, shadow traffic is
captured beside the served answer, and ``/v1/models`` lists the aliases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from litestar import Litestar
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import Engine
from sqlmodel import col, select

from proxy import Settings, create_app
from proxy.gateway._shadow import ShadowRunner
from storage import Capture, session_scope
from tests.replay import ErrorReply, ReplayUpstream, recording
from tests.responses_support import http, sdk
from tests.routing_support import empty_alias_tables

ADMIN = {"authorization": "Bearer admin-secret"}
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello!"}]
CHAT = "chat/ruby_chat_gpt35.yml"


@pytest.fixture
def teacher() -> Iterator[ReplayUpstream]:
    """The default upstream: a chat answer, a streamed one and the model list."""
    with ReplayUpstream([*recording(CHAT), *recording("models/ruby_models_list.yml")]) as upstream:
        yield upstream


@pytest.fixture
def student() -> Iterator[ReplayUpstream]:
    """The upstream named ``students``."""
    with ReplayUpstream(recording(CHAT)) as upstream:
        yield upstream


@pytest.fixture
def app(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    teacher: ReplayUpstream,
    student: ReplayUpstream,
) -> Litestar:
    """The app, not started: each test runs its lifespan (``async with app.lifespan()``) on
    its own task, where the upstream sessions it opens must live."""
    empty_alias_tables(engine)
    settings = Settings(
        database_url=database_url,
        upstream_base_url=teacher.base_url,
        upstreams={
            "students": {"base_url": student.base_url, "api_key": "sk-student-key"},
            "dead": {"base_url": "http://127.0.0.1:9/v1"},
        },
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        capture_flush_seconds=0.05,
    )
    return create_app(settings)


async def _set_alias(app: Litestar, name: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http(app) as client:
        answer = await client.put(f"/admin/aliases/{name}", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _targets(*targets: tuple[str, str, float, str]) -> list[dict[str, Any]]:
    return [{"upstream": u, "model": m, "weight": w, "role": r} for u, m, w, r in targets]


CANARY = _targets(("default", "gpt-4o", 1, "teacher"), ("students", "ft:small", 1, "student"))
STUDENT_ONLY = _targets(("default", "gpt-4o", 0, "teacher"), ("students", "ft:small", 1, "student"))


async def _captures(engine: Engine, count: int) -> list[Capture]:
    """The first ``count`` captures, oldest first, once the writer has stored them."""
    for _ in range(200):
        with session_scope(engine) as session:
            rows = list(session.exec(select(Capture).order_by(col(Capture.id))).all())
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} captures were not written")


async def test_an_alias_routes_to_its_target_and_the_capture_says_so(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, "support-bot", {"targets": STUDENT_ONLY, "reason": "try"})
        async with sdk(app) as client:
            answer = await client.chat.completions.create(model="support-bot", messages=HELLO)
        assert answer.choices[0].message.content
        assert [r.json()["model"] for r in student.received] == ["ft:small"]
        assert teacher.received == []
        assert student.received[0].headers["authorization"] == "Bearer sk-student-key"
        (capture,) = await _captures(engine, 1)
        assert (capture.requested_model, capture.alias, capture.served_model, capture.upstream) == (
            "support-bot",
            "support-bot",
            "ft:small",
            "students",
        )


async def test_a_plain_model_passes_through_byte_for_byte(
    app: Litestar, engine: Engine, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, "support-bot", {"targets": CANARY})
        raw = b'{"model":  "gpt-3.5-turbo", "messages": [{"role":"user","content":"Hello!"}]}'
        async with http(app) as client:
            answer = await client.post(
                "/v1/chat/completions",
                content=raw,
                headers={"authorization": "Bearer sk-client", "content-type": "application/json"},
            )
        assert answer.status_code == 200
        assert teacher.received[0].body == raw
        (capture,) = await _captures(engine, 1)
        assert (capture.alias, capture.served_model) == (None, "gpt-3.5-turbo")


async def test_a_user_stays_on_one_target(
    app: Litestar, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, "support-bot", {"targets": CANARY})
        async with sdk(app) as client:
            for user in ("alice", "bob", "carol", "dave"):
                for _ in range(3):
                    await client.chat.completions.create(
                        model="support-bot", messages=HELLO, user=user
                    )
        served: dict[str, set[str]] = {}
        for received in [*student.received, *teacher.received]:
            body = received.json()
            served.setdefault(body["user"], set()).add(body["model"])
        assert sorted(served) == ["alice", "bob", "carol", "dave"]
        assert all(len(models) == 1 for models in served.values())


async def test_a_failing_student_falls_back_to_the_teacher(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        student.set_fault(None, ErrorReply(503))
        await _set_alias(app, "support-bot", {"targets": STUDENT_ONLY})
        async with sdk(app) as client:
            answer = await client.chat.completions.create(model="support-bot", messages=HELLO)
        assert answer.choices[0].message.content
        assert [r.json()["model"] for r in teacher.received] == ["gpt-4o"]
        (capture,) = await _captures(engine, 1)
        assert (capture.served_model, capture.upstream, capture.status_code) == (
            "gpt-4o",
            "default",
            200,
        )
        assert capture.metadata_["stillroom_fallback_from"] == "ft:small"
        assert capture.metadata_["stillroom_fallback_reason"] == "status 503"


async def test_a_student_that_cannot_be_reached_falls_back(
    app: Litestar, engine: Engine, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        dead = _targets(("default", "gpt-4o", 0, "teacher"), ("dead", "ft:small", 1, "student"))
        await _set_alias(app, "support-bot", {"targets": dead})
        async with sdk(app) as client:
            answer = await client.chat.completions.create(model="support-bot", messages=HELLO)
        assert answer.choices[0].message.content
        (capture,) = await _captures(engine, 1)
        assert capture.served_model == "gpt-4o"
        assert capture.metadata_["stillroom_fallback_reason"].startswith("connection")


async def test_a_stream_falls_back_before_its_first_byte(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        teacher.interactions = tuple(recording("stream/ruby_chat_stream_basic.yml"))
        student.set_fault(None, ErrorReply.rate_limited())
        await _set_alias(app, "support-bot", {"targets": STUDENT_ONLY})
        async with sdk(app) as client:
            stream = await client.chat.completions.create(
                model="support-bot", messages=HELLO, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text
        (capture,) = await _captures(engine, 1)
        assert (capture.served_model, capture.stream) == ("gpt-4o", True)
        assert capture.metadata_["stillroom_fallback_reason"] == "status 429"


async def test_a_failing_teacher_is_not_retried(
    app: Litestar, engine: Engine, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        teacher.set_fault(None, ErrorReply(500))
        await _set_alias(
            app, "support-bot", {"targets": _targets(("default", "gpt-4o", 1, "teacher"))}
        )
        async with sdk(app) as client:
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="support-bot", messages=HELLO)
        assert len(teacher.received) == 1


async def test_shadow_traffic_is_captured_while_the_client_sees_the_student(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, "support-bot", {"targets": STUDENT_ONLY, "shadow_rate": 1.0})
        async with sdk(app) as client:
            await client.chat.completions.create(model="support-bot", messages=HELLO, stream=False)
        served, shadow = await _captures(engine, 2)
        assert (served.served_model, served.tags) == ("ft:small", [])
        assert (shadow.served_model, shadow.alias, shadow.tags) == (
            "gpt-4o",
            "support-bot",
            ["shadow"],
        )
        assert shadow.metadata_["stillroom_shadow_of"] == served.id
        assert shadow.response is not None and shadow.status_code == 200
        assert [r.json()["model"] for r in teacher.received] == ["gpt-4o"]
        assert "stream" not in teacher.received[0].json()


async def test_models_lists_the_upstream_models_and_the_aliases(
    app: Litestar, teacher: ReplayUpstream
) -> None:
    async with app.lifespan():
        await _set_alias(app, "support-bot", {"targets": CANARY})
        async with sdk(app) as client:
            models = [m async for m in client.models.list()]
        ids = [m.id for m in models]
        assert "support-bot" in ids and len(ids) > 1
        alias = next(m for m in models if m.id == "support-bot")
        assert (alias.object, alias.owned_by) == ("model", "stillroom")


async def test_shadow_work_is_bounded_and_its_failures_are_counted() -> None:
    runner = ShadowRunner(max_in_flight=1)
    gate = asyncio.Event()

    async def waits() -> None:
        await gate.wait()

    async def fails() -> None:
        raise RuntimeError("the teacher exploded")

    assert runner.submit(waits())
    assert not runner.submit(waits())
    gate.set()
    await runner.close(grace_seconds=1)
    assert runner.submit(fails())
    await runner.close(grace_seconds=1)
    await asyncio.sleep(0)
    assert (runner.skipped, runner.failed, runner.in_flight()) == (1, 1, 0)


async def test_a_student_that_refuses_the_request_with_a_400_falls_back_to_the_teacher(
    app: Litestar, engine: Engine, student: ReplayUpstream, teacher: ReplayUpstream
) -> None:
    """``transformers serve`` answers 400 to a tool call its model wrote malformed; vLLM does
    to a prompt past the student's shorter context: the teacher answers instead."""
    async with app.lifespan():
        student.set_fault(
            None,
            ErrorReply(400, "Failed to parse the tool call.", type="invalid_request_error"),
        )
        await _set_alias(app, "support-bot", {"targets": STUDENT_ONLY})
        async with sdk(app) as client:
            answer = await client.chat.completions.create(model="support-bot", messages=HELLO)
            teacher.interactions = tuple(recording("stream/ruby_chat_stream_basic.yml"))
            stream = await client.chat.completions.create(
                model="support-bot", messages=HELLO, stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert answer.choices[0].message.content
        assert text
        assert [r.json()["model"] for r in student.received] == ["ft:small", "ft:small"]
        captures = await _captures(engine, 2)
        assert [(c.served_model, c.status_code) for c in captures] == [
            ("gpt-4o", 200),
            ("gpt-4o", 200),
        ]
        assert {c.metadata_["stillroom_fallback_reason"] for c in captures} == {"status 400"}


async def test_a_transformers_upstream_is_sent_the_merged_path_and_captures_the_ft_name(
    database_url: str,
    engine: Engine,
    tmp_path: Path,
    teacher: ReplayUpstream,
    student: ReplayUpstream,
) -> None:
    empty_alias_tables(engine)
    student_name = "ft:tiny:local:support:ftjob-1"
    merged = tmp_path / "jobs" / "ftjob-1" / "merged"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text("{}")
    settings = Settings(
        database_url=database_url,
        upstream_base_url=teacher.base_url,
        upstreams={"laptop": {"base_url": student.base_url, "kind": "transformers"}},
        training_backends={"local": {"kind": "local", "root": str(tmp_path / "jobs")}},
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        capture_flush_seconds=0.05,
    )
    app = create_app(settings)
    async with app.lifespan():
        targets = _targets(
            ("default", "gpt-4o", 0, "teacher"), ("laptop", student_name, 1, "student")
        )
        await _set_alias(app, "support-bot", {"targets": targets})
        async with sdk(app) as client:
            answer = await client.chat.completions.create(model="support-bot", messages=HELLO)
        assert answer.choices[0].message.content
        assert [r.json()["model"] for r in student.received] == [str(merged)]
        (capture,) = await _captures(engine, 1)
        assert (capture.served_model, capture.upstream) == (student_name, "laptop")
