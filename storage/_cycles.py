"""Data access for cycles and leases.

Every change of a cycle's state is a conditional update (``WHERE state = <expected>``): a
process that lost the race — to a cancel, or to another replica — changes nothing and learns so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from storage._cycle_models import OPEN_CYCLE_STATES, Cycle, Lease
from storage._models import utcnow


def new_cycle_id() -> str:
    """Time-ordered, so listing by id lists by start."""
    return f"cyc_{time.time_ns():016x}{os.urandom(4).hex()}"


def insert_cycle(cycle: Cycle, *, session: Session) -> Cycle:
    """Raises IntegrityError when the alias has an open cycle already."""
    session.add(cycle)
    session.flush()
    return cycle


def get_cycle(cycle_id: str, *, session: Session) -> Cycle | None:
    return session.get(Cycle, cycle_id)


def list_cycles(
    *,
    session: Session,
    alias: str | None = None,
    states: Sequence[str] | None = None,
    limit: int = 100,
) -> list[Cycle]:
    """Newest first."""
    stmt = select(Cycle)
    if alias is not None:
        stmt = stmt.where(col(Cycle.alias) == alias)
    if states:
        stmt = stmt.where(col(Cycle.state).in_(states))
    stmt = stmt.order_by(col(Cycle.id).desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def open_cycles(*, session: Session) -> list[Cycle]:
    """Every cycle still under way, oldest first."""
    stmt = select(Cycle).where(col(Cycle.state).in_(OPEN_CYCLE_STATES)).order_by(col(Cycle.id))
    return list(session.execute(stmt).scalars())


def last_collected_cycle(alias: str, *, session: Session) -> Cycle | None:
    """The newest cycle of ``alias`` that took its examples, whatever became of it."""
    stmt = (
        select(Cycle)
        .where(col(Cycle.alias) == alias, col(Cycle.collected_until).is_not(None))
        .order_by(col(Cycle.id).desc())
        .limit(1)
    )
    return session.execute(stmt).scalars().first()


def last_cycle(alias: str, *, session: Session) -> Cycle | None:
    stmt = select(Cycle).where(col(Cycle.alias) == alias).order_by(col(Cycle.id).desc()).limit(1)
    return session.execute(stmt).scalars().first()


def update_cycle(
    cycle_id: str, expected_state: str, changes: Mapping[str, Any], *, session: Session
) -> bool:
    """Apply ``changes`` if the cycle is still in ``expected_state``; False when it is not."""
    result = session.execute(
        update(Cycle)
        .where(col(Cycle.id) == cycle_id, col(Cycle.state) == expected_state)
        .values(**changes, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def acquire_lease(
    name: str, owner: str, *, seconds: float, session: Session, now: datetime | None = None
) -> bool:
    """Take or renew the lease ``name`` for ``seconds``: True when ``owner`` holds it now.

    A lease is taken over only once its holder let it run out."""
    moment = now or utcnow()
    until = moment + timedelta(seconds=seconds)
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table: Any = Lease.__table__  # type: ignore[attr-defined]
    created = session.execute(
        insert(table)
        .values(name=name, owner=owner, until=until, acquired_at=moment)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    if getattr(created, "rowcount", 0) == 1:
        return True
    renewed = session.execute(
        update(Lease)
        .where(
            col(Lease.name) == name,
            (col(Lease.owner) == owner) | (col(Lease.until) < moment),
        )
        # A takeover starts a new tenure; a renewal keeps the old start.
        .values(
            owner=owner,
            until=until,
            acquired_at=case((col(Lease.owner) == owner, col(Lease.acquired_at)), else_=moment),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(renewed, "rowcount", 0) == 1)


def release_lease(name: str, owner: str, *, session: Session) -> None:
    """Let the lease go at once, so another process need not wait for it to run out."""
    session.execute(
        update(Lease)
        .where(col(Lease.name) == name, col(Lease.owner) == owner)
        .values(until=utcnow() - timedelta(seconds=1))
        .execution_options(synchronize_session=False)
    )


def get_lease(name: str, *, session: Session) -> Lease | None:
    return session.get(Lease, name)
