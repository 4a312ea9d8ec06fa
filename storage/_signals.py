"""Online signals of an alias: per model the router picked, how many requests it served, how
many went wrong, and how many answers users marked as bad.

A request counts for the model the router picked for it. A student's answer that failed and
was answered by the teacher instead (metadata ``stillroom_fallback_from``) counts as one of
the student's requests and one of its errors, never as the teacher's. Shadow captures (tag
``shadow``) are the teacher's background copies, not traffic, and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select
from sqlmodel import Session

from storage._filters import _json_array_contains
from storage._models import Capture

SHADOW_TAG = "shadow"
FALLBACK_FROM = "stillroom_fallback_from"
# A client that hung up is no sign of the model's quality.
_NOT_THE_MODELS_FAULT = ("client_abandoned",)


@dataclass(frozen=True, slots=True)
class ServedSignals:
    """What one model did for an alias in a window."""

    requests: int = 0
    errors: int = 0
    """Answered with a status of 400 or more, failed on the way (timeout, connection, cut
    stream), or fell back to the teacher."""
    negative_feedback: int = 0


def alias_signals(
    alias: str, since: datetime, *, session: Session, until: datetime | None = None
) -> dict[str, ServedSignals]:
    """Per picked model, the signals of ``alias``'s captures created in [since, until)."""
    dialect = session.get_bind().dialect.name
    table: Any = Capture.__table__  # type: ignore[attr-defined]
    c = table.c
    fallback_from = c.metadata[FALLBACK_FROM].as_string()
    failed = or_(
        c.status_code >= 400,
        and_(c.error_kind.is_not(None), c.error_kind.not_in(_NOT_THE_MODELS_FAULT)),
        fallback_from.is_not(None),
    )
    conditions = [
        c.alias == alias,
        c.created_at >= since,
        not_(_json_array_contains(c.tags, SHADOW_TAG, dialect)),
    ]
    if until is not None:
        conditions.append(c.created_at < until)
    # Grouped in an outer query: PostgreSQL cannot tell that two copies of an expression with
    # bound parameters are the same, so it refuses to group by one and select the other.
    rows = (
        select(
            func.coalesce(fallback_from, c.served_model).label("model"),
            case((failed, 1), else_=0).label("failed"),
            case((c.feedback == "negative", 1), else_=0).label("negative"),
        )
        .where(*conditions)
        .subquery()
    )
    stmt = select(
        rows.c.model, func.count(), func.sum(rows.c.failed), func.sum(rows.c.negative)
    ).group_by(rows.c.model)
    return {
        model: ServedSignals(int(count), int(errors or 0), int(negative or 0))
        for model, count, errors, negative in session.execute(stmt).all()
        if model is not None
    }
