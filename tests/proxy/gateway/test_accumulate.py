"""A stream's capture is the chat.completion the non-streaming call would have returned."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from proxy.gateway._accumulate import StreamError, accumulate_chunks, accumulate_sse
from tests.replay import recording


def sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 7, "model": "m"} | {
        "choices": choices,
        **extra,
    }


def test_recorded_basic_stream_rebuilds_content_and_finish_reason() -> None:
    (interaction,) = recording("stream/ruby_chat_stream_basic.yml")
    completion = accumulate_sse(interaction.decoded_body())
    assert completion is not None
    assert completion["id"] == "chatcmpl-8P7s3sDocXsBE8nhq60IMx3WFu4B8"
    assert completion["object"] == "chat.completion"
    assert completion["model"] == "gpt-3.5-turbo-0613"
    assert completion["choices"][0]["message"]["content"] == "Hello! How can I assist you today?"
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert completion["usage"] is None


def test_recorded_tool_call_deltas_assemble_into_valid_arguments() -> None:
    (interaction,) = recording("tools/openllmetry_stream_tool_call_deltas.yaml")
    completion = accumulate_sse(interaction.decoded_body())
    assert completion is not None
    message = completion["choices"][0]["message"]
    assert message["content"] is None
    (call,) = message["tool_calls"]
    assert call["id"] == "call_P9Ayqu3UQNYuTBVAg2sLimh9"
    assert call["function"]["name"] == "get_current_weather"
    assert json.loads(call["function"]["arguments"]) == {"location": "San Francisco"}
    assert completion["choices"][0]["finish_reason"] == "tool_calls"


def test_compatible_server_repeating_tool_name_keeps_one_name_and_usage() -> None:
    first = recording("stream/llm_openrouter_compat_stream_tool_calls.yaml")[0]
    completion = accumulate_sse(first.decoded_body())
    assert completion is not None
    (call,) = completion["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "llm_version", "arguments": "{}"}
    assert completion["usage"]["total_tokens"] == 74
    assert completion["provider"] == "Novita"


def test_azure_empty_first_chunk_does_not_blank_the_id() -> None:
    interaction = recording("stream/openllmetry_azure_openai_stream_prompt_filter_results.yaml")[1]
    completion = accumulate_sse(interaction.decoded_body())
    assert completion is not None
    assert completion["id"] == "chatcmpl-DPTBaSsimU1JbOyrWiQNkSSfOPQE7"
    assert completion["model"] == "gpt-4.1-mini-2025-04-14"
    assert "obfuscation" not in completion
    assert completion["prompt_filter_results"][0]["prompt_index"] == 0
    assert completion["choices"][0]["message"]["content"].startswith("Why did the developer")


def test_every_choice_of_n_is_kept_in_index_order() -> None:
    body = sse(
        chunk(
            [{"index": 1, "delta": {"role": "assistant", "content": "B"}, "finish_reason": None}]
        ),
        chunk(
            [{"index": 0, "delta": {"role": "assistant", "content": "A"}, "finish_reason": None}]
        ),
        chunk([{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]),
        chunk([{"index": 1, "delta": {"content": "b"}, "finish_reason": "length"}]),
        chunk([], usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    )
    completion = accumulate_sse(body)
    assert completion is not None
    assert [c["message"]["content"] for c in completion["choices"]] == ["Aa", "Bb"]
    assert [c["finish_reason"] for c in completion["choices"]] == ["stop", "length"]
    assert completion["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


def test_refusal_and_logprobs_are_joined() -> None:
    token = {"token": "No", "logprob": -0.1, "bytes": [78, 111], "top_logprobs": []}
    body = sse(
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "refusal": "I can"},
                    "logprobs": {"content": None, "refusal": [token]},
                }
            ]
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"refusal": "'t help."},
                    "logprobs": {"content": None, "refusal": [token]},
                    "finish_reason": "stop",
                }
            ]
        ),
    )
    completion = accumulate_sse(body)
    assert completion is not None
    choice = completion["choices"][0]
    assert choice["message"]["refusal"] == "I can't help."
    assert choice["message"]["content"] is None
    assert choice["logprobs"] == {"content": None, "refusal": [token, token]}


def test_parallel_tool_calls_are_assembled_by_index() -> None:
    body = sse(
        chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "f", "arguments": ""},
                            },
                            {
                                "index": 1,
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "g", "arguments": ""},
                            },
                        ],
                    },
                }
            ]
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 1, "function": {"arguments": '{"y":'}}]},
                }
            ]
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"x":1}'}}]},
                }
            ]
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]},
                    "finish_reason": "tool_calls",
                }
            ]
        ),
    )
    completion = accumulate_sse(body)
    assert completion is not None
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls
    ] == [
        ("call_a", "f", {"x": 1}),
        ("call_b", "g", {"y": 2}),
    ]


def test_legacy_function_call_is_assembled() -> None:
    body = sse(
        chunk(
            [
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "content": None,
                        "function_call": {"name": "get_weather", "arguments": ""},
                    },
                }
            ]
        ),
        chunk(
            [
                {
                    "index": 0,
                    "delta": {"function_call": {"arguments": '{"city": "Paris"}'}},
                    "finish_reason": "function_call",
                }
            ]
        ),
    )
    completion = accumulate_sse(body)
    assert completion is not None
    message = completion["choices"][0]["message"]
    assert message["function_call"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert completion["choices"][0]["finish_reason"] == "function_call"


def test_stream_cut_mid_event_keeps_the_whole_events() -> None:
    body = sse(
        chunk([{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]),
        chunk([{"index": 0, "delta": {"content": "lo"}}]),
        done=False,
    )
    completion = accumulate_sse(body + b'data: {"id": "chatcmpl-x", "choi')
    assert completion is not None
    assert completion["choices"][0]["message"]["content"] == "Hello"
    assert completion["choices"][0]["finish_reason"] is None


def test_error_event_raises_with_the_upstream_error() -> None:
    with pytest.raises(StreamError) as raised:
        accumulate_chunks([{"error": {"message": "overloaded", "type": "server_error"}}])
    assert raised.value.error == {"message": "overloaded", "type": "server_error"}


def test_no_chunks_gives_nothing() -> None:
    assert accumulate_sse(b": keep-alive\n\n") is None
