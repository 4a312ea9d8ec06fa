"""Data access for evaluations and their per-example results."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, delete, func, insert, select, update
from sqlmodel import Session, col

from storage._evaluation_models import Evaluation, EvaluationResult

_RESULTS: Any = EvaluationResult.__table__  # type: ignore[attr-defined]

SCORE_COLUMNS = (
    "position",
    "rubric_score",
    "pairwise_outcome",
    "checks",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "error",
    "judge_error",
)
"""What a summary needs: no answers, no reasons."""


def new_evaluation_id() -> str:
    """Time-ordered, so listing by id lists by creation."""
    return f"eval_{time.time_ns():016x}{os.urandom(4).hex()}"


def insert_evaluation(evaluation: Evaluation, *, session: Session) -> Evaluation:
    session.add(evaluation)
    session.flush()
    return evaluation


def get_evaluation(evaluation_id: str, *, session: Session) -> Evaluation | None:
    return session.get(Evaluation, evaluation_id)


def list_evaluations(
    *, session: Session, dataset_id: str | None = None, limit: int = 100
) -> list[Evaluation]:
    """Newest first."""
    stmt = select(Evaluation)
    if dataset_id is not None:
        stmt = stmt.where(col(Evaluation.dataset_id) == dataset_id)
    stmt = stmt.order_by(col(Evaluation.id).desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def update_evaluation(evaluation_id: str, *, session: Session, **values: Any) -> None:
    """Set state, error, finished_at or summary."""
    session.execute(update(Evaluation).where(col(Evaluation.id) == evaluation_id).values(**values))


def claim_evaluation(evaluation_id: str, *, session: Session, started_at: datetime) -> bool:
    """pending -> running; False when someone else already claimed it."""
    result = session.execute(
        update(Evaluation)
        .where(col(Evaluation.id) == evaluation_id, col(Evaluation.state) == "pending")
        .values(state="running", started_at=started_at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def insert_evaluation_results(rows: Sequence[Mapping[str, Any]], *, session: Session) -> None:
    if rows:
        session.execute(insert(_RESULTS), [dict(row) for row in rows])


def delete_evaluation_results(evaluation_id: str, *, session: Session) -> None:
    """Forget a run's results, so running it again starts clean."""
    session.execute(delete(_RESULTS).where(_RESULTS.c.evaluation_id == evaluation_id))


def score_rows(evaluation_id: str, *, session: Session) -> list[Row[Any]]:
    """The scoring columns of every result of an evaluation, in example order."""
    r = _RESULTS.c
    stmt = (
        select(*(r[name] for name in SCORE_COLUMNS))
        .where(r.evaluation_id == evaluation_id)
        .order_by(r.position)
    )
    return list(session.execute(stmt))


def worst_results(
    evaluation_id: str, *, session: Session, limit: int = 10, offset: int = 0
) -> tuple[list[EvaluationResult], int]:
    """One page of results, worst first, and how many there are.

    Worst means: no score at all (the model or the judge failed) first, then the lowest
    rubric score, a pairwise loss before a tie before a win, then example order.
    """
    outcome_rank = case(
        (col(EvaluationResult.pairwise_outcome) == "tie", 1),
        (col(EvaluationResult.pairwise_outcome) == "win", 2),
        else_=0,
    )
    stmt = (
        select(EvaluationResult)
        .where(col(EvaluationResult.evaluation_id) == evaluation_id)
        .order_by(
            col(EvaluationResult.rubric_score).is_not(None),
            col(EvaluationResult.rubric_score),
            outcome_rank,
            col(EvaluationResult.position),
        )
        .limit(limit)
        .offset(offset)
    )
    total = session.execute(
        select(func.count())
        .select_from(EvaluationResult)
        .where(col(EvaluationResult.evaluation_id) == evaluation_id)
    ).scalar_one()
    return list(session.execute(stmt).scalars()), int(total)
