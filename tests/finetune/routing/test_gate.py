"""The promotion gate on summaries made by ``summarise_results`` from scored rows: each
criterion passes and fails on its own, in words and figures."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from finetune import GatePolicy, decide_gate, summarise_results

POLICY = GatePolicy()


def _summary(
    count: int = 40,
    *,
    score: int = 5,
    low_scores: int = 0,
    outcome: str = "win",
    ties: int = 0,
    losses: int = 0,
    errors: int = 0,
    json_failures: int | None = None,
) -> dict[str, Any]:
    """``count`` examples scored ``score`` (``low_scores`` of them 1), the first ``ties`` tied
    and the next ``losses`` lost against the teacher, the last ``errors`` unanswered; with
    ``json_failures``, JSON was asked for everywhere and that many answers were not JSON."""
    rows = []
    for n in range(count):
        failed = n >= count - errors
        pairwise = "tie" if n < ties else "loss" if n < ties + losses else outcome
        checks = {} if json_failures is None else {"json_valid": n >= json_failures}
        rows.append(
            SimpleNamespace(
                rubric_score=None if failed else 1 if n < low_scores else score,
                pairwise_outcome=None if failed else pairwise,
                checks={} if failed else checks,
                latency_ms=100.0,
                prompt_tokens=10,
                completion_tokens=5,
                error="upstream said 500" if failed else None,
                judge_error=None,
            )
        )
    return summarise_results(rows)  # type: ignore[arg-type]


def _failed(decision_reasons: list[str]) -> list[str]:
    return [reason for reason in decision_reasons if reason.startswith("failed:")]


def test_a_good_candidate_passes_every_criterion_with_figures() -> None:
    decision = decide_gate(_summary(json_failures=1), None, POLICY)
    assert decision.passed
    assert _failed(decision.reasons) == []
    assert decision.reasons == [
        "passed: 40 test examples evaluated (at least 20 needed)",
        "passed: the candidate failed to answer 0 of 40 examples (0.0%; at most 2.0% allowed)",
        "passed: rubric mean 5.00 over 40 scored answers (at least 4.00 needed)",
        "passed: win rate against the teacher 1.00 (wins plus half the ties over 40 compared; "
        "at least 0.40 needed)",
        "passed: check json_valid passed 39 of 40 (97.5%; at least 95.0% needed)",
    ]
    assert decision.figures == {
        "examples": 40,
        "errors": 0,
        "error_rate": 0.0,
        "rubric_mean": 5.0,
        "rubric_scored": 40,
        "win_rate": 1.0,
        "compared": 40,
        "checks": {"json_valid": 0.975},
        "base_rubric_mean": None,
        "gain_over_base": None,
    }


def test_too_few_examples_fail() -> None:
    decision = decide_gate(_summary(19), None, POLICY)
    assert not decision.passed
    assert _failed(decision.reasons) == ["failed: 19 test examples evaluated (at least 20 needed)"]


def test_an_error_rate_above_the_maximum_fails() -> None:
    decision = decide_gate(_summary(50, errors=2), None, POLICY)
    assert not decision.passed
    assert _failed(decision.reasons) == [
        "failed: the candidate failed to answer 2 of 50 examples (4.0%; at most 2.0% allowed)"
    ]
    assert decide_gate(_summary(50, errors=1), None, POLICY).passed


def test_a_rubric_mean_below_the_minimum_fails() -> None:
    # 8 of 40 scored 1, the rest 5: mean 4.2 passes 4.0 and fails 4.5.
    summary = _summary(low_scores=8)
    assert decide_gate(summary, None, POLICY).passed
    strict = decide_gate(summary, None, GatePolicy(min_rubric_mean=4.5))
    assert not strict.passed
    assert strict.figures["rubric_mean"] == 4.2
    assert _failed(strict.reasons) == [
        "failed: rubric mean 4.20 over 40 scored answers (at least 4.50 needed)"
    ]


def test_ties_count_half_towards_the_win_rate() -> None:
    # 8 ties and 24 losses of 40: (8 wins + 8 / 2) / 40 = 0.3.
    losing = decide_gate(_summary(ties=8, losses=24), None, POLICY)
    assert not losing.passed
    assert losing.figures["win_rate"] == 0.3
    assert _failed(losing.reasons) == [
        "failed: win rate against the teacher 0.30 (wins plus half the ties over 40 compared; "
        "at least 0.40 needed)"
    ]
    # 16 ties and 16 losses: (8 + 16 / 2) / 40 = 0.4, just enough.
    assert decide_gate(_summary(ties=16, losses=16), None, POLICY).passed


def test_a_deterministic_check_below_its_pass_rate_fails() -> None:
    decision = decide_gate(_summary(json_failures=4), None, POLICY)
    assert not decision.passed
    assert _failed(decision.reasons) == [
        "failed: check json_valid passed 36 of 40 (90.0%; at least 95.0% needed)"
    ]


def test_checks_that_never_applied_are_not_judged() -> None:
    decision = decide_gate(_summary(), None, POLICY)
    assert decision.passed
    assert "passed: no deterministic check applied to these examples" in decision.reasons
    assert decision.figures["checks"] == {}


def test_nothing_scored_fails_in_plain_words() -> None:
    decision = decide_gate(_summary(20, errors=20), None, POLICY)
    assert not decision.passed
    assert _failed(decision.reasons) == [
        "failed: the candidate failed to answer 20 of 20 examples (100.0%; at most 2.0% allowed)",
        "failed: the judge scored no answer, so the rubric mean is unknown",
        "failed: no pairwise comparison with the teacher, so the win rate is unknown",
    ]


def test_the_gain_over_the_base_is_required_when_configured() -> None:
    policy = GatePolicy(min_gain_over_base=0.5)
    candidate, weak_base, close_base = (
        _summary(),
        _summary(score=4),
        _summary(score=5, low_scores=4),
    )
    gained = decide_gate(candidate, weak_base, policy)
    assert gained.passed
    assert gained.figures["gain_over_base"] == 1.0
    assert "passed: rubric mean +1.00 over the base model's 4.00 (at least +0.50 needed)" in (
        gained.reasons
    )
    close = decide_gate(candidate, close_base, policy)
    assert not close.passed
    assert _failed(close.reasons) == [
        "failed: rubric mean +0.40 over the base model's 4.60 (at least +0.50 needed)"
    ]


def test_without_a_base_evaluation_no_gain_is_required() -> None:
    decision = decide_gate(_summary(), None, GatePolicy(min_gain_over_base=0.5))
    assert decision.passed
    assert "passed: no base evaluation to compare with, so no gain is required" in (
        decision.reasons
    )


def test_the_gain_is_shown_but_not_judged_without_a_threshold() -> None:
    decision = decide_gate(_summary(score=4), _summary(), POLICY)
    assert decision.passed
    assert decision.figures["gain_over_base"] == -1.0
    assert not any("base" in reason for reason in decision.reasons)
