"""Online signals of an alias: per picked model, requests, errors and negative feedback since a
moment; shadow copies left out, a fallback counted against the student that failed."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from storage import ServedSignals, alias_signals, session_scope
from tests.curation_rows import T0, capture_row, store

STUDENT, TEACHER = "ft:small", "gpt-4o"


def _served(n: int, model: str, **overrides: Any) -> dict[str, Any]:
    return capture_row(n, alias="bot", served_model=model, **overrides)


def _signals(engine: Engine, until: datetime | None = None) -> dict[str, ServedSignals]:
    with session_scope(engine) as session:
        return alias_signals("bot", T0, session=session, until=until)


def test_requests_errors_and_negative_feedback_are_counted_per_model(engine: Engine) -> None:
    store(
        engine,
        [
            _served(1, STUDENT),
            _served(2, STUDENT, status_code=500),
            _served(3, STUDENT, status_code=None, error_kind="timeout"),
            _served(4, STUDENT, feedback="negative"),
            _served(5, STUDENT, feedback="positive"),
            _served(6, TEACHER),
            _served(7, TEACHER, status_code=429),
        ],
    )
    assert _signals(engine) == {
        STUDENT: ServedSignals(requests=5, errors=2, negative_feedback=1),
        TEACHER: ServedSignals(requests=2, errors=1, negative_feedback=0),
    }


def test_a_fallback_answer_counts_as_a_student_request_and_error(engine: Engine) -> None:
    fallback = {"stillroom_fallback_from": STUDENT, "stillroom_fallback_reason": "status 503"}
    store(engine, [_served(1, TEACHER, metadata_=fallback), _served(2, TEACHER)])
    assert _signals(engine) == {
        STUDENT: ServedSignals(requests=1, errors=1, negative_feedback=0),
        TEACHER: ServedSignals(requests=1, errors=0, negative_feedback=0),
    }


def test_shadow_captures_are_not_traffic(engine: Engine) -> None:
    store(
        engine,
        [
            _served(1, STUDENT),
            _served(2, TEACHER, tags=["shadow"], metadata_={"stillroom_shadow_of": "cap_1"}),
            _served(3, TEACHER, tags=["shadow", "reviewed"], status_code=500),
            _served(4, TEACHER, tags=["reviewed"]),
        ],
    )
    assert _signals(engine) == {
        STUDENT: ServedSignals(requests=1),
        TEACHER: ServedSignals(requests=1),
    }


def test_a_client_hanging_up_is_not_the_models_error(engine: Engine) -> None:
    store(engine, [_served(1, STUDENT, error_kind="client_abandoned", abandoned=True)])
    assert _signals(engine) == {STUDENT: ServedSignals(requests=1, errors=0)}


def test_only_the_alias_and_the_window_count(engine: Engine) -> None:
    store(
        engine,
        [
            _served(1, STUDENT, created_at=T0 - timedelta(seconds=1)),
            _served(2, STUDENT),
            _served(3, STUDENT, created_at=T0 + timedelta(hours=2)),
            capture_row(4, alias="other-bot", served_model=STUDENT),
            capture_row(5, served_model=STUDENT),
        ],
    )
    assert _signals(engine) == {STUDENT: ServedSignals(requests=2)}
    assert _signals(engine, until=T0 + timedelta(hours=1)) == {STUDENT: ServedSignals(requests=1)}
