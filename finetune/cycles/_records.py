"""Cycles as records: the policy an alias's cycles follow, starting one, cancelling one, reading.

    CycleError                  any refusal; ``param`` names the offending input
    ├── CycleNotFound           no such cycle, or no such alias
    ├── CycleConflict           the alias has an open cycle already, or the cycle has ended
    └── InvalidCycleRequest     a policy or request that cannot work

A cycle walks ``collecting → exporting → training → evaluating → promoting → done`` (or
``failed`` / ``cancelled``, with the reason). ``finetune.cycles._steps`` moves it one step at
a time; this module only starts and stops cycles.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from finetune.costs._prices import DEFAULT_BASE_MODEL
from finetune.routing._canary import CanaryPolicy
from finetune.routing._gate import GatePolicy
from finetune.routing._promotion import abort_promotion, get_promotion
from finetune.training._jobs import cancel_job
from finetune.training._protocol import TrainingBackend, TrainingConfig, TrainingError
from storage import (
    TERMINAL_CYCLE_STATES,
    TERMINAL_TRAINING_STATES,
    Cycle,
    get_alias,
    get_cycle,
    get_training_job,
    insert_cycle,
    list_cycles,
    new_cycle_id,
    session_scope,
    update_cycle,
    utcnow,
)

log = logging.getLogger("stillroom.cycles")

Trigger = Literal["manual", "threshold", "schedule"]


class CycleError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class CycleNotFound(CycleError):
    pass


class CycleConflict(CycleError):
    pass


class InvalidCycleRequest(CycleError):
    pass


class CyclePolicy(BaseModel):
    """How the cycles of one alias run: ``cycles.<alias>`` in the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auto: bool = True
    """Start cycles by themselves (threshold and schedule); False: only by hand."""
    min_new_examples: int | None = Field(default=200, ge=1)
    """Start a cycle once this many approved teacher answers arrived since the last cycle
    took its examples; None: never on a count."""
    every_seconds: float | None = Field(default=None, gt=0)
    """Start a cycle this long after the last one started, when anything new was approved;
    None: no schedule."""
    min_examples: int = Field(default=20, ge=1)
    """A cycle collects until its dataset would hold this many approved examples."""
    backend: str = Field(default="openai", min_length=1, max_length=100)
    """The training backend, by name: ``openai`` or one of ``training_backends``."""
    training: TrainingConfig = TrainingConfig(base_model=DEFAULT_BASE_MODEL)
    """Base model, suffix, method, hyperparameters and seed of the student's fine-tune."""
    student_upstream: str = Field(default="default", min_length=1, max_length=100)
    """Where the trained student is served."""
    judge_model: str | None = Field(default=None, min_length=1, max_length=200)
    """[default: the ``judge_model`` setting]"""
    evaluate_base: bool = True
    """Evaluate the base model as well, so the gate and the report see the gain."""
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    """Train, validation and test shares of the dataset."""
    gate: GatePolicy | None = None
    """[default: the ``gate`` setting]"""
    canary: CanaryPolicy | None = None
    """[default: the ``canary`` setting]"""


def dataset_name(alias: str) -> str:
    """The dataset every cycle of ``alias`` adds a version to."""
    return "cycle-" + re.sub(r"[^A-Za-z0-9._-]", "-", alias)[:190]


def first_step(moment: datetime) -> list[dict[str, Any]]:
    return [{"step": "collecting", "state": "running", "started_at": moment.isoformat()}]


def close_steps(
    steps: list[dict[str, Any]], outcome: str, moment: datetime, detail: str | None = None
) -> list[dict[str, Any]]:
    """The steps with the running one closed as ``outcome``."""
    closed = [dict(step) for step in steps]
    if closed and closed[-1].get("state") == "running":
        closed[-1]["state"] = outcome
        closed[-1]["finished_at"] = moment.isoformat()
        if detail is not None:
            closed[-1]["detail"] = detail
    return closed


def require_cycle(engine: Engine, cycle_id: str) -> Cycle:
    with session_scope(engine) as session:
        found = get_cycle(cycle_id, session=session)
    if found is None:
        raise CycleNotFound(f"No cycle '{cycle_id}'.", param="cycle_id", code="not_found")
    return found


def start_cycle(
    engine: Engine,
    alias: str,
    policy: CyclePolicy,
    *,
    trigger: Trigger = "manual",
    actor: str = "admin",
) -> Cycle:
    """Open a cycle of ``alias``; CycleConflict when one is open already, on any replica."""
    moment = utcnow()
    cycle = Cycle(
        id=new_cycle_id(),
        alias=alias,
        state="collecting",
        trigger=trigger,
        actor=actor,
        policy=policy.model_dump(mode="json"),
        steps=first_step(moment),
        created_at=moment,
        updated_at=moment,
    )
    try:
        with session_scope(engine) as session:
            if get_alias(alias, session=session) is None:
                raise CycleNotFound(
                    f"No alias '{alias}': a cycle trains a student for an alias.",
                    param="alias",
                    code="alias_not_found",
                )
            insert_cycle(cycle, session=session)
    except IntegrityError:
        raise CycleConflict(
            f"Alias '{alias}' has a cycle under way already; cancel it or wait for it.",
            param="alias",
            code="cycle_open",
        ) from None
    log.info("cycle %s of %s started (%s, by %s)", cycle.id, alias, trigger, actor)
    return cycle


def cancel_cycle(
    engine: Engine,
    cycle_id: str,
    *,
    actor: str,
    reason: str | None = None,
    backend_for: Callable[[str], TrainingBackend] | None = None,
) -> Cycle:
    """Stop a cycle where it stands: its training job is cancelled at the backend and a canary
    it started is rolled back. An ended cycle is refused with CycleConflict."""
    while True:
        cycle = require_cycle(engine, cycle_id)
        if cycle.state in TERMINAL_CYCLE_STATES:
            raise CycleConflict(
                f"Cycle '{cycle_id}' has ended already ({cycle.state}).",
                param="cycle_id",
                code="cycle_ended",
            )
        moment = utcnow()
        why = f"cancelled by {actor}" + (f": {reason}" if reason else "")
        changes = {
            "state": "cancelled",
            "reason": why,
            "finished_at": moment,
            "steps": close_steps(cycle.steps, "cancelled", moment, why),
        }
        with session_scope(engine) as session:
            if update_cycle(cycle_id, cycle.state, changes, session=session):
                break
    if cycle.training_job_id is not None and backend_for is not None:
        _cancel_job(engine, cycle.training_job_id, backend_for)
    if cycle.promotion_id is not None:
        promotion = get_promotion(engine, cycle.promotion_id)
        if promotion.stage == "canary":
            abort_promotion(engine, promotion.id, actor=actor, reason=why)
    log.info("cycle %s cancelled by %s", cycle_id, actor)
    return require_cycle(engine, cycle_id)


def _cancel_job(engine: Engine, job_id: str, backend_for: Callable[[str], TrainingBackend]) -> None:
    with session_scope(engine) as session:
        job = get_training_job(job_id, session=session)
    if job is None or job.state in TERMINAL_TRAINING_STATES:
        return
    try:
        cancel_job(engine, backend_for(job.backend), job_id)
    except TrainingError as exc:
        # The cycle is cancelled either way; the job tracker keeps watching the job.
        log.warning("cycle's training job %s not cancelled: %s", job_id, exc.message)


def cycles(
    engine: Engine, *, alias: str | None = None, state: str | None = None, limit: int = 100
) -> list[Cycle]:
    """Newest first."""
    with session_scope(engine) as session:
        return list_cycles(
            session=session, alias=alias, states=None if state is None else [state], limit=limit
        )
