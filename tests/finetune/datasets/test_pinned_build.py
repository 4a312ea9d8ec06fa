"""A build's whole output, pinned: every example's bytes, position, split and prompt hash, and
the counts, for captures that exercise every rule of a build at once (recorded tool chains and
streams, duplicate groups under both policies, a best capture without an answer, threads whose
earlier turns fold away, a turn answered outside the selection or only by a rejected capture,
a next turn sent with other tools, edits, feedback corrections and pairs, a Responses thread).

The pin was taken from the builder as it stood before it was made faster; a change that moves
any byte fails here. Where a change of output is meant, write the pin again with
``STILLROOM_WRITE_PIN=1 pytest tests/finetune/datasets/test_pinned_build.py`` and review the
diff of ``pinned_build.json``.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

import finetune.datasets._build
from finetune import SplitRatios, create_dataset
from proxy.gateway._capture import Exchange, build_row
from storage import CaptureFilter, read_examples_page, session_scope
from tests.finetune._dataset_helpers import (
    T0,
    add_edit,
    add_feedback,
    answer,
    capture,
    question,
    recorded_rows,
    store,
    tool_call,
)
from tests.replay import responses_recording

PIN = Path(__file__).with_name("pinned_build.json")

TOOLS_A = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
TOOLS_B = [{"type": "function", "function": {"name": "forecast", "parameters": {}}}]


def _thread(first: int, opening: str, replies: list[str], **overrides: Any) -> list[dict[str, Any]]:
    """A chat captured turn by turn: capture ``first + i`` resends turns 0..i-1 and gets
    ``replies[i]``."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": opening}]
    rows = []
    for index, reply in enumerate(replies):
        rows.append(capture(first + index, list(messages), answer(reply), **overrides))
        messages += [answer(reply), {"role": "user", "content": f"And then ({index})?"}]
    return rows


def _fixture() -> list[dict[str, Any]]:
    ask = [{"role": "user", "content": "How do I reset my password?"}]
    call = tool_call("call_1", "weather", '{"city":"Oslo"}')
    sent = {"role": "assistant", "tool_calls": [tool_call("call_1", "weather", '{"city": "Oslo"}')]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": "-3C"}
    oslo = [{"role": "user", "content": "Weather in Oslo?"}]
    few_shot = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
    ]
    vote = [{"role": "user", "content": "Name a colour."}]
    silent = [{"role": "user", "content": "Say something"}]
    rows = [
        capture(101, ask, answer("oldest, rated 5"), rating=5),
        capture(102, ask, answer("newer, rated 5"), rating=5),
        capture(103, ask, answer("latest approved, rated 2"), rating=2),
        capture(104, ask, answer("newest, still pending"), status="pending"),
        # The first turn calls a tool; the second is sent with other tools, which hides it
        # from the lookup by prompt hash, and the build lifts its weight itself.
        capture(110, oslo, answer(None, tool_calls=[call]), tools=TOOLS_A),
        capture(111, [*oslo, sent, result], answer("It is -3C in Oslo."), tools=TOOLS_B),
        capture(113, few_shot, answer("6")),
        *_thread(120, "Plan my week", ["Monday: rest.", "Tuesday: work.", "Done."]),
        *_thread(130, "Tell a story", ["Once upon a time.", "The end."], status="pending"),
        *_thread(140, "Count to three", ["One.", "Two.", "Three."]),
        capture(150, silent, answer("something")),
        capture(151, silent, answer(None)),
        question(160) | {"status_code": 429, "response": None, "error": {"message": "slow"}},
        question(161) | {"abandoned": True, "error_kind": "client_abandoned"},
        question(162) | {"error_kind": "stream_cut"},
        capture(163, [{"role": "user", "content": "x"}], answer(None, refusal="I can't.")),
        capture(164, [], answer("talking to nobody")),
        question(170),
        question(171),
        capture(180, vote, answer("Blue."), feedback="positive"),
        capture(181, vote, answer("Potato."), feedback="negative", status="rejected"),
        *[question(n) for n in range(200, 240)],
    ]
    # The story's first turns are pending (they count as the teacher's), the count's second
    # turn only rejected (it does not).
    for row in rows:
        if row["id"] == f"cap_{141:020d}":
            row["review_status"] = "rejected"
        if row["id"] == f"cap_{131:020d}":
            row["review_status"] = "approved"
    return rows


def _responses_rows() -> list[dict[str, Any]]:
    rows = []
    turns = responses_recording("dotnet_Responses_FunctionCallWorks.json")[:2]
    for n, interaction in enumerate(turns, start=300):
        request = interaction.request_json()
        row = build_row(
            Exchange(
                request=request,
                api_key_id="key_a",
                upstream="default",
                served_model=request["model"],
                api="responses",
                capture_id=f"cap_{n:020d}",
                started_at=(T0 + timedelta(seconds=n)).timestamp(),
                status_code=interaction.status,
                body=interaction.response_body,
                content_encoding=interaction.header("content-encoding"),
            )
        )
        row["review_status"] = "approved"
        rows.append(row)
    return rows


def _store_fixture(engine: Engine) -> None:
    # One batch per shape of row: an insert of many rows takes the keys of the first.
    for rows in (recorded_rows(), _fixture(), _responses_rows()):
        store(engine, rows)
    add_edit(engine, f"cap_{170:020d}", answer("Edited: 28,900."))
    add_edit(engine, f"cap_{120:020d}", answer("Monday: rest well."))
    add_feedback(engine, f"cap_{171:020d}", thumbs=-1, corrected={"content": "29,241"})


def _dump(engine: Engine, dataset_id: str) -> list[list[Any]]:
    found = []
    with session_scope(engine) as session:
        for side in ("train", "validation", "test"):
            for row in read_examples_page(dataset_id, side, session=session, limit=10_000):
                found.append([row.position, row.capture_id, side, row.prompt_hash, row.example])
    return sorted(found, key=lambda item: item[0])


def _builds(engine: Engine, workers: int = 0) -> dict[str, Any]:
    _store_fixture(engine)
    latest = create_dataset(
        engine, "pinned", CaptureFilter(status=["approved"]), batch_size=7, workers=workers
    )
    rated = create_dataset(
        engine,
        "pinned",
        CaptureFilter(status=["approved", "pending"]),
        dedupe="best_rated",
        ratios=SplitRatios(0.5, 0.25, 0.25),
        workers=workers,
    )
    return {
        name: {"counts": dataset.counts, "examples": _dump(engine, dataset.id)}
        for name, dataset in (("latest_approved", latest), ("best_rated", rated))
    }


@pytest.mark.parametrize("held", [0, 5000])
def test_a_build_gives_the_pinned_examples_byte_for_byte(
    engine: Engine, held: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Held back from the writer or not, an earlier turn is left out the same.
    monkeypatch.setattr(finetune.datasets._build, "HELD_EXAMPLES", held)
    built = orjson.loads(orjson.dumps(_builds(engine)))
    if os.environ.get("STILLROOM_WRITE_PIN"):
        PIN.write_bytes(orjson.dumps(built, option=orjson.OPT_INDENT_2) + b"\n")
    pinned = orjson.loads(PIN.read_bytes())
    assert built["latest_approved"]["counts"] == pinned["latest_approved"]["counts"]
    assert built["best_rated"]["counts"] == pinned["best_rated"]["counts"]
    assert built == pinned


def test_a_build_read_in_worker_processes_gives_the_pinned_examples(engine: Engine) -> None:
    # Batches of 7 over two workers, read ahead and out of step: taken in order all the same.
    built = orjson.loads(orjson.dumps(_builds(engine, workers=2)))
    assert built == orjson.loads(PIN.read_bytes())
