"""A Responses stream's capture is the response object its terminal event carries, and a
stream cut short keeps every item the client saw."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from proxy.gateway._accumulate import StreamError
from proxy.gateway._accumulate_responses import accumulate_response_sse
from tests.replay import Interaction, responses_recording

STREAMS = [
    ("dotnet_Responses_HelloWorldStreaming_gpt-4o-mini.json", 0),
    ("dotnet_Responses_FunctionCallStreamingWorks.json", 0),
    ("ruby_responses_stream.yml", 0),
    ("otel_responses_create_streaming.yaml", 0),
    ("llm_responses_tool_use_streaming.yaml", 0),
    ("llm_responses_tool_use_streaming.yaml", 1),
]


def _completed(interaction: Interaction) -> dict[str, Any]:
    for event in interaction.sse_events():
        data = event.split(b"data: ", 1)[-1]
        if b'"type":"response.completed"' in data:
            response: dict[str, Any] = orjson.loads(data)["response"]
            return response
    raise AssertionError("no response.completed in the recording")


@pytest.mark.parametrize(("name", "index"), STREAMS)
def test_recorded_stream_rebuilds_what_response_completed_carries(name: str, index: int) -> None:
    interaction = responses_recording(name)[index]
    assert accumulate_response_sse(interaction.decoded_body()) == _completed(interaction)


@pytest.mark.parametrize(("name", "index"), STREAMS)
def test_without_the_terminal_event_the_deltas_rebuild_the_same_output(
    name: str, index: int
) -> None:
    interaction = responses_recording(name)[index]
    cut = b"".join(e for e in interaction.sse_events() if b"response.completed" not in e)
    rebuilt = accumulate_response_sse(cut)
    assert rebuilt is not None
    assert rebuilt["output"] == _completed(interaction)["output"]
    assert rebuilt["status"] == "in_progress"


def test_function_call_arguments_are_joined_from_their_deltas() -> None:
    interaction = responses_recording("dotnet_Responses_FunctionCallStreamingWorks.json")[0]
    events = interaction.sse_events()
    # Cut right after the last arguments delta: no .done event, no output_item.done.
    last_delta = max(
        i for i, e in enumerate(events) if b"response.function_call_arguments.delta" in e
    )
    rebuilt = accumulate_response_sse(b"".join(events[: last_delta + 1]))
    assert rebuilt is not None
    (call,) = [item for item in rebuilt["output"] if item.get("type") == "function_call"]
    final = [i for i in _completed(interaction)["output"] if i["type"] == "function_call"]
    assert call["arguments"] == final[0]["arguments"]
    assert orjson.loads(call["arguments"]) == orjson.loads(final[0]["arguments"])


def test_text_deltas_cut_mid_event_keep_the_text_that_came_whole() -> None:
    interaction = responses_recording("ruby_responses_stream.yml")[0]
    events = interaction.sse_events()
    deltas = [i for i, e in enumerate(events) if b"response.output_text.delta" in e]
    body = b"".join(events[: deltas[3] + 1]) + events[deltas[4]][:30]
    rebuilt = accumulate_response_sse(body)
    assert rebuilt is not None
    text = "".join(orjson.loads(events[i].split(b"data: ", 1)[1])["delta"] for i in deltas[:4])
    assert rebuilt["output"][0]["content"][0]["text"] == text


def test_an_error_event_is_the_streams_error() -> None:
    error = {"type": "error", "code": "server_error", "message": "boom", "param": None}
    body = b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"
    with pytest.raises(StreamError) as raised:
        accumulate_response_sse(body)
    assert raised.value.error == {"code": "server_error", "message": "boom", "param": None}


def test_response_failed_is_the_answer_with_its_error() -> None:
    failed = {
        "type": "response.failed",
        "sequence_number": 3,
        "response": {
            "id": "resp_1",
            "object": "response",
            "status": "failed",
            "error": {"code": "server_error", "message": "The model failed."},
            "output": [],
        },
    }
    body = b"event: response.failed\ndata: " + orjson.dumps(failed) + b"\n\n"
    assert accumulate_response_sse(body) == failed["response"]
