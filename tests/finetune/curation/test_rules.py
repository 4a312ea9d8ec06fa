"""Curation rules: each condition and action, the order conflicts resolve in, and runs over
stored captures whose dry-run counts are the changes a real run makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Engine

from finetune import Outcome, RuleConfig, RuleList, evaluate, run_rules
from storage import CaptureFilter, get_capture, insert_captures, session_scope

_START = datetime(2025, 3, 1, tzinfo=UTC)


def capture_row(n: int, **overrides: Any) -> dict[str, Any]:
    """A successful, stored-shaped capture; overrides set any column."""
    row: dict[str, Any] = {
        "id": f"cap_{n:04d}",
        "completion_id": f"chatcmpl-{n}",
        "created_at": _START + timedelta(seconds=n),
        "request": {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": f"What is {n} squared?"}],
        },
        "response": {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"{n * n}", "refusal": None},
                    "finish_reason": "stop",
                }
            ],
        },
        "status_code": 200,
        "error": None,
        "error_kind": None,
        "requested_model": "gpt-4o",
        "alias": None,
        "served_model": "gpt-4o",
        "upstream": "default",
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "finish_reason": "stop",
        "stream": False,
        "abandoned": False,
        "metadata_": {},
        "review_status": "pending",
        "tags": [],
        "feedback": None,
        "has_tool_calls": False,
    }
    row.update(overrides)
    return row


def rule(name: str, action: str, tag: str | None = None, **when: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": name, "action": action, "tag": tag, "when": when})


def matches(when: dict[str, Any], row: dict[str, Any]) -> bool:
    return evaluate([rule("r", "tag", tag="hit", **when)], row).tags == ("hit",)


def _answer(**message: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message}}]}


_ERROR = {"status_code": 500, "response": None, "error": {"message": "boom"}}
_TOOL_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"order": "A-17"}'},
        }
    ],
}

# (condition, a row it holds for, a row it does not hold for)
CONDITIONS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "error on a 5xx": ({"error": True}, _ERROR, {}),
    "error on a stream cut": (
        {"error": True},
        {"error_kind": "stream_cut", "error": {"message": "cut"}},
        {},
    ),
    "error on a 200 with an error body": ({"error": True}, {"error": {"message": "x"}}, {}),
    "no error": ({"error": False}, {}, {"status_code": 429}),
    "refusal": (
        {"refusal": True},
        {"response": _answer(content=None, refusal="I can't help with that.")},
        {},
    ),
    "finish_reason": ({"finish_reason": ["length"]}, {"finish_reason": "length"}, {}),
    "model, requested": ({"model": ["gpt-4o"]}, {}, {"requested_model": "x", "served_model": "y"}),
    "model, served": (
        {"model": ["ft:gpt-4o-mini:acme"]},
        {"served_model": "ft:gpt-4o-mini:acme"},
        {},
    ),
    "alias": ({"alias": ["support-bot"]}, {"alias": "support-bot"}, {"alias": "sales-bot"}),
    "tags_any": ({"tags_any": ["a", "b"]}, {"tags": ["b"]}, {"tags": ["c"]}),
    "tags_all": ({"tags_all": ["a", "b"]}, {"tags": ["b", "c", "a"]}, {"tags": ["a"]}),
    "metadata": (
        {"metadata": {"team": "billing", "env": "prod"}},
        {"metadata_": {"team": "billing", "env": "prod", "v": "2"}},
        {"metadata_": {"team": "billing", "env": "dev"}},
    ),
    "feedback": ({"feedback": ["negative"]}, {"feedback": "negative"}, {"feedback": "positive"}),
    "no feedback yet": ({"feedback": ["none"]}, {}, {"feedback": "neutral"}),
    "min_prompt_tokens": ({"min_prompt_tokens": 12}, {}, {"prompt_tokens": 11}),
    "max_prompt_tokens": ({"max_prompt_tokens": 12}, {}, {"prompt_tokens": 13}),
    "min_completion_tokens": ({"min_completion_tokens": 3}, {}, {"completion_tokens": 2}),
    "max_completion_tokens": ({"max_completion_tokens": 3}, {}, {"completion_tokens": 4}),
    "min_total_tokens": ({"min_total_tokens": 15}, {}, {"total_tokens": 14}),
    "max_total_tokens, unknown count": ({"max_total_tokens": 15}, {}, {"total_tokens": None}),
    "regex in the request": (
        {"regex": r"(?i)\bsquared\b", "regex_in": "request"},
        {},
        {"request": {"messages": [{"role": "user", "content": "cubed"}]}},
    ),
    "regex in a text part": (
        {"regex": "invoice #\\d+"},
        {
            "request": {
                "messages": [{"role": "user", "content": [{"type": "text", "text": "invoice #42"}]}]
            }
        },
        {},
    ),
    "regex in the answer only": (
        {"regex": "^144$", "regex_in": "answer"},
        {"response": _answer(content="144")},
        {"request": {"messages": [{"role": "user", "content": "144"}]}},
    ),
    "regex in tool-call arguments": (
        {"regex": '"order": "A-\\d+"', "regex_in": "answer"},
        {"response": {"choices": [{"message": _TOOL_CALL}]}},
        {},
    ),
    "stream": ({"stream": True}, {"stream": True}, {}),
    "abandoned": ({"abandoned": True}, {"abandoned": True}, {}),
}


@pytest.mark.parametrize("name", list(CONDITIONS))
def test_each_condition_holds_for_its_row_and_not_for_another(name: str) -> None:
    when, holds, fails = CONDITIONS[name]
    assert matches(when, capture_row(1, **holds)) is True
    assert matches(when, capture_row(1, **fails)) is False


def test_every_condition_of_a_rule_must_hold() -> None:
    when = {"error": True, "model": ["gpt-4o"]}
    assert matches(when, capture_row(1, **_ERROR)) is True
    assert matches(when, capture_row(1, **_ERROR, requested_model="o3", served_model="o3")) is False


def test_a_rule_without_conditions_holds_for_every_capture() -> None:
    assert matches({}, capture_row(1)) is True


@pytest.mark.parametrize(
    ("action", "status"), [("approve", "approved"), ("reject", "rejected"), ("tag", None)]
)
def test_each_action_sets_its_status_or_tag(action: str, status: str | None) -> None:
    tag = "checked" if action == "tag" else None
    outcome = evaluate([rule("only", action, tag=tag)], capture_row(1))
    assert outcome.status == status
    assert outcome.tags == (("checked",) if tag else ())
    assert outcome.matched == ("only",)


def test_first_approve_or_reject_wins_and_tags_accumulate() -> None:
    rules = [
        rule("tag-errors", "tag", tag="error", error=True),
        rule("reject-errors", "reject", error=True),
        rule("approve-gpt-4o", "approve", model=["gpt-4o"]),
        rule("tag-gpt-4o", "tag", tag="gpt-4o", model=["gpt-4o"]),
    ]
    outcome = evaluate(rules, capture_row(1, **_ERROR))
    assert outcome.status == "rejected"
    assert outcome.status_rule == "reject-errors"
    assert outcome.tags == ("error", "gpt-4o")
    assert outcome.matched == ("tag-errors", "reject-errors", "approve-gpt-4o", "tag-gpt-4o")
    assert evaluate(rules, capture_row(2)).status == "approved"


def test_a_tag_added_by_an_earlier_rule_is_seen_by_later_rules() -> None:
    rules = [
        rule("tag-long", "tag", tag="long", finish_reason=["length"]),
        rule("reject-long", "reject", tags_any=["long"]),
    ]
    assert evaluate(rules, capture_row(1, finish_reason="length")).status == "rejected"
    assert evaluate(list(reversed(rules)), capture_row(1, finish_reason="length")).status is None


def test_a_tag_the_capture_already_carries_is_not_added_again() -> None:
    outcome = evaluate([rule("t", "tag", tag="seen")], capture_row(1, tags=["seen"]))
    assert outcome.tags == () and outcome.matched == ("t",)


def test_no_rules_decide_nothing() -> None:
    assert evaluate([], capture_row(1, **_ERROR)) == Outcome()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"name": "typo", "action": "reject", "when": {"errors": True}},
            "rule 'typo': when.errors",
        ),
        (
            {"name": "bad-re", "action": "reject", "when": {"regex": "(("}},
            "rule 'bad-re': when.regex",
        ),
        ({"name": "no-tag", "action": "tag"}, "rule 'no-tag': tag"),
        ({"name": "odd", "action": "approve", "tag": "x"}, "rule 'odd': tag"),
        ({"name": "verb", "action": "delete"}, "rule 'verb': action"),
    ],
)
def test_a_bad_rule_is_refused_with_its_name(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TypeAdapter(RuleList).validate_python([raw])


def test_rule_names_must_be_unique() -> None:
    twice = [{"name": "same", "action": "approve"}, {"name": "same", "action": "reject"}]
    with pytest.raises(ValidationError, match="rule 'same' is defined twice"):
        TypeAdapter(RuleList).validate_python(twice)


# -- over stored captures ------------------------------------------------------------------

EXAMPLE_RULES = [
    rule("reject-errors", "reject", error=True),
    rule("reject-refusals", "reject", refusal=True),
    rule("reject-truncated", "reject", finish_reason=["length"]),
    rule("reject-negative", "reject", feedback=["negative"]),
    rule("approve-positive", "approve", feedback=["positive"]),
    rule("tag-billing", "tag", tag="billing", regex="(?i)invoice"),
]


def seed(engine: Engine) -> None:
    rows = [
        capture_row(1, **_ERROR),
        capture_row(2, response=_answer(content=None, refusal="No."), finish_reason="stop"),
        capture_row(3, finish_reason="length"),
        capture_row(4, feedback="negative"),
        capture_row(5, feedback="positive"),
        capture_row(6, feedback="positive", review_status="rejected"),  # a reviewer said no
        capture_row(7, request={"messages": [{"role": "user", "content": "Invoice 7?"}]}),
        capture_row(8, **_ERROR, tags=["billing"]),
        capture_row(9),
    ]
    with session_scope(engine) as session:
        insert_captures(rows, session=session)


def state(engine: Engine) -> dict[str, tuple[str, list[str]]]:
    with session_scope(engine) as session:
        found = {}
        for n in range(1, 10):
            capture = get_capture(f"cap_{n:04d}", session=session)
            assert capture is not None
            found[capture.id] = (capture.review_status, list(capture.tags))
        return found


def status_of(engine: Engine, capture_id: str) -> str:
    with session_scope(engine) as session:
        capture = get_capture(capture_id, session=session)
        assert capture is not None
        return capture.review_status


def test_dry_run_counts_are_the_changes_a_real_run_makes(engine: Engine) -> None:
    seed(engine)
    before = state(engine)
    dry = run_rules(engine, EXAMPLE_RULES, dry_run=True)
    assert state(engine) == before
    real = run_rules(engine, EXAMPLE_RULES, dry_run=False)
    assert real.model_dump() == {**dry.model_dump(), "dry_run": False}
    after = state(engine)
    changed = [key for key in before if before[key] != after[key]]
    assert len(changed) == real.changed == 7
    assert (real.evaluated, real.approved, real.rejected, real.tagged) == (9, 1, 5, 1)
    assert {r.name: r.changes for r in real.rules} == {
        "reject-errors": 2,
        "reject-refusals": 1,
        "reject-truncated": 1,
        "reject-negative": 1,
        "approve-positive": 1,
        "tag-billing": 1,
    }
    assert after["cap_0001"] == ("rejected", [])
    assert after["cap_0005"] == ("approved", [])
    assert after["cap_0006"] == ("rejected", [])  # a reviewer's decision outranks a rule
    assert after["cap_0007"] == ("pending", ["billing"])
    assert after["cap_0008"] == ("rejected", ["billing"])
    assert after["cap_0009"] == ("pending", [])
    assert run_rules(engine, EXAMPLE_RULES, dry_run=True).changed == 0


def test_include_reviewed_lets_rules_overrule_a_reviewer(engine: Engine) -> None:
    seed(engine)
    report = run_rules(engine, EXAMPLE_RULES, dry_run=False, include_reviewed=True)
    assert report.approved == 2
    assert state(engine)["cap_0006"] == ("approved", [])


def test_a_filter_narrows_and_batches_stream_through_every_match(engine: Engine) -> None:
    seed(engine)
    sizes: list[int] = []
    report = run_rules(
        engine,
        EXAMPLE_RULES,
        CaptureFilter(error=True),
        dry_run=False,
        batch_size=1,
        progress=sizes.append,
    )
    assert sizes == [1, 1]
    assert (report.evaluated, report.rejected) == (2, 2)
    assert state(engine)["cap_0003"] == ("pending", [])


def test_rules_on_columns_alone_see_an_error_body_in_the_store(engine: Engine) -> None:
    # Without regex or refusal rules the bodies stay in the database; an error must still show.
    with session_scope(engine) as session:
        insert_captures(
            [capture_row(1, error={"message": "stream said error"}), capture_row(2)],
            session=session,
        )
    report = run_rules(engine, [rule("reject-errors", "reject", error=True)], dry_run=False)
    assert (report.evaluated, report.rejected) == (2, 1)
    assert [status_of(engine, "cap_0001"), status_of(engine, "cap_0002")] == ["rejected", "pending"]
