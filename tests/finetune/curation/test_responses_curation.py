"""Reviewing a Responses capture: the console, the CLI and the admin API see the conversation
and the answer in chat form, as for a chat capture."""

from __future__ import annotations

from sqlalchemy import Engine

from finetune import capture_detail
from proxy.gateway._capture import Exchange, build_row
from storage import insert_captures, session_scope
from tests.replay import responses_recording


def test_a_responses_capture_reads_as_a_conversation_and_its_answer(engine: Engine) -> None:
    called = responses_recording("dotnet_Responses_FunctionCallWorks.json")[0]
    request = called.request_json()
    row = build_row(
        Exchange(
            request=request,
            api_key_id="key_a",
            upstream="default",
            served_model=request["model"],
            api="responses",
            status_code=200,
            body=called.response_body,
        )
    )
    with session_scope(engine) as session:
        insert_captures([row], session=session)
        detail = capture_detail(row["id"], session=session)
        messages, answer = detail.messages, detail.answer
    assert messages == [
        {"role": "user", "content": "What should I wear for the weather in San Francisco, CA?"}
    ]
    assert answer is not None
    (call,) = answer["tool_calls"]
    assert call["function"]["name"] == "get_weather_at_location"
    assert call["id"] == called.response_json()["output"][0]["call_id"]
