"""The cycle runner: one leader across processes, a lease that outlives a dead leader only so
long, and the automatic triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from finetune import CyclePolicy, CycleRunner, cancel_cycle, due_trigger, start_cycle
from storage import acquire_lease, get_lease, session_scope, update_cycle
from tests.finetune._cycle_helpers import ALIAS, POLICY, context, sandbox_world

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def test_a_lease_is_held_by_one_owner_until_it_runs_out(engine: Engine) -> None:
    with session_scope(engine) as session:
        assert acquire_lease("cycles", "a", seconds=5, session=session, now=T0)
        assert not acquire_lease(
            "cycles", "b", seconds=5, session=session, now=T0 + timedelta(seconds=1)
        )
        assert acquire_lease(
            "cycles", "a", seconds=5, session=session, now=T0 + timedelta(seconds=4)
        )
        # a renewed at 4 s: still its own at 8 s, b's once it ran out at 9 s.
        assert not acquire_lease(
            "cycles", "b", seconds=5, session=session, now=T0 + timedelta(seconds=8)
        )
        assert acquire_lease(
            "cycles", "b", seconds=5, session=session, now=T0 + timedelta(seconds=10)
        )
        lease = get_lease("cycles", session=session)
    assert lease is not None and lease.owner == "b"
    assert lease.acquired_at == T0 + timedelta(seconds=10)
    assert lease.until == T0 + timedelta(seconds=15)


def test_only_the_lease_holder_runs_rounds_and_a_stopped_one_hands_over(engine: Engine) -> None:
    with sandbox_world(engine, examples=1) as url:
        ctx = context(engine, url)
        first = CycleRunner(ctx, {}, lease_seconds=60, owner="replica-1")
        second = CycleRunner(ctx, {}, lease_seconds=60, owner="replica-2")
        assert first.run_round().leader is True
        assert second.run_round().leader is False
        first.stop()
        assert second.run_round().leader is True
        assert first.run_round().leader is False


def test_enough_new_approved_examples_start_one_cycle(engine: Engine) -> None:
    with sandbox_world(engine, examples=40) as url:
        ctx = context(engine, url)
        runner = CycleRunner(ctx, {ALIAS: POLICY}, owner="replica-1")
        report = runner.run_round()
        assert [(c.alias, c.trigger, c.actor) for c in report.started] == [
            (ALIAS, "threshold", "stillroom")
        ]
        assert runner.run_round().started == []


def test_examples_a_cycle_took_do_not_count_again(engine: Engine) -> None:
    with sandbox_world(engine, examples=40) as url:
        ctx = context(engine, url)
        cycle = start_cycle(engine, ALIAS, POLICY)
        with session_scope(engine) as session:
            update_cycle(cycle.id, "collecting", {"collected_until": ctx.now()}, session=session)
        cancel_cycle(engine, cycle.id, actor="tester")
        assert due_trigger(ctx, ALIAS, POLICY) is None


def test_a_schedule_starts_a_cycle_when_its_time_has_come_and_something_is_new(
    engine: Engine,
) -> None:
    scheduled = CyclePolicy(min_new_examples=None, every_seconds=3600)
    with sandbox_world(engine, examples=3) as url:
        ctx = context(engine, url)
        assert due_trigger(ctx, ALIAS, scheduled) == "schedule"
        cancel_cycle(engine, start_cycle(engine, ALIAS, scheduled).id, actor="tester")
        # The last cycle started moments ago: the next is an hour away.
        assert due_trigger(ctx, ALIAS, scheduled) is None
        later = context(engine, url, now=lambda: datetime.now(UTC) + timedelta(hours=2))
        assert due_trigger(later, ALIAS, scheduled) == "schedule"
        assert due_trigger(ctx, ALIAS, scheduled.model_copy(update={"auto": False})) is None
