"""The evaluation runner against a fake upstream behind the SDK's HTTP seam: answers stored per
example, scores aggregated, concurrency bounded, 429s waited out, pairwise order seeded and
mapped back, checks on JSON and tools, the client's answer limit kept, the base model compared;
on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import Engine

from finetune import (
    EvaluationNotFound,
    InvalidEvaluationRequest,
    RunOptions,
    create_evaluations,
    evaluation_report,
    evaluation_results,
    list_evaluations,
    run_evaluation,
)
from tests.finetune._dataset_helpers import answer, capture, tool_call
from tests.finetune._eval_helpers import (
    JUDGE,
    FakeUpstream,
    clean_evaluations,  # noqa: F401  used as a fixture
    completion,
    make_dataset,
    questions,
    rate_limited,
    said,
)

pytestmark = pytest.mark.usefixtures("clean_evaluations")


def _graded(body: dict[str, Any]) -> str:
    return str(body["messages"][1]["content"].split("## Answer to grade\n")[1])


def _exact_judge(body: dict[str, Any]) -> dict[str, Any]:
    """5 when the graded answer is the reference, else 2."""
    text = body["messages"][1]["content"]
    reference = text.split("## Reference answer\n")[1].split("\n\n## Answer to grade")[0]
    score = 5 if _graded(body) == reference else 2
    return said(f'{{"score": {score}, "reason": "graded {_graded(body)}"}}')


async def _evaluate(
    engine: Engine, upstream: FakeUpstream, dataset_id: str, model: str = "student", **options: Any
) -> Any:
    created = create_evaluations(
        engine, dataset_id, model, judge_model=JUDGE, config=RunOptions(**options).as_config()
    )
    return await run_evaluation(engine, upstream.client(), created[0].id)


async def test_answers_are_scored_stored_and_summarised(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(4))
    upstream = FakeUpstream(
        answers={"q1": said("a1"), "q2": said("a2"), "q3": said("nope"), "q4": said("no")},
        rubric=_exact_judge,
    )
    done = await _evaluate(engine, upstream, dataset_id)
    assert (done.state, done.error) == ("succeeded", None)
    summary = done.summary
    assert summary["examples"] == 4
    assert summary["rubric"]["mean"] == 3.5
    assert summary["rubric"]["histogram"] == {"1": 0, "2": 2, "3": 0, "4": 0, "5": 2}
    assert summary["pairwise"] == {
        "compared": 4,
        "wins": 0,
        "ties": 4,
        "losses": 0,
        "win_rate": 0.5,
    }
    assert summary["checks"]["exact_match"] == {"passed": 2, "applied": 4, "rate": 0.5}
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (28, 12)
    # The model was asked the prompt without the teacher's answer.
    asked = upstream.asked("student")
    assert sorted(b["messages"][-1]["content"] for b in asked) == ["q1", "q2", "q3", "q4"]
    assert all(b["messages"][-1]["role"] == "user" for b in asked)
    worst, total = evaluation_results(engine, done.id, limit=3)
    assert total == 4
    assert [(r.rubric_score, (r.candidate_answer or {}).get("content")) for r in worst] == [
        (2, "nope"),
        (2, "no"),
        (5, "a1"),
    ]
    assert worst[0].teacher_answer == {"role": "assistant", "content": "a3"}
    assert worst[0].rubric_reason == "graded nope"
    assert worst[0].latency_ms is not None


async def test_concurrency_never_exceeds_the_bound(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(12))
    upstream = FakeUpstream(answers={f"q{n}": said("x") for n in range(1, 13)}, delay=0.02)
    done = await _evaluate(engine, upstream, dataset_id, concurrency=3)
    assert done.summary["rubric"]["scored"] == 12
    assert upstream.most_in_flight == 3
    assert len(upstream.requests) == 36


async def test_a_429_is_retried_after_retry_after(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(1))
    upstream = FakeUpstream(
        answers={"q1": said("a1")}, queued={"q1": [rate_limited("0.3"), rate_limited("0.2")]}
    )
    done = await _evaluate(engine, upstream, dataset_id, backoff_seconds=5.0)
    times = [at for at, body in upstream.requests if body["model"] == "student"]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.3
    assert times[2] - times[1] >= 0.2
    # Waited as told, not the 5 s backoff it would use without retry-after.
    assert times[2] - times[0] < 2
    assert done.summary["errors"] == 0


async def test_retries_are_bounded_and_the_error_is_recorded(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(2))
    upstream = FakeUpstream(
        answers={"q1": said("a1"), "q2": said("a2")},
        queued={"q1": [rate_limited("0")] * 10},
    )
    done = await _evaluate(engine, upstream, dataset_id, max_retries=2)
    assert len([b for b in upstream.asked("student") if b["messages"][-1]["content"] == "q1"]) == 3
    assert (done.state, done.summary["errors"]) == ("succeeded", 1)
    worst, _ = evaluation_results(engine, done.id)
    assert worst[0].candidate_answer is None
    assert worst[0].error is not None
    assert "429" in worst[0].error
    assert "3 attempts" in worst[0].error


async def test_pairwise_order_follows_the_seed_and_maps_back(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(8))

    def prefers_student(body: dict[str, Any]) -> dict[str, Any]:
        text = body["messages"][1]["content"]
        first = text.split("## Answer A\n")[1].split("\n\n## Answer B")[0]
        return said(f'{{"winner": "{"A" if first == "student says" else "B"}"}}')

    upstream = FakeUpstream(
        answers={f"q{n}": said("student says") for n in range(1, 9)}, pairwise=prefers_student
    )
    done = await _evaluate(engine, upstream, dataset_id, seed=7)
    results, _ = evaluation_results(engine, done.id, limit=100)
    by_position = sorted(results, key=lambda r: r.position)
    rng = random.Random(7)
    expected = [rng.choice(("A", "B")) for _ in by_position]
    assert [r.pairwise_position for r in by_position] == expected
    assert set(expected) == {"A", "B"}
    assert {r.pairwise_outcome for r in results} == {"win"}
    assert done.summary["pairwise"]["win_rate"] == 1.0


async def test_a_malformed_verdict_is_a_judge_error_not_a_crash(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(3))

    def sometimes_broken(body: dict[str, Any]) -> dict[str, Any]:
        return said("no idea") if _graded(body) == "b2" else said('{"score": 4, "reason": "ok"}')

    upstream = FakeUpstream(
        answers={"q1": said("b1"), "q2": said("b2"), "q3": said("b3")}, rubric=sometimes_broken
    )
    done = await _evaluate(engine, upstream, dataset_id)
    assert done.state == "succeeded"
    assert (done.summary["judge_errors"], done.summary["rubric"]["scored"]) == (1, 2)
    assert done.summary["rubric"]["mean"] == 4.0
    worst, _ = evaluation_results(engine, done.id, limit=1)
    assert worst[0].candidate_answer == {"role": "assistant", "content": "b2"}
    assert worst[0].judge_error is not None
    assert worst[0].judge_error.startswith("rubric: the judge's verdict is not JSON")


async def test_checks_on_json_and_tool_calls_run_on_each_answer(engine: Engine) -> None:
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]
    asked_json = capture(1, [{"role": "user", "content": "q1"}], answer('{"city": "Oslo"}'))
    asked_json["request"]["response_format"] = {"type": "json_object"}
    called = tool_call("c1", "weather", '{"city": "Oslo"}')
    asked_tools = capture(
        2, [{"role": "user", "content": "q2"}], answer(None, tool_calls=[called]), tools=tools
    )
    dataset_id = make_dataset(engine, [asked_json, asked_tools])
    wrong_call = tool_call("c9", "weather", "{not json")
    upstream = FakeUpstream(
        answers={
            "q1": said('{"city": "Bergen"}'),
            "q2": completion({"role": "assistant", "content": None, "tool_calls": [wrong_call]}),
        }
    )
    done = await _evaluate(engine, upstream, dataset_id)
    sent = {b["messages"][-1]["content"]: b for b in upstream.asked("student")}
    assert sent["q1"]["response_format"] == {"type": "json_object"}
    assert sent["q2"]["tools"] == tools
    results, _ = evaluation_results(engine, done.id)
    checks = {r.capture_id: r.checks for r in results}
    assert checks[asked_json["id"]]["json_valid"] is True
    assert checks[asked_tools["id"]]["tool_names"] is True
    assert checks[asked_tools["id"]]["tool_arguments"] is False
    assert done.summary["checks"]["tool_arguments"] == {"passed": 0, "applied": 1, "rate": 0.0}


async def test_the_model_answers_under_the_limit_the_client_asked_the_teacher_with(
    engine: Engine,
) -> None:
    rows = questions(4)
    rows[0]["request"]["max_tokens"] = 64
    rows[1]["request"]["max_completion_tokens"] = 32
    rows[2]["request"]["max_output_tokens"] = 16  # as a Responses API capture asks
    dataset_id = make_dataset(engine, rows)
    upstream = FakeUpstream(answers={f"q{n}": said(f"a{n}") for n in range(1, 5)})
    await _evaluate(engine, upstream, dataset_id)
    limits = {
        b["messages"][-1]["content"]: {k: v for k, v in b.items() if k.startswith("max_")}
        for b in upstream.asked("student")
    }
    assert limits == {
        "q1": {"max_tokens": 64},
        "q2": {"max_completion_tokens": 32},
        "q3": {"max_completion_tokens": 16},
        "q4": {},
    }
    assert all("max_tokens" not in body for body in upstream.asked(JUDGE))


async def test_the_base_model_is_evaluated_and_compared(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(2))
    upstream = FakeUpstream(
        answers={
            "student:q1": said("a1"),
            "student:q2": said("a2"),
            "base:q1": said("a1"),
            "base:q2": said("?"),
        },
        rubric=_exact_judge,
    )
    candidate, base = create_evaluations(
        engine, dataset_id, "student", base_model="base", judge_model=JUDGE
    )
    assert (candidate.role, base.role, candidate.base_evaluation_id) == (
        "candidate",
        "base",
        base.id,
    )
    assert base.judge_model == JUDGE
    for evaluation in (candidate, base):
        await run_evaluation(engine, upstream.client(), evaluation.id)
    report = evaluation_report(engine, candidate.id)
    assert report.base is not None
    assert report.base.id == base.id
    assert report.comparison is not None
    assert report.comparison["rubric_mean"] == {"candidate": 5.0, "base": 3.5, "delta": 1.5}
    assert report.comparison["checks"]["exact_match"] == {
        "candidate": 1.0,
        "base": 0.5,
        "delta": 0.5,
    }
    assert [e.id for e in list_evaluations(engine, dataset_id=dataset_id)] == [
        candidate.id,
        base.id,
    ]


async def test_an_evaluation_whose_model_never_answers_fails_with_the_reason(
    engine: Engine,
) -> None:
    dataset_id = make_dataset(engine, questions(2))
    seen: list[tuple[int, int]] = []
    created = create_evaluations(engine, dataset_id, "missing-model", judge_model=JUDGE)
    done = await run_evaluation(
        engine, FakeUpstream().client(), created[0].id, progress=lambda d, t: seen.append((d, t))
    )
    assert done.state == "failed"
    assert done.error is not None
    assert "404" in done.error
    assert seen == [(1, 2), (2, 2)]
    with pytest.raises(InvalidEvaluationRequest, match="not pending"):
        await run_evaluation(engine, FakeUpstream().client(), created[0].id)


def test_creating_refuses_unknown_datasets_and_empty_test_splits(engine: Engine) -> None:
    with pytest.raises(EvaluationNotFound):
        create_evaluations(engine, "ds_missing", "student")
    with pytest.raises(InvalidEvaluationRequest, match="'model'"):
        create_evaluations(engine, "ds_missing", " ")
    assert list_evaluations(engine) == []
