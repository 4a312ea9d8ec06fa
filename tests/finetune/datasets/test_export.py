"""Exporting datasets as chat fine-tuning and preference JSONL, and diffing them, on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from finetune import (
    PREFERENCE_KEY,
    DatasetNotFound,
    InvalidDatasetRequest,
    RedactionConfig,
    Redactor,
    create_dataset,
    delete_dataset,
    diff_datasets,
    export_lines,
    open_export,
    set_capture_status,
    validate_jsonl,
)
from finetune.datasets._validate import ValidationOptions
from proxy.gateway._capture import Exchange, build_row
from storage import CaptureFilter, read_examples_page, session_scope
from tests.finetune._dataset_helpers import (
    add_edit,
    add_feedback,
    answer,
    capture,
    question,
    recorded_rows,
    store,
    tool_call,
)

APPROVED = CaptureFilter(status=["approved"])
LOOKUP_TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]


def stored_in_order(engine: Engine, dataset_id: str, split: str) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        rows = read_examples_page(dataset_id, split, session=session, limit=10_000)
    return [row.example for row in rows]


def parse(lines: Any) -> list[dict[str, Any]]:
    chunks = list(lines)
    assert all(chunk.endswith(b"\n") and chunk.count(b"\n") == 1 for chunk in chunks)
    return [json.loads(chunk) for chunk in chunks]


def test_recorded_dataset_exports_jsonl_that_round_trips_and_validates(engine: Engine) -> None:
    store(engine, recorded_rows())
    dataset = create_dataset(engine, "recorded", APPROVED)
    everything: list[dict[str, Any]] = []
    for split in ("train", "validation", "test"):
        exported = parse(export_lines(engine, dataset.id, split=split))
        assert exported == stored_in_order(engine, dataset.id, split)
        assert len(exported) == dataset.counts[split]
        everything += exported
    assert parse(export_lines(engine, dataset.id)) == everything
    assert any(m.get("tool_calls") for example in everything for m in example["messages"])
    # The real recordings hold 8 distinct conversations; OpenAI wants 10, so ask for 5 here.
    report = validate_jsonl(export_lines(engine, dataset.id), ValidationOptions(min_examples=5))
    assert report.errors == []
    assert report.examples == 8


WEATHER_TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]


def _weather_capture(n: int, *, streamed: bool) -> dict[str, Any]:
    """The second turn of one conversation, as a streaming and as a non-streaming client had
    it: the stream opened each tool call with an empty text delta, so that client keeps
    ``content: ""`` on its earlier call where the other has ``null``."""
    earlier = {
        "role": "assistant",
        "content": "" if streamed else None,
        "tool_calls": [tool_call("call_1", "weather", '{"city":"Paris"}')],
    }
    messages = [
        {"role": "user", "content": "Weather in Paris, then Rome?"},
        earlier,
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, clear"},
    ]
    request: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages, "tools": WEATHER_TOOLS}
    call = tool_call("call_2", "weather", '{"city":"Rome"}')
    head = {"id": "chatcmpl-w", "created": 7, "model": "gpt-4o-mini"}
    if streamed:
        request["stream"] = True
        opening = {"role": "assistant", "content": ""}
        chunks = [
            {**head, "object": "chat.completion.chunk", "choices": [{"index": 0, **c}]}
            for c in (
                {"delta": opening, "finish_reason": None},
                {"delta": {"tool_calls": [{"index": 0, **call}]}, "finish_reason": None},
                {"delta": {}, "finish_reason": "tool_calls"},
            )
        ]
        body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    else:
        message = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
        body = orjson.dumps({**head, "object": "chat.completion", "choices": [choice]})
    exchange = Exchange(
        request=request,
        api_key_id=None,
        upstream="default",
        served_model="gpt-4o-mini",
        capture_id=f"cap_{n:020d}",
        stream=streamed,
        status_code=200,
        body=body,
    )
    return {**build_row(exchange), "review_status": "approved"}


def test_tool_call_exports_the_same_bytes_streamed_or_not(engine: Engine) -> None:
    store(engine, [_weather_capture(1, streamed=True), _weather_capture(2, streamed=False)])
    exported = []
    for streamed in (True, False):
        picked = CaptureFilter(status=["approved"], stream=streamed)
        dataset = create_dataset(engine, f"weather-{'stream' if streamed else 'plain'}", picked)
        exported.append(b"".join(export_lines(engine, dataset.id)))

    from_stream, from_plain = exported
    assert from_stream == from_plain
    (example,) = parse([from_plain])
    calls = [m for m in example["messages"] if m["role"] == "assistant"]
    assert [m["tool_calls"][0]["function"]["arguments"] for m in calls] == [
        '{"city":"Paris"}',
        '{"city":"Rome"}',
    ]
    assert all("content" not in m for m in calls)


def test_dpo_pair_from_an_edit_prefers_the_edit(engine: Engine) -> None:
    ask = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital?"}]
    store(
        engine,
        [
            capture(1, ask, answer("The capital is Paris, a lovely city."), tools=LOOKUP_TOOLS),
            question(2),
        ],
    )
    add_edit(engine, f"cap_{1:020d}", answer("Paris."))
    dataset = create_dataset(engine, "prefs", APPROVED)
    assert dataset.counts["preference_pairs"] == 1
    assert parse(export_lines(engine, dataset.id, fmt="dpo")) == [
        {
            "input": {"messages": ask, "tools": LOOKUP_TOOLS},
            "preferred_output": [answer("Paris.")],
            "non_preferred_output": [answer("The capital is Paris, a lovely city.")],
        }
    ]
    sft = parse(export_lines(engine, dataset.id, fmt="sft"))
    edited = next(example for example in sft if example["messages"][:2] == ask)
    assert edited == {"messages": [*ask, answer("Paris.")], "tools": LOOKUP_TOOLS}
    assert all(PREFERENCE_KEY not in example for example in sft)


def test_dpo_pairs_from_feedback(engine: Engine) -> None:
    fix = [{"role": "user", "content": "2+2?"}]
    vote = [{"role": "user", "content": "Name a colour."}]
    store(
        engine,
        [
            capture(1, fix, answer("5")),
            capture(2, vote, answer("Blue."), feedback="positive"),
            capture(3, vote, answer("Potato."), feedback="negative", status="rejected"),
        ],
    )
    add_feedback(engine, f"cap_{1:020d}", thumbs=-1, corrected={"content": "4"})
    dataset = create_dataset(engine, "feedback", APPROVED)
    pairs = parse(export_lines(engine, dataset.id, fmt="dpo"))
    assert sorted(pairs, key=lambda p: p["input"]["messages"][0]["content"]) == [
        {
            "input": {"messages": fix},
            "preferred_output": [answer("4")],
            "non_preferred_output": [answer("5")],
        },
        {
            "input": {"messages": vote},
            "preferred_output": [answer("Blue.")],
            "non_preferred_output": [answer("Potato.")],
        },
    ]


def test_export_redaction_hook_reaches_every_line(engine: Engine) -> None:
    mail = [{"role": "user", "content": "Write to ann@example.com please"}]
    store(engine, [capture(1, mail, answer("Done: ann@example.com."))])
    add_edit(engine, f"cap_{1:020d}", answer("Sent to ann@example.com."))
    dataset = create_dataset(engine, "private", APPROVED)
    redact = Redactor(RedactionConfig(apply_at="export")).redact_value
    for fmt in ("sft", "dpo"):
        lines = b"".join(export_lines(engine, dataset.id, fmt=fmt, redact=redact))
        assert b"ann@example.com" not in lines
        assert b"[EMAIL]" in lines
    plain = b"".join(export_lines(engine, dataset.id))
    assert b"ann@example.com" in plain


@pytest.mark.parametrize(
    ("arguments", "param"),
    [(("holdout", "sft"), "split"), (("all", "csv"), "format")],
)
def test_export_refuses_unknown_split_or_format_before_reading(
    engine: Engine, arguments: tuple[str, str], param: str
) -> None:
    store(engine, [question(1)])
    dataset = create_dataset(engine, "one", APPROVED)
    split, fmt = arguments
    with pytest.raises(InvalidDatasetRequest) as refused:
        open_export(engine, dataset.id, split=split, fmt=fmt)
    assert refused.value.param == param
    with pytest.raises(DatasetNotFound):
        open_export(engine, "ds_missing")


def test_export_reads_a_page_at_a_time(engine: Engine) -> None:
    store(engine, [question(n) for n in range(30)])
    dataset = create_dataset(engine, "paged", APPROVED)
    _, pages = open_export(engine, dataset.id, split="train", page_size=4)
    first = next(pages)
    assert (first.examples, len(first.lines)) == (4, 4)
    # Nothing beyond the page in hand was read: what is gone now is gone from the export.
    delete_dataset(engine, dataset.id)
    assert list(pages) == []


def test_diff_reports_added_removed_and_changed_examples(engine: Engine) -> None:
    store(engine, [question(n) for n in range(1, 6)])
    first = create_dataset(engine, "evolving", APPROVED)
    store(engine, [question(6)])
    add_edit(engine, f"cap_{2:020d}", answer("Two squared is four."))
    with session_scope(engine) as session:
        set_capture_status([f"cap_{1:020d}"], "rejected", session=session)
    second = create_dataset(engine, "evolving", APPROVED)
    found = diff_datasets(engine, first.id, second.id)
    rows = {n: question(n) for n in range(1, 7)}
    assert (found.added, found.removed, found.changed, found.unchanged) == (1, 1, 1, 3)
    assert [e["capture_id"] for e in found.added_examples] == [rows[6]["id"]]
    assert [e["prompt_hash"] for e in found.removed_examples] == [rows[1]["prompt_hash"]]
    assert found.changed_examples[0]["a_capture_id"] == rows[2]["id"]
    assert found.changed_examples[0]["prompt_hash"] == rows[2]["prompt_hash"]
    assert diff_datasets(engine, first.id, second.id, limit=0).added_examples == []
    with pytest.raises(DatasetNotFound):
        diff_datasets(engine, first.id, "ds_missing")
