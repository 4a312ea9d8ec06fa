"""Promotion: the student gets a canary share of the alias, goes full after its time or sample,
is rolled back when its online signals regress against the teacher's; every change is in the
alias's history with who and why, and each canary is decided exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from finetune import (
    InvalidPromotion,
    PromotionConflict,
    PromotionNotFound,
    abort_promotion,
    advance_promotions,
    alias_history,
    get_alias_view,
    get_promotion,
    list_promotions,
    promote_now,
    set_alias,
    start_promotion,
)
from storage import Promotion, insert_promotion, session_scope
from tests.curation_rows import T0
from tests.promotion_support import CANARY, STUDENT, TEACHER, make_alias, traffic
from tests.routing_support import config

HOUR = timedelta(hours=1)


def _start(engine: Engine, alias: str = "bot", **options: object) -> Promotion:
    arguments: dict[str, object] = {"policy": CANARY, "actor": "ann", "reason": "gate passed"}
    arguments.update(options)
    return start_promotion(engine, alias, STUDENT, now=T0, **arguments)  # type: ignore[arg-type]


def _split(engine: Engine, alias: str = "bot") -> list[tuple[str, float, str]]:
    with session_scope(engine) as session:
        view = get_alias_view(alias, session=session)
    return [(t.model, t.weight, t.role) for t in view.targets]


def _history(engine: Engine, alias: str = "bot") -> list[tuple[str, int | None, str]]:
    with session_scope(engine) as session:
        return [(e.action, e.to_version, e.actor) for e in alias_history(alias, session=session)]


def test_a_canary_gives_the_student_its_share_and_replaces_an_old_student(
    engine: Engine,
) -> None:
    make_alias(engine, "bot", (TEACHER, 1, "teacher"), ("ft:old", 1, "student"))
    promotion = _start(engine)
    assert (promotion.stage, promotion.from_version, promotion.canary_version) == ("canary", 1, 2)
    assert _split(engine) == [(TEACHER, 90, "teacher"), (STUDENT, 10, "student")]
    with session_scope(engine) as session:
        assert get_alias_view("bot", session=session).shadow_rate == 0.05
        latest = alias_history("bot", session=session)[0]
    assert (latest.action, latest.actor, latest.reason) == (
        "promote",
        "ann",
        f"promotion {promotion.id}: canary 10% to {STUDENT} (gate passed)",
    )


def test_a_canary_of_zero_goes_straight_to_full_keeping_the_teacher(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine, policy=CANARY.model_copy(update={"canary_percent": 0.0}))
    assert (promotion.stage, promotion.full_version, promotion.canary_version) == ("full", 2, None)
    assert _split(engine) == [(TEACHER, 0, "teacher"), (STUDENT, 100, "student")]
    assert _history(engine)[0] == ("promote", 2, "ann")


def test_promotions_that_cannot_work_are_refused_and_change_nothing(engine: Engine) -> None:
    make_alias(engine)
    make_alias(engine, "students-only", ("ft:a", 1, "student"))
    with pytest.raises(PromotionNotFound) as missing:
        _start(engine, "nobody")
    with pytest.raises(InvalidPromotion) as no_teacher:
        _start(engine, "students-only")
    with pytest.raises(InvalidPromotion) as is_teacher:
        start_promotion(engine, "bot", TEACHER, policy=CANARY, actor="ann")
    with pytest.raises(InvalidPromotion) as upstream:
        _start(engine, upstream="elsewhere", known_upstreams=["default"])
    codes = [e.value.code for e in (missing, no_teacher, is_teacher, upstream)]
    assert codes == ["alias_not_found", "no_teacher", "student_is_teacher", "unknown_upstream"]
    assert _history(engine) == [("create", 1, "ann")]
    assert list_promotions(engine) == []


def test_the_canary_goes_full_once_the_student_served_its_sample(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    traffic(engine, STUDENT, 40, errors=1)
    traffic(engine, TEACHER, 200, errors=2)
    [decided] = advance_promotions(engine, now=T0 + timedelta(minutes=5))
    assert (decided.id, decided.stage, decided.full_version, decided.decided_by) == (
        promotion.id,
        "full",
        3,
        "stillroom",
    )
    assert decided.outcome is not None
    assert decided.outcome.startswith("canary reached 40 student requests (full after 40)")
    assert decided.signals is not None
    assert decided.signals["student"] == {
        "model": STUDENT,
        "requests": 40,
        "errors": 1,
        "negative_feedback": 0,
        "error_rate": 0.025,
        "negative_rate": 0.0,
    }
    assert _split(engine) == [(TEACHER, 0, "teacher"), (STUDENT, 100, "student")]
    assert _history(engine)[0] == ("promote", 3, "stillroom")
    assert advance_promotions(engine, now=T0 + HOUR) == []


def test_the_canary_goes_full_once_its_time_is_up(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    traffic(engine, STUDENT, 3)
    assert advance_promotions(engine, now=T0 + HOUR - timedelta(seconds=1)) == []
    assert get_promotion(engine, promotion.id).stage == "canary"
    [decided] = advance_promotions(engine, now=T0 + HOUR)
    assert decided.stage == "full"
    assert decided.outcome is not None
    assert decided.outcome.startswith("canary ran 3600 s (full after 3600 s) with 3 student")


def test_a_waiting_canary_keeps_its_latest_signals(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    traffic(engine, STUDENT, 5, negative=1)
    traffic(engine, TEACHER, 50)
    assert advance_promotions(engine, now=T0 + timedelta(minutes=1)) == []
    waiting = get_promotion(engine, promotion.id)
    assert waiting.stage == "canary"
    assert waiting.checked_at == T0 + timedelta(minutes=1)
    assert waiting.signals is not None
    assert (waiting.signals["student"]["requests"], waiting.signals["teacher"]["requests"]) == (
        5,
        50,
    )
    assert waiting.signals["student"]["negative_rate"] == 0.2


def test_an_error_regression_rolls_the_alias_back(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    traffic(engine, STUDENT, 20, errors=5)
    traffic(engine, TEACHER, 100, errors=1)
    [decided] = advance_promotions(engine, now=T0 + timedelta(minutes=5))
    assert (decided.stage, decided.decided_by) == ("rolled_back", "stillroom")
    assert decided.outcome == (
        "canary regression: student error rate 25.0% (5 of 20) against the teacher's 1.0% "
        "(1 of 100) in the same window; at most 2.0% more is allowed"
    )
    assert _split(engine) == [(TEACHER, 1, "teacher")]
    assert _history(engine)[0] == ("rollback", promotion.from_version, "stillroom")


def test_a_fallback_counts_against_the_student(engine: Engine) -> None:
    make_alias(engine)
    _start(engine)
    fell_back = {"stillroom_fallback_from": STUDENT, "stillroom_fallback_reason": "status 503"}
    traffic(engine, TEACHER, 4, metadata_=fell_back)
    traffic(engine, STUDENT, 16)
    traffic(engine, TEACHER, 100)
    [decided] = advance_promotions(engine, now=T0 + timedelta(minutes=5))
    assert decided.stage == "rolled_back"
    assert decided.signals is not None
    assert decided.signals["student"]["errors"] == 4
    assert decided.signals["teacher"]["requests"] == 100


def test_a_negative_feedback_regression_rolls_the_alias_back(engine: Engine) -> None:
    make_alias(engine)
    _start(engine)
    traffic(engine, STUDENT, 20, negative=3)
    traffic(engine, TEACHER, 100, negative=2)
    [decided] = advance_promotions(engine, now=T0 + timedelta(minutes=5))
    assert decided.stage == "rolled_back"
    assert decided.outcome == (
        "canary regression: student negative feedback 15.0% (3 of 20) against the teacher's "
        "2.0% (2 of 100) in the same window; at most 5.0% more is allowed"
    )
    assert _split(engine) == [(TEACHER, 1, "teacher")]


def test_no_regression_is_declared_below_the_requests_needed_to_judge(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    traffic(engine, STUDENT, 19, errors=19)
    traffic(engine, TEACHER, 100)
    assert advance_promotions(engine, now=T0 + timedelta(minutes=5)) == []
    assert get_promotion(engine, promotion.id).stage == "canary"
    traffic(engine, STUDENT, 1, seconds=120)
    [decided] = advance_promotions(engine, now=T0 + timedelta(minutes=5))
    assert decided.stage == "rolled_back"


def test_an_alias_has_at_most_one_open_canary(engine: Engine) -> None:
    make_alias(engine)
    first = _start(engine)
    with pytest.raises(PromotionConflict) as second:
        _start(engine)
    assert second.value.code == "promotion_in_progress"
    with pytest.raises(PromotionConflict):
        _start(engine, policy=CANARY.model_copy(update={"canary_percent": 0.0}))
    # The database refuses it too, whoever writes the row.
    copy = first.model_copy(update={"id": "prom_second"})
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        insert_promotion(Promotion.model_validate(copy.model_dump()), session=session)
    assert [p.id for p in list_promotions(engine, alias="bot")] == [first.id]


def test_abort_rolls_back_to_the_version_before_the_canary(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    aborted = abort_promotion(engine, promotion.id, actor="bob", reason="complaints")
    assert (aborted.stage, aborted.decided_by, aborted.outcome) == (
        "aborted",
        "bob",
        "aborted by bob: complaints",
    )
    assert _split(engine) == [(TEACHER, 1, "teacher")]
    assert _history(engine)[0] == ("rollback", 1, "bob")
    with pytest.raises(PromotionConflict) as again:
        abort_promotion(engine, promotion.id, actor="bob")
    assert again.value.code == "promotion_decided"
    # With the canary closed, the alias can be promoted again.
    assert _start(engine).stage == "canary"


def test_a_full_promotion_is_undone_in_one_call_while_the_alias_is_unchanged(
    engine: Engine,
) -> None:
    make_alias(engine)
    full = _start(engine, policy=CANARY.model_copy(update={"canary_percent": 0.0}))
    undone = abort_promotion(engine, full.id, actor="bob", reason="complaints")
    assert (undone.stage, undone.outcome) == (
        "aborted",
        "aborted by bob after it went full: complaints",
    )
    assert _split(engine) == [(TEACHER, 1, "teacher")]
    again = _start(engine, policy=CANARY.model_copy(update={"canary_percent": 0.0}))
    with session_scope(engine) as session:
        set_alias("bot", config((TEACHER, 1, "teacher")), actor="eve", reason=None, session=session)
    with pytest.raises(PromotionConflict) as changed:
        abort_promotion(engine, again.id, actor="bob")
    assert changed.value.code == "alias_changed"
    assert get_promotion(engine, again.id).stage == "full"


def test_promote_now_makes_the_canary_full_whatever_the_signals(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    full = promote_now(engine, promotion.id, actor="bob", reason="looks fine")
    assert (full.stage, full.full_version, full.decided_by) == ("full", 3, "bob")
    assert _split(engine) == [(TEACHER, 0, "teacher"), (STUDENT, 100, "student")]
    with pytest.raises(PromotionNotFound):
        promote_now(engine, "prom_missing", actor="bob")


def test_an_alias_changed_under_the_canary_is_left_alone(engine: Engine) -> None:
    make_alias(engine)
    promotion = _start(engine)
    with session_scope(engine) as session:
        set_alias(
            "bot", config(("gpt-4.1", 1, "teacher")), actor="eve", reason=None, session=session
        )
    [decided] = advance_promotions(engine, now=T0 + HOUR)
    assert decided.stage == "aborted"
    assert decided.outcome is not None
    assert decided.outcome.startswith(
        "the alias was changed outside the promotion (now at version 3)"
    )
    assert _split(engine) == [("gpt-4.1", 1, "teacher")]
    assert promotion.canary_version == 2


def test_concurrent_advances_decide_each_canary_once(engine: Engine) -> None:
    aliases = ["a", "b", "c"]
    for name in aliases:
        make_alias(engine, name)
        _start(engine, name)
        traffic(engine, STUDENT, 40, alias=name)
    start = threading.Barrier(4)
    decided: list[str] = []
    failures: list[BaseException] = []

    def advance() -> None:
        start.wait()
        try:
            decided.extend(p.id for p in advance_promotions(engine, now=T0 + timedelta(minutes=5)))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(decided) == sorted(p.id for p in list_promotions(engine))
    for name in aliases:
        assert [action for action, _, _ in _history(engine, name)] == [
            "promote",
            "promote",
            "create",
        ]
