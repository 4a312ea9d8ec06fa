"""The overview's figures of a time window: traffic per bucket, usage per route, review counts;
shadow captures are no client traffic, and failures count as errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from storage import RouteUsage, TrafficBucket, capture_tallies, session_scope
from tests.curation_rows import capture_row, store

HOUR = 3600
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_hourly_buckets_cover_the_window_on_utc_hours_empty_ones_included(engine: Engine) -> None:
    store(
        engine,
        [
            capture_row(1, created_at=_at(5)),
            capture_row(2, created_at=_at(59)),
            capture_row(3, created_at=_at(61), review_status="approved"),
            capture_row(4, created_at=_at(200)),  # after the window
            capture_row(5, created_at=_at(-90)),  # before it
        ],
    )
    with session_scope(engine) as session:
        found = capture_tallies(_at(-30), _at(150), bucket_seconds=HOUR, session=session)
    assert found.buckets == [
        TrafficBucket(T0 - timedelta(hours=1), 0, 0, 0, 0),
        TrafficBucket(T0, 2, 0, 2, 0),
        TrafficBucket(T0 + timedelta(hours=1), 1, 0, 1, 1),
        TrafficBucket(T0 + timedelta(hours=2), 0, 0, 0, 0),
    ]
    assert found.review == {"pending": 2, "approved": 1, "rejected": 0}


def test_daily_buckets_start_at_utc_midnight(engine: Engine) -> None:
    store(
        engine,
        [
            capture_row(1, created_at=datetime(2026, 11, 1, 0, 0, tzinfo=UTC)),
            capture_row(2, created_at=datetime(2026, 11, 1, 23, 59, tzinfo=UTC)),
            capture_row(3, created_at=datetime(2026, 11, 2, 0, 0, tzinfo=UTC)),
        ],
    )
    with session_scope(engine) as session:
        found = capture_tallies(
            datetime(2026, 10, 31, 18, tzinfo=UTC),
            datetime(2026, 11, 2, 6, tzinfo=UTC),
            bucket_seconds=86_400,
            session=session,
        )
    assert [(b.start.day, b.start.hour, b.requests) for b in found.buckets] == [
        (31, 0, 0),
        (1, 0, 2),
        (2, 0, 1),
    ]


def test_shadow_captures_are_no_client_traffic_but_are_counted_apart(engine: Engine) -> None:
    store(
        engine,
        [
            capture_row(1, created_at=_at(1), alias="bot", served_model="ft:small"),
            capture_row(
                2,
                created_at=_at(2),
                alias="bot",
                served_model="gpt-4o",
                tags=["shadow"],
                review_status="approved",
                prompt_tokens=100,
                completion_tokens=40,
            ),
            capture_row(
                3,
                created_at=_at(3),
                alias="bot",
                served_model="gpt-4o",
                tags=["good", "shadow"],
                status_code=500,
                prompt_tokens=None,
                completion_tokens=None,
            ),
        ],
    )
    with session_scope(engine) as session:
        found = capture_tallies(T0, _at(60), bucket_seconds=HOUR, session=session)
    # Only the student's answer is client traffic; the approved shadow still counts as approved.
    assert found.buckets == [TrafficBucket(T0, 1, 0, 1, 1)]
    assert found.routes == [
        RouteUsage("bot", "ft:small", False, 1, 0, 10, 5),
        RouteUsage("bot", "gpt-4o", True, 2, 1, 100, 40),
    ]
    assert found.review == {"pending": 2, "approved": 1, "rejected": 0}


def test_errors_are_failed_statuses_or_no_upstream_answer(engine: Engine) -> None:
    store(
        engine,
        [
            capture_row(1, created_at=_at(1)),
            capture_row(2, created_at=_at(2), status_code=429),
            capture_row(3, created_at=_at(3), status_code=500),
            capture_row(4, created_at=_at(4), status_code=None, error_kind="timeout"),
            capture_row(5, created_at=_at(5), status_code=399),
        ],
    )
    with session_scope(engine) as session:
        found = capture_tallies(T0, _at(60), bucket_seconds=HOUR, session=session)
    assert (found.buckets[0].requests, found.buckets[0].errors) == (5, 3)
    assert found.routes == [RouteUsage(None, "gpt-4o-mini", False, 5, 3, 50, 25)]


def test_usage_is_summed_per_alias_and_served_model(engine: Engine) -> None:
    store(
        engine,
        [
            capture_row(1, created_at=_at(1), alias="bot", served_model="gpt-4o"),
            capture_row(2, created_at=_at(70), alias="bot", served_model="gpt-4o"),
            capture_row(3, created_at=_at(2), alias="bot", served_model="ft:small"),
            capture_row(4, created_at=_at(3), alias="other", served_model="gpt-4o"),
            # Never reached an upstream: stands under the model it asked for.
            capture_row(
                5,
                created_at=_at(4),
                served_model=None,
                requested_model="gpt-4.1",
                status_code=None,
                error_kind="connect",
                prompt_tokens=None,
                completion_tokens=None,
            ),
        ],
    )
    with session_scope(engine) as session:
        found = capture_tallies(T0, _at(120), bucket_seconds=HOUR, session=session)
    assert found.routes == [
        RouteUsage(None, "gpt-4.1", False, 1, 1, 0, 0),
        RouteUsage("bot", "ft:small", False, 1, 0, 10, 5),
        RouteUsage("bot", "gpt-4o", False, 2, 0, 20, 10),
        RouteUsage("other", "gpt-4o", False, 1, 0, 10, 5),
    ]
    assert [b.requests for b in found.buckets] == [4, 1]


def test_an_empty_window_has_zero_buckets_and_no_routes(engine: Engine) -> None:
    with session_scope(engine) as session:
        found = capture_tallies(T0, _at(180), bucket_seconds=HOUR, session=session)
    assert [b.requests for b in found.buckets] == [0, 0, 0]
    assert found.routes == []
    assert found.review == {"pending": 0, "approved": 0, "rejected": 0}
