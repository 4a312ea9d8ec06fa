"""The curation services: filters from query strings, checked edits, review actions, bulk
actions with a true preview, and end-user feedback."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from finetune import (
    CaptureNotFound,
    FeedbackInput,
    InvalidCurationInput,
    assistant_message,
    bulk_preview,
    capture_detail,
    delete_captures,
    edit_capture,
    feedback_input,
    feedback_kind,
    filter_from_params,
    list_captures,
    rate_capture,
    record_feedback,
    retag_capture,
    run_bulk,
    set_capture_status,
)
from proxy.gateway._capture import Exchange, build_row
from storage import CaptureFilter, get_capture, list_capture_edits, list_feedback, session_scope
from tests.curation_rows import capture_id, capture_row, store, store_numbered
from tests.replay import recording

# -- filters from query strings ----------------------------------------------------------------


def test_query_pairs_become_a_filter() -> None:
    parsed = filter_from_params(
        [
            ("status", "approved,rejected"),
            ("tag", "good"),
            ("tag", "short"),
            ("metadata.team", "a"),
            ("metadata[env]", "prod"),
            ("created_after", "2026-11-01T12:00:00Z"),
            ("created_before", "1793534400"),
            ("has_tool_calls", "true"),
            ("error", "no"),
            ("min_total_tokens", "100"),
            ("search", "zebra"),
            ("edited", "yes"),
        ]
    )
    assert parsed == CaptureFilter(
        status=["approved", "rejected"],
        tags=["good", "short"],
        metadata={"team": "a", "env": "prod"},
        created_after=datetime(2026, 11, 1, 12, 0, tzinfo=UTC),
        created_before=datetime.fromtimestamp(1793534400, UTC),
        has_tool_calls=True,
        error=False,
        min_total_tokens=100,
        search="zebra",
        edited=True,
    )


def test_a_time_without_a_zone_is_utc() -> None:
    parsed = filter_from_params([("created_after", "2026-11-01T12:00:00")])
    assert parsed.created_after == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pairs", "param"),
    [
        ([("colour", "red")], "colour"),
        ([("status", "maybe")], "status"),
        ([("tag", "a"), ("status", "nope")], "status"),
        ([("feedback", "angry")], "feedback"),
        ([("created_after", "yesterday")], "created_after"),
        ([("stream", "sometimes")], "stream"),
        ([("edited", "perhaps")], "edited"),
        ([("min_prompt_tokens", "ten")], "min_prompt_tokens"),
        ([("max_total_tokens", "-1")], "max_total_tokens"),
        ([("search", "")], "search"),
    ],
)
def test_a_bad_filter_parameter_is_named(pairs: list[tuple[str, str]], param: str) -> None:
    with pytest.raises(InvalidCurationInput) as refused:
        filter_from_params(pairs)
    assert refused.value.param == param
    assert param in refused.value.message


# -- assistant messages -------------------------------------------------------------------------


def _call(arguments: str, **changes: Any) -> dict[str, Any]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }
    call.update(changes)
    return call


def test_a_message_of_text_or_tool_calls_is_accepted() -> None:
    assert assistant_message({"content": "Paris."}) == {"role": "assistant", "content": "Paris."}
    with_calls = {"role": "assistant", "content": None, "tool_calls": [_call('{"city": "Paris"}')]}
    assert assistant_message(with_calls) == with_calls


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ("Paris.", "message"),
        ({"role": "user", "content": "Paris."}, "message.role"),
        ({"role": "assistant", "content": ["Paris."]}, "message.content"),
        ({"role": "assistant", "content": None}, "message.content"),
        ({"role": "assistant", "content": ""}, "message.content"),
        ({"role": "assistant", "content": "x", "colour": "red"}, "message.colour"),
        ({"role": "assistant", "tool_calls": {"id": "c"}}, "message.tool_calls"),
        (
            {"role": "assistant", "tool_calls": [_call("{")]},
            "message.tool_calls[0].function.arguments",
        ),
        (
            {"role": "assistant", "tool_calls": [_call('"{\\"city\\": \\"Paris\\"}"')]},
            "message.tool_calls[0].function.arguments",
        ),
        ({"role": "assistant", "tool_calls": [_call("{}", id="")]}, "message.tool_calls[0].id"),
        (
            {"role": "assistant", "tool_calls": [_call("{}", type="web")]},
            "message.tool_calls[0].type",
        ),
        (
            {"role": "assistant", "tool_calls": [_call("{}", function={"arguments": "{}"})]},
            "message.tool_calls[0].function.name",
        ),
    ],
)
def test_a_message_that_breaks_the_schema_is_refused_by_name(message: Any, param: str) -> None:
    with pytest.raises(InvalidCurationInput) as refused:
        assistant_message(message)
    assert refused.value.param == param


# -- reading and reviewing ---------------------------------------------------------------------


def test_an_edit_is_stored_beside_the_original_and_becomes_the_answer(engine: Engine) -> None:
    [first] = store_numbered(engine, 1)
    with session_scope(engine) as session:
        edit_capture(first, {"content": "A1, fixed."}, author="ana", reason="typo", session=session)
        edit_capture(first, {"content": "A1, fixed twice."}, author="bo", session=session)
    with session_scope(engine) as session:
        detail = capture_detail(first, session=session)
    assert detail.messages[-1] == {"role": "user", "content": "q1"}
    assert detail.original_answer == {"role": "assistant", "content": "a1"}
    assert detail.answer == {"role": "assistant", "content": "A1, fixed twice."}
    assert [(e.author, e.reason) for e in detail.edits] == [("ana", "typo"), ("bo", None)]
    assert detail.capture.response is not None
    assert detail.capture.response["choices"][0]["message"]["content"] == "a1"


def test_a_bad_edit_changes_nothing(engine: Engine) -> None:
    [first] = store_numbered(engine, 1)
    broken = {"role": "assistant", "tool_calls": [_call("not json")]}
    with session_scope(engine) as session, pytest.raises(InvalidCurationInput):
        edit_capture(first, broken, session=session)
    with session_scope(engine) as session, pytest.raises(CaptureNotFound):
        edit_capture("cap_missing", {"content": "x"}, session=session)
    with session_scope(engine) as session:
        assert list_capture_edits(first, session=session) == []


def test_status_changes_all_or_nothing(engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    with session_scope(engine) as session, pytest.raises(CaptureNotFound) as refused:
        set_capture_status([ids[0], "cap_missing"], "approved", session=session)
    assert "cap_missing" in refused.value.message
    with session_scope(engine) as session:
        assert get_capture(ids[0], session=session).review_status == "pending"  # type: ignore[union-attr]
        assert set_capture_status(ids, "rejected", session=session) == 2
        assert set_capture_status(ids, "pending", session=session) == 2


def test_tags_stay_unique_and_sorted(engine: Engine) -> None:
    [first] = store_numbered(engine, 1)
    with session_scope(engine) as session:
        retag_capture(first, add=["zeta", "alpha", "zeta"], session=session)
        capture = retag_capture(first, add=["mid"], remove=["zeta"], session=session)
        assert capture.tags == ["alpha", "mid"]
        with pytest.raises(InvalidCurationInput):
            retag_capture(first, add=["  "], session=session)
    with session_scope(engine) as session:
        assert get_capture(first, session=session).tags == ["alpha", "mid"]  # type: ignore[union-attr]


@pytest.mark.parametrize("rating", [0, 6, 2.5, True])
def test_a_rating_is_one_to_five(engine: Engine, rating: Any) -> None:
    [first] = store_numbered(engine, 1)
    with session_scope(engine) as session:
        assert rate_capture(first, 4, session=session).rating == 4
        with pytest.raises(InvalidCurationInput) as refused:
            rate_capture(first, rating, session=session)
        assert refused.value.param == "rating"
        assert rate_capture(first, None, session=session).rating is None


def test_has_tool_calls_matches_a_conversation_whose_earlier_turn_called_a_tool(
    engine: Engine,
) -> None:
    # A real three-request tool chain: the third request carries two earlier assistant turns
    # that called tools and is answered in text (finish_reason "stop").
    chain = recording("tools/llm_tool_chain_three_turns_gzip.yaml")
    rows = []
    for n, interaction in enumerate([*chain, *recording("chat/ruby_chat_gpt35.yml")]):
        exchange = Exchange(
            request=interaction.request_json(),
            api_key_id=None,
            upstream="default",
            served_model="gpt-4o-mini",
            capture_id=capture_id(n + 1),
            status_code=interaction.status,
            body=interaction.response_body,
            content_encoding=interaction.header("content-encoding"),
        )
        rows.append(build_row(exchange))
    store(engine, rows)
    finish = {row["id"]: row["finish_reason"] for row in rows}

    with session_scope(engine) as session:
        called = list_captures(CaptureFilter(has_tool_calls=True), session=session, order="asc")
        plain = list_captures(CaptureFilter(has_tool_calls=False), session=session)

    ids = [item["id"] for item in called.items]
    assert ids == [capture_id(1), capture_id(2), capture_id(3)]
    assert [finish[i] for i in ids] == ["tool_calls", "tool_calls", "stop"]
    assert [item["id"] for item in plain.items] == [capture_id(4)]


def test_a_page_is_at_most_five_hundred(engine: Engine) -> None:
    store_numbered(engine, 3)
    with session_scope(engine) as session:
        page = list_captures(CaptureFilter(), session=session, limit=2, order="asc")
        assert [item["id"] for item in page.items] == [capture_id(1), capture_id(2)]
        assert page.next_cursor == capture_id(2)
        with pytest.raises(InvalidCurationInput) as refused:
            list_captures(CaptureFilter(), session=session, limit=501)
    assert refused.value.param == "limit"


def test_delete_needs_every_capture_to_exist(engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    with session_scope(engine) as session, pytest.raises(CaptureNotFound):
        delete_captures([ids[0], "cap_missing"], session=session)
    with session_scope(engine) as session:
        assert delete_captures(ids, session=session) == 2


# -- bulk --------------------------------------------------------------------------------------


def test_bulk_preview_counts_what_the_run_then_changes(engine: Engine) -> None:
    store_numbered(engine, 10, metadata_={"team": "a"})
    store(engine, [capture_row(11, metadata_={"team": "b"})])
    team_a = CaptureFilter(metadata={"team": "a"})
    with session_scope(engine) as session:
        set_capture_status([capture_id(1)], "approved", session=session)
        assert bulk_preview(team_a, "approve", session=session) == 9
    batches: list[int] = []
    assert run_bulk(engine, team_a, "approve", batch_size=4, on_batch=batches.append) == 9
    assert batches == [4, 4, 1]
    assert run_bulk(engine, team_a, "approve") == 0
    with session_scope(engine) as session:
        assert bulk_preview(CaptureFilter(status=["approved"]), "reject", session=session) == 10


def test_bulk_tag_untag_and_delete(engine: Engine) -> None:
    store_numbered(engine, 5)
    two = CaptureFilter(search="q2")
    assert run_bulk(engine, CaptureFilter(), "tag", tags=["seen", "x"], batch_size=2) == 5
    assert run_bulk(engine, two, "untag", tags=["x"]) == 1
    with session_scope(engine) as session:
        assert bulk_preview(CaptureFilter(tags=["x"]), "delete", session=session) == 4
        assert get_capture(capture_id(2), session=session).tags == ["seen"]  # type: ignore[union-attr]
    assert run_bulk(engine, CaptureFilter(tags=["x"]), "delete", batch_size=3) == 4
    with session_scope(engine) as session:
        assert [c["id"] for c in list_captures(CaptureFilter(), session=session).items] == [
            capture_id(2)
        ]


def test_bulk_tagging_needs_tags(engine: Engine) -> None:
    store_numbered(engine, 1)
    with pytest.raises(InvalidCurationInput) as refused:
        run_bulk(engine, CaptureFilter(), "tag")
    assert refused.value.param == "tags"
    with session_scope(engine) as session, pytest.raises(InvalidCurationInput):
        bulk_preview(CaptureFilter(), "approve", tags=["x"], session=session)


# -- feedback ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("submitted", "kind"),
    [
        (FeedbackInput("c", thumbs=1), "positive"),
        (FeedbackInput("c", thumbs=-1, score=0.9), "negative"),
        (FeedbackInput("c", score=0.7), "positive"),
        (FeedbackInput("c", score=0.5), "neutral"),
        (FeedbackInput("c", score=0.3), "negative"),
        (FeedbackInput("c", comment="meh"), "neutral"),
        (FeedbackInput("c", corrected={"role": "assistant", "content": "x"}), "negative"),
    ],
)
def test_feedback_sums_up_as_positive_negative_or_neutral(
    submitted: FeedbackInput, kind: str
) -> None:
    assert feedback_kind(submitted) == kind


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"thumbs": "up"}, "completion_id"),
        ({"completion_id": "c", "thumbs": "sideways"}, "thumbs"),
        ({"completion_id": "c", "thumbs": True}, "thumbs"),
        ({"completion_id": "c", "score": 4}, "score"),
        ({"completion_id": "c", "score": "0.5"}, "score"),
        ({"completion_id": "c"}, "thumbs"),
        ({"completion_id": "c", "stars": 5}, "stars"),
        ({"completion_id": "c", "corrected": {"role": "user", "content": "x"}}, "corrected.role"),
    ],
)
def test_bad_feedback_is_refused_by_name(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidCurationInput) as refused:
        feedback_input(body)
    assert refused.value.param == param


def test_feedback_input_reads_thumbs_words_and_numbers() -> None:
    assert feedback_input({"completion_id": "c", "thumbs": "down"}).thumbs == -1
    assert feedback_input({"completion_id": "c", "thumbs": 1, "score": 1}).score == 1.0


def test_feedback_is_stored_and_summed_up_on_the_capture(engine: Engine) -> None:
    [first] = store_numbered(engine, 1)
    with session_scope(engine) as session:
        record_feedback(
            feedback_input({"completion_id": "chatcmpl-1", "thumbs": "up", "comment": "great"}),
            api_key_id="key_a",
            session=session,
        )
    with session_scope(engine) as session:
        detail = capture_detail(first, session=session)
    assert detail.capture.feedback == "positive"
    assert [(f.thumbs, f.comment, f.api_key_id) for f in detail.feedback] == [(1, "great", "key_a")]
    assert detail.edits == []


def test_a_corrected_answer_becomes_an_edit_by_feedback(engine: Engine) -> None:
    [first] = store_numbered(engine, 1)
    corrected = {"role": "assistant", "content": "The right answer."}
    body = {"completion_id": "chatcmpl-1", "corrected": corrected, "comment": "was wrong"}
    with session_scope(engine) as session:
        record_feedback(feedback_input(body), api_key_id="key_a", session=session)
    with session_scope(engine) as session:
        detail = capture_detail(first, session=session)
    assert detail.capture.feedback == "negative"
    assert detail.answer == corrected
    assert [(e.author, e.reason) for e in detail.edits] == [("feedback", "was wrong")]
    assert detail.feedback[0].corrected == corrected


def test_feedback_only_reaches_the_callers_own_completions(engine: Engine) -> None:
    [first] = store_numbered(engine, 1)
    for completion_id, key in [("chatcmpl-1", "key_other"), ("chatcmpl-404", "key_a")]:
        with session_scope(engine) as session, pytest.raises(CaptureNotFound) as refused:
            record_feedback(
                FeedbackInput(completion_id, thumbs=-1), api_key_id=key, session=session
            )
        assert refused.value.param == "completion_id"
    with session_scope(engine) as session:
        assert list_feedback(first, session=session) == []
        assert get_capture(first, session=session).feedback is None  # type: ignore[union-attr]
