"""The cycle runner: one process across all replicas starts and moves cycles.

Each round, a process takes (or renews) the ``cycles`` lease; the one that holds it starts
cycles whose trigger fired, moves canaries on (``advance_promotions``) and takes every open
cycle one step further. A holder that dies stops renewing, and after ``lease_seconds``
another replica takes over from the state in the database. Work that takes longer than a
round (a training job, an evaluation) happens elsewhere; a round only looks at it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from finetune.cycles._records import CycleConflict, CycleError, CyclePolicy, Trigger, start_cycle
from finetune.cycles._steps import (
    CycleContext,
    advance_cycle,
    count_examples,
    note_trouble,
    teacher_of,
)
from finetune.routing._promotion import advance_promotions
from storage import (
    OPEN_CYCLE_STATES,
    Cycle,
    OutageLog,
    acquire_lease,
    last_collected_cycle,
    last_cycle,
    list_cycles,
    open_cycles,
    release_lease,
    session_scope,
)

log = logging.getLogger("stillroom.cycles")

LEASE_NAME = "cycles"


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


@dataclass(slots=True)
class RoundReport:
    """What one round did (tests and the CLI read it)."""

    leader: bool = False
    started: list[Cycle] = field(default_factory=list)
    advanced: list[Cycle] = field(default_factory=list)


def due_trigger(ctx: CycleContext, alias: str, policy: CyclePolicy) -> Trigger | None:
    """Which automatic trigger of ``alias`` fired, if any (an open cycle is checked apart)."""
    if not policy.auto:
        return None
    teacher = teacher_of(ctx.engine, alias)
    if teacher is None:
        return None
    with session_scope(ctx.engine) as session:
        collected = last_collected_cycle(alias, session=session)
        latest = last_cycle(alias, session=session)
    since = collected.collected_until if collected is not None else None
    now = ctx.now()
    fresh = count_examples(ctx.engine, alias, teacher, after=since, until=now)
    if policy.min_new_examples is not None and fresh >= policy.min_new_examples:
        return "threshold"
    every = policy.every_seconds
    if (
        every is not None
        and fresh > 0
        and (latest is None or latest.created_at + timedelta(seconds=every) <= now)
    ):
        return "schedule"
    return None


class CycleRunner:
    def __init__(
        self,
        ctx: CycleContext,
        policies: Mapping[str, CyclePolicy],
        *,
        poll_seconds: float = 5.0,
        lease_seconds: float = 30.0,
        owner: str | None = None,
    ) -> None:
        self.ctx = ctx
        self.policies = dict(policies)
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.owner = owner or default_owner()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0
        self._outage = OutageLog(log, "cycle runner")

    def holds_lease(self) -> bool:
        with session_scope(self.ctx.engine) as session:
            return acquire_lease(
                LEASE_NAME, self.owner, seconds=self.lease_seconds, session=session
            )

    def run_round(self) -> RoundReport:
        report = RoundReport()
        if not self.holds_lease():
            return report
        report.leader = True
        for alias, policy in self.policies.items():
            with session_scope(self.ctx.engine) as session:
                busy = bool(
                    list_cycles(session=session, alias=alias, states=OPEN_CYCLE_STATES, limit=1)
                )
            trigger = None if busy else due_trigger(self.ctx, alias, policy)
            if trigger is None:
                continue
            # Another replica may have started one since: the database refuses a second.
            with contextlib.suppress(CycleConflict):
                report.started.append(
                    start_cycle(self.ctx.engine, alias, policy, trigger=trigger, actor="stillroom")
                )
        advance_promotions(self.ctx.engine, serving=self.ctx.serving)
        if self.ctx.serving is not None:
            try:
                self.ctx.serving.restore_routed(self.ctx.engine)
            except Exception:  # a replica's trouble must not stop the cycles; next round retries
                log.exception("could not check that routed students are served")
        with session_scope(self.ctx.engine) as session:
            under_way = open_cycles(session=session)
        for cycle in under_way:
            # A long step must not let the lease lapse under it.
            if not self.holds_lease():
                report.leader = False
                return report
            try:
                report.advanced.append(advance_cycle(self.ctx, cycle.id))
            except CycleError as exc:
                log.warning("cycle %s did not move: %s", cycle.id, exc.message)
            except Exception as exc:  # the runner outlives one bad step; the next round retries
                log.exception("cycle %s step failed; retrying next round", cycle.id)
                with contextlib.suppress(CycleError, SQLAlchemyError):
                    note_trouble(self.ctx, cycle.id, f"{type(exc).__name__}: {exc}")
        return report

    def wake(self) -> None:
        """Run a round now (after a manual start, say) instead of at the next tick."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cycle-runner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_round()
            except Exception as exc:  # noqa: BLE001 - one bad round, not the runner
                self._outage.failed(exc, self.poll_seconds)
            else:
                self._outage.succeeded()
            self.rounds += 1
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        """Stop after the round under way; hand the lease over at once when that is quick."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_seconds)
            if self._thread.is_alive():
                # Stuck on the database: the lease runs out by itself.
                return
        # A stalled database must not hold the shutdown: the release gets a second.
        releaser = threading.Thread(target=self._release, name="cycle-lease", daemon=True)
        releaser.start()
        releaser.join(1.0)

    def _release(self) -> None:
        try:
            with session_scope(self.ctx.engine) as session:
                release_lease(LEASE_NAME, self.owner, session=session)
        except SQLAlchemyError:  # the lease runs out by itself when the database is gone
            log.warning("cycle lease not released; it runs out in %.0f s", self.lease_seconds)
