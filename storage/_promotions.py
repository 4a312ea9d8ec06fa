"""Data access for promotions.

Ending a canary is a conditional update (``WHERE stage = 'canary'``) made before anything
else in its transaction: of two processes deciding the same canary, the second changes nothing
and learns so. On PostgreSQL the update waits for the first's row lock; on SQLite it is the
statement that takes the database's single write lock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlmodel import Session, col

from storage._promotion_models import OPEN_STAGE, Promotion


def new_promotion_id() -> str:
    """Time-ordered, so listing by id lists by start."""
    return f"prom_{time.time_ns():016x}{os.urandom(4).hex()}"


def insert_promotion(promotion: Promotion, *, session: Session) -> Promotion:
    """Raises IntegrityError when the alias has an open canary already."""
    session.add(promotion)
    session.flush()
    return promotion


def get_promotion(promotion_id: str, *, session: Session) -> Promotion | None:
    return session.get(Promotion, promotion_id)


def list_promotions(
    *, session: Session, alias: str | None = None, limit: int = 100
) -> list[Promotion]:
    """Newest first."""
    stmt = select(Promotion)
    if alias is not None:
        stmt = stmt.where(col(Promotion.alias) == alias)
    stmt = stmt.order_by(col(Promotion.id).desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def open_promotion(alias: str, *, session: Session) -> Promotion | None:
    """The alias's canary under way, if any."""
    stmt = select(Promotion).where(
        col(Promotion.alias) == alias, col(Promotion.stage) == OPEN_STAGE
    )
    return session.execute(stmt).scalars().first()


def open_promotions(*, session: Session) -> list[Promotion]:
    """Every canary under way, oldest first."""
    stmt = select(Promotion).where(col(Promotion.stage) == OPEN_STAGE).order_by(col(Promotion.id))
    return list(session.execute(stmt).scalars())


def end_promotion(
    promotion_id: str,
    stage: str,
    *,
    decided_at: datetime,
    decided_by: str,
    outcome: str,
    session: Session,
    changes: Mapping[str, Any] | None = None,
    from_stage: str = OPEN_STAGE,
) -> bool:
    """``from_stage`` (the canary) -> ``stage``; False, and nothing changed, when the promotion
    had left ``from_stage`` already."""
    result = session.execute(
        update(Promotion)
        .where(col(Promotion.id) == promotion_id, col(Promotion.stage) == from_stage)
        .values(
            stage=stage,
            decided_at=decided_at,
            decided_by=decided_by,
            outcome=outcome,
            **dict(changes or {}),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def update_promotion(promotion_id: str, *, session: Session, **values: Any) -> None:
    """Set any columns, e.g. the full version once it is written."""
    session.execute(
        update(Promotion)
        .where(col(Promotion.id) == promotion_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def record_signals(
    promotion_id: str, signals: Mapping[str, Any], *, checked_at: datetime, session: Session
) -> None:
    """Keep the latest measurement on an open canary (a decided one keeps its last)."""
    session.execute(
        update(Promotion)
        .where(col(Promotion.id) == promotion_id, col(Promotion.stage) == OPEN_STAGE)
        .values(signals=dict(signals), checked_at=checked_at)
        .execution_options(synchronize_session=False)
    )
