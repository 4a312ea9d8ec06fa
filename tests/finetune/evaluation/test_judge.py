"""The LLM judges over the SDK's HTTP seam: the rubric verdict read defensively, the pairwise
verdict mapped back from the position the candidate was shown in, and a bad verdict recorded
as an error instead of raised."""

from __future__ import annotations

from typing import Any

import pytest

from finetune import RunOptions, UpstreamCaller, judge_pairwise, judge_rubric
from tests.finetune._dataset_helpers import answer
from tests.finetune._eval_helpers import JUDGE, FakeUpstream, said

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
TEACHER = answer("Paris.")
CANDIDATE = answer("It is Paris.")


def _caller(upstream: FakeUpstream) -> UpstreamCaller:
    return UpstreamCaller(upstream.client(), RunOptions(max_retries=0))


@pytest.mark.parametrize(
    ("content", "score"),
    [
        ('{"score": 4, "reason": "minor omission"}', 4),
        ('```json\n{"score": 2, "reason": "wrong"}\n```', 2),
        ('Verdict: {"score": 5.0, "reason": "equal"} done', 5),
        ('{"score": "3", "reason": "partly"}', 3),
    ],
)
async def test_rubric_reads_the_score_however_it_is_wrapped(content: str, score: int) -> None:
    upstream = FakeUpstream(rubric=lambda _: said(content))
    verdict = await judge_rubric(_caller(upstream).complete, JUDGE, PROMPT, TEACHER, CANDIDATE)
    assert (verdict.score, verdict.error) == (score, None)
    sent = upstream.asked(JUDGE)[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert "Paris." in sent["messages"][1]["content"]
    assert "It is Paris." in sent["messages"][1]["content"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("I think it is fine.", "not JSON"),
        ('{"score": 7, "reason": "great"}', "not 1 to 5"),
        ('{"score": true}', "not 1 to 5"),
        ('{"reason": "no score"}', "not 1 to 5"),
        ("", "no text"),
    ],
)
async def test_a_bad_rubric_verdict_is_a_judge_error(content: str, problem: str) -> None:
    upstream = FakeUpstream(rubric=lambda _: said(content))
    verdict = await judge_rubric(_caller(upstream).complete, JUDGE, PROMPT, TEACHER, CANDIDATE)
    assert verdict.score is None
    assert verdict.error is not None
    assert problem in verdict.error


async def test_a_failed_judge_call_is_a_judge_error() -> None:
    error = {"error": {"message": "judge down", "type": "server_error", "code": None}}
    upstream = FakeUpstream(rubric=lambda _: (500, {}, error))
    verdict = await judge_rubric(_caller(upstream).complete, JUDGE, PROMPT, TEACHER, CANDIDATE)
    assert verdict.score is None
    assert verdict.error is not None
    assert "500" in verdict.error


def _answers_shown(body: dict[str, Any]) -> tuple[str, str]:
    text = body["messages"][1]["content"]
    a = text.split("## Answer A\n")[1].split("\n\n## Answer B")[0]
    b = text.split("## Answer B\n")[1]
    return a, b


def _prefers(preferred: str) -> Any:
    """A judge that always picks the answer whose text is ``preferred``, wherever it is."""

    def verdict(body: dict[str, Any]) -> dict[str, Any]:
        a, _ = _answers_shown(body)
        winner = "A" if a == preferred else "B"
        return said(f'{{"winner": "{winner}", "reason": "better"}}')

    return verdict


@pytest.mark.parametrize("position", ["A", "B"])
async def test_pairwise_maps_the_verdict_back_to_the_candidate(position: Any) -> None:
    upstream = FakeUpstream(pairwise=_prefers("It is Paris."))
    caller = _caller(upstream)
    verdict = await judge_pairwise(caller.complete, JUDGE, PROMPT, TEACHER, CANDIDATE, position)
    assert (verdict.candidate_position, verdict.outcome) == (position, "win")
    shown = _answers_shown(upstream.asked(JUDGE)[0])
    assert shown == (("It is Paris.", "Paris.") if position == "A" else ("Paris.", "It is Paris."))

    upstream.pairwise = _prefers("Paris.")
    lost = await judge_pairwise(caller.complete, JUDGE, PROMPT, TEACHER, CANDIDATE, position)
    assert lost.outcome == "loss"


async def test_pairwise_tie_and_unknown_winner() -> None:
    upstream = FakeUpstream(pairwise=lambda _: said('{"winner": "tie", "reason": "same"}'))
    tie = await judge_pairwise(_caller(upstream).complete, JUDGE, PROMPT, TEACHER, CANDIDATE, "B")
    assert (tie.outcome, tie.reason, tie.error) == ("tie", "same", None)
    upstream.pairwise = lambda _: said('{"winner": "C"}')
    bad = await judge_pairwise(_caller(upstream).complete, JUDGE, PROMPT, TEACHER, CANDIDATE, "A")
    assert bad.outcome is None
    assert bad.error is not None
    assert "not A, B or tie" in bad.error
