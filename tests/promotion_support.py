"""Shared pieces of the promotion tests: an alias with a teacher, and traffic on it."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from finetune import CanaryPolicy, set_alias
from storage import session_scope
from tests.curation_rows import T0, capture_row, store
from tests.routing_support import config

TEACHER, STUDENT = "gpt-4o", "ft:gpt-4o-mini:acme::s1"
CANARY = CanaryPolicy(
    canary_percent=10, full_after_seconds=3600, full_after_requests=40, min_requests_to_judge=20
)
"""Started at T0: full after an hour or 40 student requests, judged from 20."""

_numbers = itertools.count(1)


def make_alias(engine: Engine, name: str = "bot", *targets: tuple[str, float, str]) -> None:
    """``name`` served by the teacher alone, unless ``targets`` say otherwise."""
    with session_scope(engine) as session:
        set_alias(
            name,
            config(*(targets or ((TEACHER, 1, "teacher"),))),
            actor="ann",
            reason="launch",
            session=session,
        )


def traffic(
    engine: Engine,
    model: str,
    count: int,
    *,
    alias: str = "bot",
    errors: int = 0,
    negative: int = 0,
    seconds: float = 1,
    **overrides: Any,
) -> None:
    """``count`` requests of ``alias`` served by ``model`` ``seconds`` after T0: the first
    ``errors`` answered 500, the next ``negative`` marked bad by their users."""
    rows = []
    for n in range(count):
        values: dict[str, Any] = {
            "alias": alias,
            "served_model": model,
            "created_at": T0 + timedelta(seconds=seconds),
            **overrides,
        }
        if n < errors:
            values["status_code"] = 500
        elif n < errors + negative:
            values["feedback"] = "negative"
        rows.append(capture_row(next(_numbers), **values))
    store(engine, rows)
