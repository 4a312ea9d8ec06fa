"""Evaluations as records: starting one (or a candidate and its base), listing, reading results
worst first, and the report: averages, win rate, check pass rates, candidate against base.

    EvaluationError                 any refusal; ``param`` names the offending input
    ├── InvalidEvaluationRequest    empty test split, bad model name, not pending
    └── EvaluationNotFound          no such evaluation, or no such dataset
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row

from finetune.evaluation._checks import PASS_FAIL_CHECKS
from storage import (
    Evaluation,
    EvaluationResult,
    get_dataset,
    get_evaluation,
    insert_evaluation,
    new_evaluation_id,
    read_examples_page,
    session_scope,
    worst_results,
)
from storage import (
    list_evaluations as stored_evaluations,
)

DEFAULT_JUDGE_MODEL = "gpt-4o-mini"


class EvaluationError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidEvaluationRequest(EvaluationError):
    pass


class EvaluationNotFound(EvaluationError):
    pass


def require_evaluation(engine: Engine, evaluation_id: str) -> Evaluation:
    with session_scope(engine) as session:
        found = get_evaluation(evaluation_id, session=session)
    if found is None:
        raise EvaluationNotFound(
            f"No evaluation '{evaluation_id}'.", param="evaluation_id", code="not_found"
        )
    return found


def _check_model(name: str, param: str) -> None:
    if not name.strip() or len(name) > 200:
        raise InvalidEvaluationRequest(f"'{param}' must be a model name.", param=param)


def create_evaluations(
    engine: Engine,
    dataset_id: str,
    model: str,
    *,
    base_model: str | None = None,
    judge_model: str = DEFAULT_JUDGE_MODEL,
    config: Mapping[str, Any] | None = None,
) -> list[Evaluation]:
    """Record a pending evaluation of ``model`` (and one of ``base_model``, linked to it) on the
    dataset's test split; nothing is written when the request is refused."""
    _check_model(model, "model")
    if base_model is not None:
        _check_model(base_model, "base_model")
    _check_model(judge_model, "judge_model")
    with session_scope(engine) as session:
        if get_dataset(dataset_id, session=session) is None:
            raise EvaluationNotFound(
                f"No dataset '{dataset_id}'.", param="dataset_id", code="not_found"
            )
        if not read_examples_page(dataset_id, "test", session=session, limit=1):
            raise InvalidEvaluationRequest(
                f"Dataset '{dataset_id}' has no test examples to evaluate on.",
                param="dataset_id",
                code="empty_test_split",
            )
        common: dict[str, Any] = {
            "dataset_id": dataset_id,
            "judge_model": judge_model,
            "config": dict(config or {}),
        }
        base = None
        if base_model is not None:
            base = Evaluation(id=new_evaluation_id(), model=base_model, role="base", **common)
        candidate = Evaluation(
            id=new_evaluation_id(),
            model=model,
            role="candidate",
            base_evaluation_id=base.id if base else None,
            **common,
        )
        created = [insert_evaluation(candidate, session=session)]
        if base is not None:
            created.append(insert_evaluation(base, session=session))
    return created


def list_evaluations(engine: Engine, *, dataset_id: str | None = None) -> list[Evaluation]:
    """Newest first."""
    with session_scope(engine) as session:
        return stored_evaluations(session=session, dataset_id=dataset_id)


def evaluation_results(
    engine: Engine, evaluation_id: str, *, limit: int = 20, offset: int = 0
) -> tuple[list[EvaluationResult], int]:
    """One page of an evaluation's results, worst first, and how many there are."""
    require_evaluation(engine, evaluation_id)
    with session_scope(engine) as session:
        return worst_results(evaluation_id, session=session, limit=limit, offset=offset)


def _rate(part: float, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def summarise_results(rows: Sequence[Row[Any]]) -> dict[str, Any]:
    """The aggregates of an evaluation's scoring rows (see ``storage.SCORE_COLUMNS``)."""
    scores = [row.rubric_score for row in rows if row.rubric_score is not None]
    outcomes = [row.pairwise_outcome for row in rows if row.pairwise_outcome is not None]
    wins, ties = outcomes.count("win"), outcomes.count("tie")
    checks: dict[str, dict[str, Any]] = {}
    for name in PASS_FAIL_CHECKS:
        applied = [row.checks[name] for row in rows if name in (row.checks or {})]
        if applied:
            passed = sum(1 for value in applied if value is True)
            checks[name] = {
                "passed": passed,
                "applied": len(applied),
                "rate": _rate(passed, len(applied)),
            }
    similarity = [
        float(row.checks["similarity"]) for row in rows if "similarity" in (row.checks or {})
    ]
    latencies = sorted(row.latency_ms for row in rows if row.latency_ms is not None)
    errors = [row.error for row in rows if row.error]
    return {
        "examples": len(rows),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "judge_errors": sum(1 for row in rows if row.judge_error),
        "rubric": {
            "scored": len(scores),
            "mean": _mean(scores),
            "histogram": {str(n): scores.count(n) for n in range(1, 6)},
        },
        "pairwise": {
            "compared": len(outcomes),
            "wins": wins,
            "ties": ties,
            "losses": outcomes.count("loss"),
            "win_rate": _rate(wins + ties / 2, len(outcomes)),
        },
        "checks": checks,
        "similarity_mean": _mean(similarity),
        "latency_ms": {
            "mean": _mean(latencies),
            "p50": latencies[len(latencies) // 2] if latencies else None,
            "p95": latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
            if latencies
            else None,
        },
        "prompt_tokens": sum(row.prompt_tokens or 0 for row in rows),
        "completion_tokens": sum(row.completion_tokens or 0 for row in rows),
    }


def _delta(ours: Any, theirs: Any) -> dict[str, Any]:
    both = isinstance(ours, int | float) and isinstance(theirs, int | float)
    return {"candidate": ours, "base": theirs, "delta": round(ours - theirs, 4) if both else None}


def compare_summaries(candidate: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """Candidate against base, figure by figure: the gain of fine-tuning."""
    names = sorted(set(candidate.get("checks", {})) | set(base.get("checks", {})))
    return {
        "rubric_mean": _delta(candidate["rubric"]["mean"], base["rubric"]["mean"]),
        "win_rate": _delta(candidate["pairwise"]["win_rate"], base["pairwise"]["win_rate"]),
        "similarity_mean": _delta(candidate["similarity_mean"], base["similarity_mean"]),
        "errors": _delta(candidate["errors"], base["errors"]),
        "checks": {
            name: _delta(
                candidate.get("checks", {}).get(name, {}).get("rate"),
                base.get("checks", {}).get(name, {}).get("rate"),
            )
            for name in names
        },
    }


@dataclass(frozen=True, slots=True)
class EvaluationReport:
    evaluation: Evaluation
    worst: list[EvaluationResult]
    """The lowest-scored examples, worst first."""
    base: Evaluation | None = None
    comparison: dict[str, Any] | None = None
    """Against the base model, when both finished."""


def evaluation_report(engine: Engine, evaluation_id: str, *, worst: int = 10) -> EvaluationReport:
    evaluation = require_evaluation(engine, evaluation_id)
    results, _ = evaluation_results(engine, evaluation_id, limit=worst)
    base = None
    comparison = None
    if evaluation.base_evaluation_id is not None:
        with session_scope(engine) as session:
            base = get_evaluation(evaluation.base_evaluation_id, session=session)
        if base is not None and evaluation.summary and base.summary:
            comparison = compare_summaries(evaluation.summary, base.summary)
    return EvaluationReport(evaluation, results, base, comparison)
