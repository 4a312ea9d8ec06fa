"""A Responses API exchange becomes a capture with the columns a chat capture has."""

from __future__ import annotations

from proxy.gateway._capture import Exchange, build_row
from tests.replay import Interaction, responses_recording


def _row(interaction: Interaction, *, stream: bool = False) -> dict[str, object]:
    request = interaction.request_json()
    return build_row(
        Exchange(
            request=request,
            api_key_id="key_1",
            upstream="default",
            served_model=request["model"],
            api="responses",
            stream=stream,
            status_code=interaction.status,
            body=interaction.response_body,
            content_encoding=interaction.header("content-encoding"),
        )
    )


def test_a_function_call_answer_fills_the_chat_columns() -> None:
    first = responses_recording("dotnet_Responses_FunctionCallWorks.json")[0]
    row = _row(first)
    recorded = first.response_json()
    assert row["api"] == "responses"
    assert row["response"] == recorded
    assert row["request"] == first.request_json()
    assert row["completion_id"] == recorded["id"]
    assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (74, 20, 94)
    assert row["finish_reason"] == "tool_calls"
    assert row["has_tool_calls"] is True
    assert row["error"] is None


def test_reasoning_tokens_and_the_whole_request_are_kept() -> None:
    (interaction,) = responses_recording("dotnet_Responses_ResponsesWithReasoning.json")
    row = _row(interaction)
    usage = row["usage"]
    assert isinstance(usage, dict)
    assert usage["output_tokens_details"]["reasoning_tokens"] == 56
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    request = row["request"]
    assert isinstance(request, dict)
    assert request["reasoning"] == {"effort": "xhigh", "summary": "detailed"}
    assert request["instructions"] == "Perform reasoning over any questions asked by the user."
    assert row["finish_reason"] == "stop"


def test_an_incomplete_answer_reads_as_cut_by_length() -> None:
    (interaction,) = responses_recording("dotnet_Responses_MaxTokens.json")
    row = _row(interaction)
    assert row["finish_reason"] == "length"
    assert row["completion_tokens"] == 20


def test_a_stream_is_stored_as_the_response_it_completed_with() -> None:
    (interaction,) = responses_recording("otel_responses_create_streaming.yaml")
    row = _row(interaction, stream=True)
    response = row["response"]
    assert isinstance(response, dict)
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == "This is a test."
    assert row["completion_id"] == response["id"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (
        response["usage"]["input_tokens"],
        response["usage"]["output_tokens"],
    )


def test_same_prompt_through_either_api_hashes_alike() -> None:
    chat = build_row(
        Exchange(
            request={"model": "m", "messages": [{"role": "user", "content": "Hi there"}]},
            api_key_id=None,
            upstream="default",
            served_model="m",
        )
    )
    responses = build_row(
        Exchange(
            request={"model": "m", "input": "Hi there"},
            api_key_id=None,
            upstream="default",
            served_model="m",
            api="responses",
        )
    )
    assert chat["prompt_hash"] == responses["prompt_hash"]
    assert (chat["api"], responses["api"]) == ("chat", "responses")
