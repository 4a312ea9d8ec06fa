"""Data access for training jobs, their events and their checkpoints."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from storage._models import utcnow
from storage._training_models import TrainingCheckpoint, TrainingEvent, TrainingJob

TERMINAL_TRAINING_STATES = frozenset({"succeeded", "failed", "cancelled"})
"""A job in one of these never changes again."""

_EVENTS: Any = TrainingEvent.__table__  # type: ignore[attr-defined]
_CHECKPOINTS: Any = TrainingCheckpoint.__table__  # type: ignore[attr-defined]


def new_training_job_id() -> str:
    """Time-ordered, so listing by id lists by launch."""
    return f"trj_{time.time_ns():016x}{os.urandom(4).hex()}"


def insert_training_job(job: TrainingJob, *, session: Session) -> TrainingJob:
    """Add ``job``; a second job with the same idempotency key fails at flush."""
    session.add(job)
    session.flush()
    return job


def get_training_job(job_id: str, *, session: Session) -> TrainingJob | None:
    return session.get(TrainingJob, job_id)


def get_training_job_by_key(key: str, *, session: Session) -> TrainingJob | None:
    stmt = select(TrainingJob).where(col(TrainingJob.idempotency_key) == key)
    return session.scalars(stmt).first()


def list_training_jobs(
    *,
    session: Session,
    states: Iterable[str] | None = None,
    open_only: bool = False,
    dataset_id: str | None = None,
    cycle_id: str | None = None,
    limit: int = 100,
) -> list[TrainingJob]:
    """Newest first."""
    stmt = select(TrainingJob)
    if states is not None:
        stmt = stmt.where(col(TrainingJob.state).in_(list(states)))
    if open_only:
        stmt = stmt.where(col(TrainingJob.state).not_in(TERMINAL_TRAINING_STATES))
    if dataset_id is not None:
        stmt = stmt.where(col(TrainingJob.dataset_id) == dataset_id)
    if cycle_id is not None:
        stmt = stmt.where(col(TrainingJob.cycle_id) == cycle_id)
    stmt = stmt.order_by(col(TrainingJob.id).desc()).limit(limit)
    return list(session.scalars(stmt))


def update_training_job(
    job_id: str, changes: Mapping[str, Any], *, session: Session
) -> TrainingJob | None:
    """Set ``changes`` on the job and stamp ``updated_at``; None when there is no such job."""
    job = session.get(TrainingJob, job_id)
    if job is None:
        return None
    for name, value in changes.items():
        setattr(job, name, value)
    job.updated_at = utcnow()
    session.add(job)
    session.flush()
    return job


def _insert_ignoring_duplicates(table: Any, rows: list[dict[str, Any]], session: Session) -> int:
    """Insert ``rows``, skipping any a concurrent or earlier sync already stored."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # RETURNING counts what went in: psycopg reports no rowcount for a multi-row VALUES.
    stmt = insert(table).values(rows).on_conflict_do_nothing().returning(table.c.id)
    return len(session.execute(stmt).all())


def add_training_events(
    job_id: str, events: Iterable[Mapping[str, Any]], *, session: Session
) -> int:
    """Store events (keys of ``TrainingEvent`` but ``id`` and ``job_id``); returns how many
    were new."""
    rows = [{**event, "job_id": job_id} for event in events]
    return _insert_ignoring_duplicates(_EVENTS, rows, session)


def add_training_checkpoints(
    job_id: str, checkpoints: Iterable[Mapping[str, Any]], *, session: Session
) -> int:
    rows = [{**checkpoint, "job_id": job_id} for checkpoint in checkpoints]
    return _insert_ignoring_duplicates(_CHECKPOINTS, rows, session)


def last_training_event_id(job_id: str, *, session: Session) -> str | None:
    """The backend id of the newest stored event: where the next sync reads on from."""
    stmt = (
        select(_EVENTS.c.backend_event_id)
        .where(_EVENTS.c.job_id == job_id)
        .order_by(_EVENTS.c.created_at.desc(), _EVENTS.c.id.desc())
        .limit(1)
    )
    found: str | None = session.execute(stmt).scalar()
    return found


def list_training_events(
    job_id: str, *, session: Session, limit: int = 1000
) -> list[TrainingEvent]:
    """Oldest first; the newest ``limit`` of them."""
    stmt = (
        select(TrainingEvent)
        .where(col(TrainingEvent.job_id) == job_id)
        .order_by(col(TrainingEvent.created_at).desc(), col(TrainingEvent.id).desc())
        .limit(limit)
    )
    return list(reversed(list(session.scalars(stmt))))


def list_training_checkpoints(job_id: str, *, session: Session) -> list[TrainingCheckpoint]:
    """By step."""
    stmt = (
        select(TrainingCheckpoint)
        .where(col(TrainingCheckpoint.job_id) == job_id)
        .order_by(col(TrainingCheckpoint.step), col(TrainingCheckpoint.id))
    )
    return list(session.scalars(stmt))


def count_training_events(job_id: str, *, session: Session) -> int:
    stmt = select(func.count()).select_from(_EVENTS).where(_EVENTS.c.job_id == job_id)
    return int(session.execute(stmt).scalar() or 0)


def claim_training_launch(job_id: str, stale_before: datetime, *, session: Session) -> bool:
    """Move the job from ``pending`` to ``starting`` (or take over a ``starting`` whose
    launcher went quiet before ``stale_before``); False when another launcher holds it."""
    jobs: Any = TrainingJob.__table__  # type: ignore[attr-defined]
    stmt = (
        update(jobs)
        .where(
            jobs.c.id == job_id,
            or_(
                jobs.c.state == "pending",
                and_(jobs.c.state == "starting", jobs.c.updated_at < stale_before),
            ),
        )
        .values(state="starting", updated_at=utcnow())
    )
    result: Any = session.execute(stmt)
    return bool(result.rowcount == 1)


def touch_training_launch(job_id: str, *, session: Session) -> None:
    """A launcher's heartbeat: the launch it holds stays its own."""
    jobs: Any = TrainingJob.__table__  # type: ignore[attr-defined]
    session.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.state == "starting")
        .values(updated_at=utcnow())
    )
