"""Data access for evaluations and their per-example results.

A runner holds an evaluation under a lease (``lease_owner``, ``lease_until``) that it renews
while it works; every write it makes is conditional on still holding it, so a runner that
lost its lease to another (after a stall) changes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
    """Set any columns, unconditionally (runners use the ``*_held`` functions instead)."""
    session.execute(update(Evaluation).where(col(Evaluation.id) == evaluation_id).values(**values))


def _claimable(now: datetime, max_attempts: int) -> ColumnElement[bool]:
    """Pending, or running under a lease that ran out (or never was: rows from before leases)
    and not yet tried ``max_attempts`` times."""
    e = Evaluation
    return or_(
        col(e.state) == "pending",
        and_(
            col(e.state) == "running",
            or_(col(e.lease_until).is_(None), col(e.lease_until) < now),
            col(e.attempts) < max_attempts,
        ),
    )


def claim_evaluation(
    evaluation_id: str,
    *,
    session: Session,
    owner: str,
    now: datetime,
    lease_seconds: float,
    max_attempts: int = 3,
) -> bool:
    """Take the evaluation for ``owner`` until ``now + lease_seconds`` if it is claimable;
    False when someone else holds it, or it finished. One atomic update: of two claimers at
    once, one wins."""
    e = Evaluation
    result = session.execute(
        update(e)
        .where(col(e.id) == evaluation_id, _claimable(now, max_attempts))
        .values(
            state="running",
            lease_owner=owner,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=col(e.attempts) + 1,
            # A resumed run keeps the time the first one started.
            started_at=func.coalesce(col(e.started_at), now),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def claimable_evaluation_ids(
    *, session: Session, now: datetime, max_attempts: int = 3, limit: int = 10
) -> list[str]:
    """Evaluations a runner could claim, oldest first."""
    stmt = (
        select(col(Evaluation.id))
        .where(_claimable(now, max_attempts))
        .order_by(col(Evaluation.id))
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())


def renew_evaluation_lease(
    evaluation_id: str, *, session: Session, owner: str, now: datetime, lease_seconds: float
) -> bool:
    """Extend ``owner``'s lease; False when it no longer holds the evaluation.

    On PostgreSQL the updated row stays locked until the transaction ends, so writes made in
    the same transaction cannot interleave with a takeover."""
    return _update_held(
        evaluation_id,
        session=session,
        owner=owner,
        lease_until=now + timedelta(seconds=lease_seconds),
    )


def _update_held(evaluation_id: str, *, session: Session, owner: str, **values: Any) -> bool:
    e = Evaluation
    result = session.execute(
        update(e)
        .where(col(e.id) == evaluation_id, col(e.state) == "running", col(e.lease_owner) == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def finish_held_evaluation(
    evaluation_id: str, *, session: Session, owner: str, **values: Any
) -> bool:
    """Set state, error, summary, finished_at if ``owner`` still holds the evaluation; the
    lease ends with it."""
    return _update_held(evaluation_id, session=session, owner=owner, lease_until=None, **values)


def release_evaluation(evaluation_id: str, *, session: Session, owner: str) -> bool:
    """Hand a held evaluation back as pending, for the next runner to resume at once; an
    orderly stop is not a crash, so it does not count as an attempt."""
    return _update_held(
        evaluation_id,
        session=session,
        owner=owner,
        state="pending",
        lease_until=None,
        attempts=col(Evaluation.attempts) - 1,
    )


def fail_abandoned_evaluations(
    *, session: Session, now: datetime, max_attempts: int = 3
) -> list[str]:
    """Fail each running evaluation whose lease ran out after ``max_attempts`` claims: its
    runners keep dying, and resuming it again would only repeat that."""
    e = Evaluation
    stuck = (
        col(e.state) == "running",
        or_(col(e.lease_until).is_(None), col(e.lease_until) < now),
        col(e.attempts) >= max_attempts,
    )
    found = list(session.execute(select(col(e.id)).where(*stuck)).scalars())
    if found:
        session.execute(
            update(e)
            .where(col(e.id).in_(found), *stuck)
            .values(
                state="failed",
                error=f"gave up after {max_attempts} attempts: each runner stopped without "
                "finishing (crash, kill or lost database connection)",
                finished_at=now,
                lease_until=None,
            )
            .execution_options(synchronize_session=False)
        )
    return found


def insert_evaluation_results(rows: Sequence[Mapping[str, Any]], *, session: Session) -> None:
    """Store results; a position that has its result already keeps it (two runners that
    overlapped never write one twice)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(_RESULTS).on_conflict_do_nothing(index_elements=["evaluation_id", "position"]),
        [dict(row) for row in rows],
    )


def stored_positions(evaluation_id: str, *, session: Session) -> set[int]:
    """The positions that have their result already."""
    stmt = select(_RESULTS.c.position).where(_RESULTS.c.evaluation_id == evaluation_id)
    return set(session.execute(stmt).scalars())


def refresh_evaluation_progress(
    evaluation_id: str, *, session: Session, total: int | None = None
) -> int:
    """Set ``progress`` to the results stored (and ``total``, when given); returns it."""
    done = int(
        session.execute(
            select(func.count())
            .select_from(_RESULTS)
            .where(_RESULTS.c.evaluation_id == evaluation_id)
        ).scalar_one()
    )
    values: dict[str, Any] = {"progress": done}
    if total is not None:
        values["total"] = total
    update_evaluation(evaluation_id, session=session, **values)
    return done


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
