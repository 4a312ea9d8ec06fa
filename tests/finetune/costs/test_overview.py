"""The overview service: each alias's traffic split into teacher, student and shadow by the
alias's versions, priced from the real token counts against the price table, and the saving
of the student against the teacher; unpriced models are flagged, never guessed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from finetune import AliasUsage, Overview, build_overview, set_alias, usage_price_table
from storage import session_scope
from tests.curation_rows import capture_row, store
from tests.routing_support import config

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=90)
TEACHER = "gpt-4o-2024-08-06"
STUDENT = "ft:gpt-4o-mini-2024-07-18:acme:support:x1"
PRICES = usage_price_table()

_numbers = iter(range(1, 1_000_000))


def _served(model: str, prompt: int, completion: int, **extra: Any) -> dict[str, Any]:
    n = next(_numbers)
    values: dict[str, Any] = {
        "served_model": model,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
    }
    return capture_row(n, created_at=T0 + timedelta(seconds=n % 3000), **(values | extra))


def _alias(engine: Engine, name: str, *targets: tuple[str, float, str]) -> None:
    with session_scope(engine) as session:
        set_alias(name, config(*targets), actor="test", reason=None, session=session)


def _overview(engine: Engine, hours: int = 24) -> Overview:
    return build_overview(engine, hours=hours, prices=PRICES, now=NOW)


def _one(found: Overview, alias: str) -> AliasUsage:
    return next(a for a in found.aliases if a.alias == alias)


def test_teacher_and_student_costs_and_the_saving_follow_the_price_table(engine: Engine) -> None:
    _alias(engine, "support-bot", (TEACHER, 10, "teacher"), (STUDENT, 90, "student"))
    store(
        engine,
        [
            *(_served(TEACHER, 1_000, 200, alias="support-bot") for _ in range(2)),
            *(_served(STUDENT, 2_000, 500, alias="support-bot") for _ in range(3)),
            _served(TEACHER, 2_000, 500, alias="support-bot", tags=["shadow"]),
        ],
    )
    bot = _one(_overview(engine), "support-bot")
    # gpt-4o: $2.50 / $10.00 per 1M; fine-tuned gpt-4o-mini: $0.30 / $1.20.
    assert (bot.teacher.requests, bot.teacher.prompt_tokens, bot.teacher.completion_tokens) == (
        2,
        2_000,
        400,
    )
    assert bot.teacher.cost_usd == pytest.approx(0.005 + 0.004)
    assert (bot.student.requests, bot.student.prompt_tokens, bot.student.completion_tokens) == (
        3,
        6_000,
        1_500,
    )
    assert bot.student.cost_usd == pytest.approx(0.0018 + 0.0018)
    assert bot.shadow.requests == 1
    assert bot.shadow.cost_usd == pytest.approx(0.005 + 0.005)
    assert bot.cost_usd == pytest.approx(0.009 + 0.0036 + 0.010)
    # The student's 6,000 + 1,500 tokens on the teacher: $0.015 + $0.015.
    assert bot.teacher_only_cost_usd == pytest.approx(0.009 + 0.030)
    # Saving: 0.030 - 0.0036 on the student's part, less the shadow's 0.010.
    assert bot.saving_usd == pytest.approx(0.0164)
    assert bot.requests == 5
    assert bot.student_share == pytest.approx(0.6)
    assert (bot.teacher_model, bot.priced) == (TEACHER, True)


def test_roles_come_from_every_version_of_the_alias_and_from_ft_names(engine: Engine) -> None:
    _alias(engine, "bot", ("gpt-4o", 1, "teacher"), ("gpt-4.1-mini", 1, "student"))
    # The current version no longer names gpt-4.1-mini: it stays a student of this alias.
    _alias(engine, "bot", ("gpt-4o", 1, "teacher"))
    store(
        engine,
        [
            _served("gpt-4.1-mini", 100, 10, alias="bot"),
            _served("ft:gpt-4.1-nano-2025-04-14:acme::never-named", 100, 10, alias="bot"),
            _served("gpt-4o", 100, 10, alias="bot"),
            _served("gpt-4o-mini", 100, 10, alias="bot"),
        ],
    )
    bot = _one(_overview(engine), "bot")
    assert (bot.student.requests, bot.teacher.requests) == (2, 2)
    assert bot.teacher_model == "gpt-4o"


def test_unpriced_models_are_flagged_and_make_no_saving_up(engine: Engine) -> None:
    _alias(engine, "lab", ("gpt-4o", 1, "teacher"), ("my-llama-8b", 1, "student"))
    _alias(engine, "local", ("my-llama-70b", 1, "teacher"), (STUDENT, 1, "student"))
    store(
        engine,
        [
            _served("gpt-4o", 1_000, 100, alias="lab"),
            _served("my-llama-8b", 1_000, 100, alias="lab"),
            _served("my-llama-70b", 1_000, 100, alias="local"),
            _served(STUDENT, 1_000, 100, alias="local"),
        ],
    )
    found = _overview(engine)
    lab, local = _one(found, "lab"), _one(found, "local")
    # lab: the unpriced student is left out of the comparison on both sides.
    assert lab.cost_usd == pytest.approx(0.0025 + 0.001)
    assert (lab.teacher_only_cost_usd, lab.saving_usd, lab.priced) == (lab.cost_usd, 0.0, False)
    # local: with no teacher price there is nothing to measure a saving against.
    assert local.cost_usd == pytest.approx(0.0003 + 0.00012)
    assert (local.teacher_only_cost_usd, local.saving_usd, local.priced) == (
        local.cost_usd,
        0.0,
        False,
    )
    priced = {m.model: m.priced for m in found.models}
    assert priced == {"gpt-4o": True, STUDENT: True, "my-llama-8b": False, "my-llama-70b": False}


def test_models_and_totals_count_every_billed_request(engine: Engine) -> None:
    _alias(engine, "support-bot", (TEACHER, 1, "teacher"), (STUDENT, 1, "student"))
    store(
        engine,
        [
            _served(STUDENT, 2_000, 500, alias="support-bot", review_status="approved"),
            _served(TEACHER, 2_000, 500, alias="support-bot", tags=["shadow"]),
            _served("gpt-4.1-mini", 1_000_000, 0, status_code=500, review_status="rejected"),
        ],
    )
    found = _overview(engine)
    assert [(m.model, m.requests) for m in found.models] == [
        ("gpt-4.1-mini", 1),
        (TEACHER, 1),
        (STUDENT, 1),
    ]
    assert [m.cost_usd for m in found.models] == pytest.approx([0.40, 0.010, 0.0012])
    totals = found.totals
    assert (totals.requests, totals.errors, totals.captures) == (2, 1, 3)
    assert (totals.approved, totals.pending, totals.rejected) == (1, 1, 1)
    assert totals.cost_usd == pytest.approx(0.40 + 0.010 + 0.0012)
    # The student's tokens on the teacher ($0.010) less its own cost and the shadow's.
    assert totals.saving_usd == pytest.approx(0.010 - 0.0012 - 0.010)


def test_the_window_is_charted_by_the_hour_up_to_two_days_then_by_the_day(
    engine: Engine,
) -> None:
    store(engine, [_served("gpt-4o", 10, 5)])
    hourly = _overview(engine, hours=24)
    assert (hourly.bucket_seconds, len(hourly.traffic), hourly.since) == (
        3600,
        25,
        NOW - timedelta(hours=24),
    )
    assert [p.requests for p in hourly.traffic if p.requests] == [1]
    assert hourly.traffic[-2].start == T0
    daily = _overview(engine, hours=72)
    assert (daily.bucket_seconds, len(daily.traffic)) == (86_400, 4)
    with pytest.raises(ValueError, match="hours"):
        _overview(engine, hours=0)


def test_an_alias_without_traffic_is_listed_with_zeros(engine: Engine) -> None:
    _alias(engine, "quiet", ("gpt-4o", 1, "teacher"))
    quiet = _one(_overview(engine), "quiet")
    assert (quiet.requests, quiet.cost_usd, quiet.saving_usd, quiet.student_share) == (0, 0, 0, 0)
