"""The OpenAI Agents SDK through a running ``stillroom serve``: an agent with a function tool
and a hand-off, on an alias whose student is the chat-only sandbox. Every model call is
captured as a Responses capture, and the conversation exports as one multi-turn tool-using
fine-tuning example that the validator passes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from agents import (
    Agent,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from sqlalchemy import Engine
from sqlmodel import col, select

from finetune import ValidationOptions, create_dataset, export_lines, validate_jsonl
from storage import Capture, CaptureFilter, make_engine, session_scope
from tests.sandbox import running_sandbox
from tests.support import ServerProcess, running_server, wait_for

ADMIN_KEY = "admin-agents-e2e"
CLIENT_KEY = "sk-agents-e2e-client"
STUDENT = "gpt-4o-mini-2024-07-18"
QUESTION = "What is the weather in Oslo?"


@pytest.fixture(scope="module")
def server(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("agents")
    with running_sandbox() as sandbox:
        upstreams = {"sandbox": {"base_url": sandbox, "api": "chat"}}
        with running_server(
            database_url=server_database_url,
            upstream_base_url=sandbox,
            workdir=workdir,
            env={"STILLROOM_ADMIN_KEY": ADMIN_KEY, "STILLROOM_UPSTREAMS": json.dumps(upstreams)},
        ) as process:
            targets = [
                {"upstream": "default", "model": "gpt-4o", "weight": 0, "role": "teacher"},
                {"upstream": "sandbox", "model": STUDENT, "weight": 1, "role": "student"},
            ]
            answer = httpx.put(
                f"{process.base_url}/admin/aliases/agent-bot",
                json={"targets": targets},
                headers={"authorization": f"Bearer {ADMIN_KEY}"},
            )
            assert answer.status_code == 200, answer.text
            yield process


@function_tool
def lookup_weather(query: str) -> str:
    """Look up the weather the question asks about."""
    return f"Sunny and 21 degrees ({query})"


async def _run_agents(server: ServerProcess) -> str:
    set_tracing_disabled(True)  # traces would go to OpenAI; this test talks to nobody else
    client = openai.AsyncOpenAI(base_url=server.v1, api_key=CLIENT_KEY, max_retries=0)
    model = OpenAIResponsesModel(model="agent-bot", openai_client=client)
    expert = Agent(
        name="Weather expert",
        instructions="Answer weather questions with the lookup tool.",
        tools=[lookup_weather],
        model=model,
    )
    triage = Agent(
        name="Triage",
        instructions="Hand weather questions to the weather expert.",
        handoffs=[expert],
        model=model,
    )
    result = await Runner.run(triage, QUESTION)
    assert result.last_agent.name == "Weather expert"
    return str(result.final_output)


def _captures(engine: Engine, count: int) -> list[Capture]:
    found: list[Capture] = []

    def stored() -> bool:
        nonlocal found
        with session_scope(engine) as session:
            found = list(session.exec(select(Capture).order_by(col(Capture.id))).all())
        return len(found) >= count

    wait_for(stored, timeout=15)
    return found


async def test_an_agent_with_a_tool_and_a_hand_off_is_captured_and_exported(
    server: ServerProcess, server_database_url: str
) -> None:
    final = await _run_agents(server)
    engine = make_engine(server_database_url)
    try:
        calls = _captures(engine, 3)
        assert [c.api for c in calls] == ["responses"] * 3
        assert [c.served_model for c in calls] == [STUDENT] * 3
        assert [c.finish_reason for c in calls] == ["tool_calls", "tool_calls", "stop"]
        called = [c.response["output"][0].get("name") for c in calls[:2] if c.response]
        assert called == ["transfer_to_weather_expert", "lookup_weather"]
        assert calls[2].response is not None
        assert calls[2].response["output"][0]["content"][0]["text"] == final
        with session_scope(engine) as session:
            for capture in calls:
                capture.review_status = "approved"
                session.add(capture)
        dataset = create_dataset(engine, "agents", CaptureFilter(status=["approved"]))
        examples = [json.loads(line) for line in export_lines(engine, dataset.id)]
    finally:
        engine.dispose()
    # Two agents, two system prompts: the expert's conversation holds all three calls (the
    # triage's hand-off at weight 0, taught by the triage's own one-turn example beside it);
    # the expert's tool-call turn is folded into it as an earlier turn of the same thread.
    assert len(examples) == 2
    longest: dict[str, Any] = max(examples, key=lambda e: len(e["messages"]))
    (triage,) = [e for e in examples if e is not longest]
    assert triage["messages"][-1]["tool_calls"][0]["function"]["name"] == (
        "transfer_to_weather_expert"
    )
    assert longest["messages"][2]["weight"] == 0
    assert [m["role"] for m in longest["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert longest["messages"][1]["content"] == QUESTION
    assert longest["messages"][-1] == {"role": "assistant", "content": final}
    assert longest["tools"][0]["function"]["name"] == "lookup_weather"
    lines = [json.dumps(e).encode() for e in examples]
    report = validate_jsonl(lines, ValidationOptions(min_examples=1))
    assert report.passed, report.errors
