"""The capture list's rows: the last user message, the start of the current answer or the
tools it called, and whether an edit replaced the answer."""

from __future__ import annotations

from sqlalchemy import Engine

from finetune import edit_capture, list_captures
from finetune.curation import PREVIEW_CHARS, CapturePreview
from finetune.curation._previews import preview
from storage import CaptureFilter, session_scope
from tests.curation_rows import capture_id, capture_row, store


def test_the_preview_is_the_last_user_message_and_the_answer_folded_to_one_line() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second\n\n  question"},
        {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
    ]
    answer = {"role": "assistant", "content": "The  answer\nis here."}
    assert preview(messages, answer, edited=False) == CapturePreview(
        edited=False,
        last_user_text="Second question",
        answer_text="The answer is here.",
        answer_tools=[],
    )


def test_a_tool_calling_answer_names_its_tools_and_content_parts_are_read_as_text() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    answer = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            },
            {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ],
    }
    found = preview(messages, answer, edited=True)
    assert found.last_user_text == "What is in [image_url]"
    assert found.answer_text is None
    assert found.answer_tools == ["get_weather", "get_time"]
    assert found.edited is True


def test_a_long_message_is_cut_with_an_ellipsis_and_a_missing_answer_is_none() -> None:
    found = preview([{"role": "user", "content": "word " * 100}], None, edited=False)
    assert found.last_user_text is not None
    assert len(found.last_user_text) == PREVIEW_CHARS
    assert found.last_user_text.endswith("word…")
    assert found.answer_text is None and found.answer_tools == []
    assert preview("not a list", "not a message", edited=False).last_user_text is None


def test_the_list_shows_each_capture_with_its_current_answer_and_whether_it_was_edited(
    engine: Engine,
) -> None:
    store(engine, [capture_row(1, question="Where is my parcel?"), capture_row(2)])
    store(engine, [capture_row(3, response=None, status_code=502)])
    with session_scope(engine) as session:
        edit_capture(
            capture_id(1), {"role": "assistant", "content": "It left today."}, session=session
        )
    with session_scope(engine) as session:
        rows = list_captures(CaptureFilter(), session=session).items
    shown = {
        row["id"]: (row["edited"], row["last_user_text"], row["answer_text"], row["answer_tools"])
        for row in rows
    }
    assert shown == {
        capture_id(1): (True, "Where is my parcel?", "It left today.", []),
        capture_id(2): (False, "q2", "a2", []),
        capture_id(3): (False, "q3", None, []),
    }
    with session_scope(engine) as session:
        edited = list_captures(CaptureFilter(edited=True), session=session).items
    assert [row["id"] for row in edited] == [capture_id(1)]


def test_a_responses_capture_shows_its_last_input_message_and_its_output(engine: Engine) -> None:
    request = {
        "model": "gpt-4o-mini",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "First question"},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Weather in Oslo?"}],
            },
        ],
    }
    response = {
        "id": "resp_1",
        "object": "response",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
            },
        ],
    }
    store(engine, [capture_row(1, request=request, response=response, api="responses")])
    with session_scope(engine) as session:
        (row,) = list_captures(CaptureFilter(), session=session).items
    assert (row["last_user_text"], row["answer_text"], row["answer_tools"]) == (
        "Weather in Oslo?",
        None,
        ["get_weather"],
    )
