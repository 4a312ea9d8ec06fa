"""Traffic, review and token figures of the captures in a time window, for the overview.

Two grouped reads of the window, a row per (time bucket, alias, model) with counts and token
sums: one over every capture, one over the shadow captures alone; client traffic is the
difference. Even at a million captures that is a few hundred rows, and the traffic series and
the per-route usage are both summed from them here.

Both reads come from indexes alone, never the table's bodies (migration 0010):
``ix_captures_created_at`` carries every column read here, and the partial
``ix_captures_shadow`` does the same for the shadow captures alone. Shadow-ness lives in the
``tags`` JSON, which no index entry can carry safely (a long tag list would not fit), hence
the second, partial index.

Buckets are whole multiples of ``bucket_seconds`` since the Unix epoch, so hours and days start
on UTC boundaries and a bucket's figures never move when the window slides.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import TextClause, bindparam, case, func, literal_column, or_, select, text
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from storage._filters import _json_array_contains
from storage._models import Capture

SHADOW_TAG = "shadow"
"""The tag the proxy puts on a shadow request's capture."""

# The partial indexes' predicates, written out, not bound: a query uses such an index only
# when its own condition is provably the index's, and a bound parameter proves nothing once
# the driver's prepared statement goes generic. SQLite's is a text match (a partial index
# admits no json_each); the query adds the exact JSON test on the few rows it lets through.
SHADOW_PREDICATE = {
    "postgresql": "tags @> '[\"shadow\"]'::jsonb",
    "sqlite": "tags LIKE '%\"shadow\"%'",
}

_TICK = timedelta(microseconds=1)
_FIGURES = 7
"""count, errors, approved, pending, rejected, prompt_tokens, completion_tokens."""


@dataclass(frozen=True, slots=True)
class TrafficBucket:
    """One bucket of the traffic series: client traffic only, shadow captures left out, except
    ``approved``, which counts every capture approved for training."""

    start: datetime
    requests: int
    errors: int
    """Status 400 or above, or no answer from upstream (``error_kind`` set)."""
    captured: int
    """Requests whose capture was stored: every one of them today, as the sink loses none."""
    approved: int


@dataclass(frozen=True, slots=True)
class RouteUsage:
    """What one (alias, model, shadow or not) route carried in the window."""

    alias: str | None
    """None for a plain model name that passed through."""
    model: str | None
    """The model that served; the requested one when none was reached."""
    shadow: bool
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class CaptureTallies:
    since: datetime
    until: datetime
    bucket_seconds: int
    buckets: list[TrafficBucket]
    """Every bucket from the one holding ``since`` to the one holding ``until``, empty ones
    included, oldest first."""
    routes: list[RouteUsage]
    review: dict[str, int]
    """pending, approved and rejected: every capture in the window, shadow ones included."""


def capture_tallies(
    since: datetime, until: datetime, *, bucket_seconds: int, session: Session
) -> CaptureTallies:
    """The figures of the captures created in [``since``, ``until``)."""
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be positive")
    if session.get_bind().dialect.name == "postgresql":
        # A busy bucket's read crosses the planner's JIT threshold, and compiling took longer
        # than running (2.7 s of 4.3 s for a month of a million captures read at once);
        # SET LOCAL ends with the transaction.
        session.execute(text("SET LOCAL jit = off"))
    every = _grouped(session, since, until, bucket_seconds, shadow_only=False)
    shadow = _grouped(session, since, until, bucket_seconds, shadow_only=True)
    return _tally(every, shadow, since, until, bucket_seconds)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))


def _grouped(
    session: Session, since: datetime, until: datetime, seconds: int, *, shadow_only: bool
) -> list[Any]:
    """(bucket index, alias, model, *figures) rows, read one bucket's index range at a time.

    Grouped on an expression of created_at instead, PostgreSQL cannot know how few groups
    there are: it guessed a million, sorted the month's rows on disk rather than hash them, and
    took 1.5-2 s where this takes 0.7 s; SQLite, too, sorts less this way."""
    dialect = session.get_bind().dialect.name
    c: Any = Capture.__table__.c  # type: ignore[attr-defined]
    conditions: list[ColumnElement[bool] | TextClause] = []
    if shadow_only:
        # Verbatim: SQLite would compare a boolean column expression "= 1", which no longer
        # reads as the index's predicate.
        conditions.append(text(SHADOW_PREDICATE[dialect]))
    if shadow_only and dialect != "postgresql":
        conditions.append(_json_array_contains(c.tags, SHADOW_TAG, dialect))
    statement = select(
        c.alias,
        func.coalesce(c.served_model, c.requested_model),
        func.count(),
        _count_if(or_(c.status_code >= 400, c.error_kind.is_not(None))),
        _count_if(c.review_status == "approved"),
        _count_if(c.review_status == "pending"),
        _count_if(c.review_status == "rejected"),
        func.coalesce(func.sum(c.prompt_tokens), 0),
        func.coalesce(func.sum(c.completion_tokens), 0),
    ).where(
        c.created_at >= bindparam("low", type_=c.created_at.type),
        c.created_at < bindparam("high", type_=c.created_at.type),
        *conditions,
    )
    # By position: the model expression, repeated in GROUP BY, is the same to either store.
    statement = statement.group_by(literal_column("1"), literal_column("2"))
    rows: list[Any] = []
    for index in range(_index_of(since, seconds), _index_of(until - _TICK, seconds) + 1):
        low = max(since, _start_of(index, seconds))
        high = min(until, _start_of(index + 1, seconds))
        found = session.execute(statement, {"low": low, "high": high}).all()
        rows.extend((index, *row) for row in found)
    return rows


Key = tuple[int, str | None, str | None]


def _sums(rows: Iterable[Any]) -> dict[Key, list[int]]:
    found: dict[Key, list[int]] = defaultdict(lambda: [0] * _FIGURES)
    for index, alias, model, *figures in rows:
        into = found[(index, alias, model)]
        for position, value in enumerate(figures):
            into[position] += int(value or 0)
    return found


def _tally(
    every: list[Any], shadow: list[Any], since: datetime, until: datetime, seconds: int
) -> CaptureTallies:
    everything, shadows = _sums(every), _sums(shadow)
    series: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    routes: dict[tuple[str | None, str | None, bool], list[int]] = defaultdict(lambda: [0] * 4)
    review = {"pending": 0, "approved": 0, "rejected": 0}
    for key, figures in everything.items():
        index, alias, model = key
        aside = shadows.get(key, [0] * _FIGURES)
        client = [total - part for total, part in zip(figures, aside, strict=True)]
        _, _, approved, pending, rejected, _, _ = figures
        series[index][0] += client[0]
        series[index][1] += client[1]
        series[index][2] += approved
        review["approved"] += approved
        review["pending"] += pending
        review["rejected"] += rejected
        for is_shadow, part in ((False, client), (True, aside)):
            count, errors, _, _, _, prompt, completion = part
            if count:
                route = routes[(alias, model, is_shadow)]
                for position, value in enumerate((count, errors, prompt, completion)):
                    route[position] += value
    buckets = []
    for index in range(_index_of(since, seconds), _index_of(until - _TICK, seconds) + 1):
        requests, errors, approved = series.get(index, (0, 0, 0))
        buckets.append(
            TrafficBucket(_start_of(index, seconds), requests, errors, requests, approved)
        )
    usage = [
        RouteUsage(alias, model, shadow, *figures)
        for (alias, model, shadow), figures in sorted(routes.items(), key=_route_order)
    ]
    return CaptureTallies(since, until, seconds, buckets, usage, review)


def _index_of(moment: datetime, seconds: int) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp()) // seconds


def _start_of(index: int, seconds: int) -> datetime:
    return datetime.fromtimestamp(index * seconds, UTC)


def _route_order(item: tuple[tuple[str | None, str | None, bool], list[int]]) -> tuple[Any, ...]:
    (alias, model, shadow), _ = item
    return (alias or "", model or "", shadow)
