"""Responses API captures become chat fine-tuning examples: a previous_response_id thread (or
a client resending the whole input) folds into one multi-turn tool-using example that the
validator passes."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine
from sqlmodel import select

from finetune import (
    ValidationOptions,
    create_dataset,
    export_lines,
    request_as_chat,
    response_as_completion,
    validate_jsonl,
)
from proxy.gateway._capture import Exchange, build_row
from storage import Capture, CaptureEdit, CaptureFilter, insert_captures, session_scope
from tests.replay import Interaction, responses_recording

APPROVED = CaptureFilter(status=["approved"])


def _store(engine: Engine, interactions: list[Interaction], *, stream: bool = False) -> None:
    with session_scope(engine) as session:
        for interaction in interactions:
            request = interaction.request_json()
            row = build_row(
                Exchange(
                    request=request,
                    api_key_id="key_a",
                    upstream="default",
                    served_model=request["model"],
                    api="responses",
                    stream=stream,
                    status_code=interaction.status,
                    body=interaction.response_body,
                    content_encoding=interaction.header("content-encoding"),
                )
            )
            row["review_status"] = "approved"
            insert_captures([row], session=session)


def _export(engine: Engine) -> list[dict[str, Any]]:
    dataset = create_dataset(engine, "responses", APPROVED)
    return [json.loads(line) for line in export_lines(engine, dataset.id)]


def _passes(examples: list[dict[str, Any]]) -> bool:
    lines = [json.dumps(e).encode() for e in examples]
    report = validate_jsonl(lines, ValidationOptions(min_examples=1))
    assert report.errors == []
    return report.passed


def test_a_previous_response_id_thread_is_one_tool_using_example(engine: Engine) -> None:
    called, answered = responses_recording("dotnet_Responses_FunctionCallWorks.json")[:2]
    _store(engine, [called, answered])
    (example,) = _export(engine)
    call = called.response_json()["output"][0]
    assert [m["role"] for m in example["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert example["messages"][0]["content"] == (
        "What should I wear for the weather in San Francisco, CA?"
    )
    assert example["messages"][1]["tool_calls"] == [
        {
            "id": call["call_id"],
            "type": "function",
            "function": {"name": "get_weather_at_location", "arguments": call["arguments"]},
        }
    ]
    assert example["messages"][2] == {
        "role": "tool",
        "tool_call_id": call["call_id"],
        "content": "22 celcius and windy",
    }
    text = answered.response_json()["output"][0]["content"][0]["text"]
    assert example["messages"][3] == {"role": "assistant", "content": text}
    assert example["tools"][0]["function"]["name"] == "get_weather_at_location"
    assert example["tools"][0]["type"] == "function"
    assert _passes([example])


def test_a_streamed_tool_loop_resending_its_input_threads_and_leaves_reasoning_out(
    engine: Engine,
) -> None:
    turns = responses_recording("llm_responses_tool_use_streaming.yaml")
    _store(engine, turns, stream=True)
    (example,) = _export(engine)
    roles = [m["role"] for m in example["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert example["messages"][1]["tool_calls"][0]["function"] == {
        "name": "multiply",
        "arguments": '{"a": 1231, "b": 2331}',
    }
    assert (
        "2,869,461" in example["messages"][3]["content"]
        or "2869461" in (example["messages"][3]["content"])
    )
    assert "reasoning" not in json.dumps(example)
    assert _passes([example])


def test_instructions_become_the_system_message_and_developer_reads_as_system() -> None:
    chat = request_as_chat(
        {
            "model": "m",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use metric units."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://example.com/a.png"},
                    ],
                },
                {"type": "reasoning", "id": "rs_1", "summary": []},
            ],
            "tools": [{"type": "web_search"}],
        }
    )
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ]
    assert "tools" not in chat


def test_an_incomplete_answer_reads_as_a_chat_completion_cut_by_length() -> None:
    (interaction,) = responses_recording("dotnet_Responses_MaxTokens.json")
    completion = response_as_completion(interaction.response_json())
    assert completion is not None
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 20


def test_an_edited_response_gives_a_preference_pair(engine: Engine) -> None:
    (interaction,) = responses_recording("dotnet_Responses_MaxTokens.json")[:1]
    _store(engine, [interaction])
    with session_scope(engine) as session:
        capture = session.exec(select(Capture)).one()
        edited = {"role": "assistant", "content": "Mango sun rises / sweet juice on the tongue"}
        session.add(CaptureEdit(capture_id=capture.id, message=edited, reason="finish it"))
    dataset = create_dataset(engine, "prefs", APPROVED)
    assert dataset.counts["preference_pairs"] == 1
    (pair,) = [json.loads(line) for line in export_lines(engine, dataset.id, fmt="dpo")]
    original = interaction.response_json()["output"][0]["content"][0]["text"]
    assert pair == {
        "input": {
            "messages": [{"role": "user", "content": "Write three haikus about tropical fruit"}]
        },
        "preferred_output": [edited],
        "non_preferred_output": [{"role": "assistant", "content": original}],
    }
