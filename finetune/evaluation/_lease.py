"""How a runner holds an evaluation: claimed under a lease it renews while it works, and every
write it makes (results, progress, the end) conditional on still holding it.

A runner that dies (``kill -9``, a lost machine) stops renewing; once its lease has run out any
other runner may claim the evaluation and resume it where the stored results end. A runner that
stalls past its lease and wakes up finds the lease gone and writes nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import Engine

from finetune.evaluation._report import require_evaluation, summarise_results
from storage import (
    Evaluation,
    claim_evaluation,
    claimable_evaluation_ids,
    fail_abandoned_evaluations,
    finish_held_evaluation,
    get_evaluation,
    insert_evaluation_results,
    refresh_evaluation_progress,
    release_evaluation,
    renew_evaluation_lease,
    score_rows,
    session_scope,
    stored_positions,
)

log = logging.getLogger("stillroom.evals")


def runner_name() -> str:
    """Unique per runner: the host and process say where it ran, the random part tells apart
    two runners of one process (and a restarted process from its former self)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(4).hex()}"


@dataclass(frozen=True, slots=True)
class EvaluationLease:
    owner: str = field(default_factory=runner_name)
    """Who holds the evaluations claimed with this lease."""
    seconds: float = 60.0
    """How long a claim lasts unrenewed: how soon another runner resumes after a crash."""
    max_attempts: int = 3
    """Claims after which an evaluation whose runner stopped again is failed, not resumed."""

    @property
    def renew_seconds(self) -> float:
        # Two renewals may fail (a slow database) before the lease runs out.
        return self.seconds / 3


class LeaseLost(Exception):
    """The runner no longer holds the evaluation: its lease ran out and another took it over,
    or it finished or was handed back meanwhile."""


def _now() -> datetime:
    return datetime.now(UTC)


def try_claim(
    engine: Engine, evaluation_id: str, lease: EvaluationLease
) -> tuple[Evaluation, bool]:
    """Claim this evaluation if it is claimable; returns it as it stands, and whether this
    runner holds it now. One whose runners kept dying is failed on the way."""
    require_evaluation(engine, evaluation_id)
    now = _now()
    with session_scope(engine) as session:
        claimed = claim_evaluation(
            evaluation_id,
            session=session,
            owner=lease.owner,
            now=now,
            lease_seconds=lease.seconds,
            max_attempts=lease.max_attempts,
        )
        if not claimed:
            fail_abandoned_evaluations(session=session, now=now, max_attempts=lease.max_attempts)
    return require_evaluation(engine, evaluation_id), claimed


def claim_next(
    engine: Engine, lease: EvaluationLease, *, skip: Collection[str] = ()
) -> Evaluation | None:
    """Claim the oldest claimable evaluation not in ``skip``; None when there is none."""
    now = _now()
    with session_scope(engine) as session:
        failed = fail_abandoned_evaluations(
            session=session, now=now, max_attempts=lease.max_attempts
        )
        candidates = claimable_evaluation_ids(
            session=session, now=now, max_attempts=lease.max_attempts, limit=len(skip) + 10
        )
    for evaluation_id in failed:
        log.error("evaluation %s failed: its runners kept stopping", evaluation_id)
    for evaluation_id in candidates:
        if evaluation_id in skip:
            continue
        with session_scope(engine) as session:
            if claim_evaluation(
                evaluation_id,
                session=session,
                owner=lease.owner,
                now=now,
                lease_seconds=lease.seconds,
                max_attempts=lease.max_attempts,
            ):
                return get_evaluation(evaluation_id, session=session)
    return None


def renew(engine: Engine, evaluation_id: str, lease: EvaluationLease) -> bool:
    with session_scope(engine) as session:
        return renew_evaluation_lease(
            evaluation_id,
            session=session,
            owner=lease.owner,
            now=_now(),
            lease_seconds=lease.seconds,
        )


def begin_scoring(
    engine: Engine, evaluation_id: str, lease: EvaluationLease, total: int
) -> set[int]:
    """Record how many examples there are; returns the positions scored by earlier runs."""
    with session_scope(engine) as session:
        if not renew_evaluation_lease(
            evaluation_id,
            session=session,
            owner=lease.owner,
            now=_now(),
            lease_seconds=lease.seconds,
        ):
            raise LeaseLost(evaluation_id)
        refresh_evaluation_progress(evaluation_id, session=session, total=total)
        return stored_positions(evaluation_id, session=session)


def write_results(
    engine: Engine, evaluation_id: str, lease: EvaluationLease, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Store results and the progress they make, in one transaction that holds the lease."""
    with session_scope(engine) as session:
        if not renew_evaluation_lease(
            evaluation_id,
            session=session,
            owner=lease.owner,
            now=_now(),
            lease_seconds=lease.seconds,
        ):
            raise LeaseLost(evaluation_id)
        insert_evaluation_results(rows, session=session)
        refresh_evaluation_progress(evaluation_id, session=session)


def finish(engine: Engine, evaluation_id: str, lease: EvaluationLease) -> Evaluation:
    """Summarise every stored result, whichever run scored it, and end the evaluation."""
    with session_scope(engine) as session:
        summary = summarise_results(score_rows(evaluation_id, session=session))
        answered = summary["examples"] - summary["errors"]
        failed = summary["examples"] > 0 and answered == 0
        if not finish_held_evaluation(
            evaluation_id,
            session=session,
            owner=lease.owner,
            state="failed" if failed else "succeeded",
            error=f"the model answered no example: {summary['first_error']}" if failed else None,
            summary=summary,
            finished_at=_now(),
        ):
            raise LeaseLost(evaluation_id)
    return require_evaluation(engine, evaluation_id)


def fail(engine: Engine, evaluation_id: str, lease: EvaluationLease, reason: str) -> None:
    with session_scope(engine) as session:
        finish_held_evaluation(
            evaluation_id,
            session=session,
            owner=lease.owner,
            state="failed",
            error=reason or "failed",
            finished_at=_now(),
        )


def release(engine: Engine, evaluation_id: str, lease: EvaluationLease) -> None:
    with session_scope(engine) as session:
        release_evaluation(evaluation_id, session=session, owner=lease.owner)


class LeaseKeeper:
    """Renews a lease in the background while the runner works; ``check()`` raises
    ``LeaseLost`` once a renewal found the lease gone. A renewal that fails (the database
    unreachable) is retried at the next turn: the lease may still outlast the outage."""

    def __init__(self, engine: Engine, evaluation_id: str, lease: EvaluationLease) -> None:
        self._engine = engine
        self._evaluation_id = evaluation_id
        self._lease = lease
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LeaseKeeper:
        self._task = asyncio.get_running_loop().create_task(self._renew())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(self._evaluation_id)

    async def _renew(self) -> None:
        while not self._lost:
            await asyncio.sleep(self._lease.renew_seconds)
            try:
                held = await asyncio.to_thread(
                    renew, self._engine, self._evaluation_id, self._lease
                )
            except Exception:
                log.warning("could not renew the lease on %s", self._evaluation_id, exc_info=True)
                continue
            self._lost = not held
