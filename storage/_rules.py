"""Data access for running curation rules over stored captures: read in keyset batches, write
decisions back in bulk (tags are written with ``replace_tags``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session

from storage._filters import CaptureFilter, filter_clauses
from storage._models import Capture

# What a rule can ask about a capture, without its bodies.
RULE_COLUMNS = (
    "id",
    "status_code",
    "error_kind",
    "requested_model",
    "alias",
    "served_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "finish_reason",
    "stream",
    "abandoned",
    "metadata",
    "review_status",
    "tags",
    "feedback",
)
BODY_COLUMNS = ("request", "response", "error")


def _table() -> Any:
    return Capture.__table__  # type: ignore[attr-defined]


def count_filtered_captures(capture_filter: CaptureFilter, *, session: Session) -> int:
    dialect = session.get_bind().dialect.name
    stmt = select(func.count()).select_from(_table())
    for clause in filter_clauses(capture_filter, dialect):
        stmt = stmt.where(clause)
    return int(session.execute(stmt).scalar_one())


def capture_rows_after(
    capture_filter: CaptureFilter,
    *,
    session: Session,
    after: str | None,
    limit: int,
    with_bodies: bool,
    lock: bool = False,
) -> list[dict[str, Any]]:
    """The next ``limit`` captures matching the filter with an id above ``after``, oldest first,
    as row dicts shaped like the capture writer's (``metadata_`` for the metadata column).

    Without ``with_bodies`` the request and response stay in the database; ``error`` is then
    reduced to whether there was one. ``lock`` holds the rows until the session commits, on
    PostgreSQL, so the caller can rewrite tags without losing a concurrent edit."""
    table = _table()
    dialect = session.get_bind().dialect.name
    columns = [table.c[name] for name in RULE_COLUMNS]
    if with_bodies:
        columns += [table.c[name] for name in BODY_COLUMNS]
    else:
        json_type = func.jsonb_typeof if dialect == "postgresql" else func.json_type
        # None is stored as JSON null, not SQL NULL: ask for the value's JSON type.
        has_error = func.coalesce(json_type(table.c.error), "null") != "null"
        columns.append(has_error.label("has_error"))
    stmt = select(*columns)
    for clause in filter_clauses(capture_filter, dialect):
        stmt = stmt.where(clause)
    if after is not None:
        stmt = stmt.where(table.c.id > after)
    stmt = stmt.order_by(table.c.id).limit(limit)
    if lock and dialect == "postgresql":
        stmt = stmt.with_for_update(of=table)
    rows = []
    for found in session.execute(stmt):
        row = dict(found._mapping)
        row["metadata_"] = row.pop("metadata")
        if not with_bodies:
            # Only the fact that there was an error is read; a marker stands for the body.
            row["error"] = {} if row.pop("has_error") else None
        rows.append(row)
    return rows


def decide_review_status(
    capture_ids: Collection[str],
    status: str,
    *,
    only_from: Sequence[str] | None,
    session: Session,
) -> int:
    """Set the status of these captures where their current status is in ``only_from`` (None:
    whatever it is), so a reviewer's decision made meanwhile is kept; returns how many changed."""
    if not capture_ids:
        return 0
    table = _table()
    stmt = (
        update(table)
        .where(table.c.id.in_(list(capture_ids)), table.c.review_status != status)
        .values(review_status=status)
    )
    if only_from is not None:
        stmt = stmt.where(table.c.review_status.in_(list(only_from)))
    result = session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
