"""The cycle's state machine: ``advance_cycle`` moves one cycle on by at most one step.

Every step can be run again after a crash at any point and does the same thing once:
  collecting   counts approved teacher answers; moves on when there are enough
  exporting    builds the dataset (found again by its lineage) and validates it
  training     launches the job with the cycle as idempotency key, then follows it
  evaluating   evaluations found again by the cycle id in their config; the gate decides
  promoting    a promotion found again by its cycle id; done once it is full. A self-hosted
               student is loaded on every replica of its upstream first: a replica that fails
               keeps the cycle here, saying which and why, and the next round tries again
A transition is a conditional update on the state it leaves, so a cancel or another replica
that got there first wins and this call changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from finetune.cycles._records import CyclePolicy, close_steps, dataset_name, require_cycle
from finetune.datasets._datasets import create_dataset, get_dataset, list_datasets
from finetune.datasets._export import Redact
from finetune.datasets._input import DatasetError, SplitRatios
from finetune.evaluation._report import create_evaluations, list_evaluations, require_evaluation
from finetune.routing._aliases import get_alias_view
from finetune.routing._canary import CanaryPolicy
from finetune.routing._gate import GatePolicy, decide_gate
from finetune.routing._promotion import (
    InvalidPromotion,
    StudentUnavailable,
    get_promotion,
    list_promotions,
    start_promotion,
)
from finetune.routing._routing import AliasError
from finetune.routing._serving import ServingError, StudentNotServed, StudentServing
from finetune.training._jobs import launch_job, prepare_files, sync_job
from finetune.training._protocol import (
    BackendRefused,
    BackendUnavailable,
    InvalidTrainingRequest,
    TrainingBackend,
    TrainingError,
)
from storage import (
    TERMINAL_CYCLE_STATES,
    CaptureFilter,
    Cycle,
    count_filtered_captures,
    session_scope,
    update_cycle,
    utcnow,
)

log = logging.getLogger("stillroom.cycles")


@dataclass(frozen=True, slots=True)
class CycleContext:
    """What the steps need besides the cycle itself."""

    engine: Engine
    backend_for: Callable[[str], TrainingBackend]
    gate: GatePolicy
    canary: CanaryPolicy
    judge_model: str
    file_wait_seconds: float = 30.0
    """A launch waits this long for uploaded files per call; a longer wait spans calls."""
    redact: Redact | None = None
    now: Callable[[], datetime] = field(default=utcnow)
    serving: StudentServing | None = None
    """Loads a self-hosted student on its upstream's replicas before it is promoted."""


def teacher_filter(alias: str, teacher: str, until: datetime | None = None) -> CaptureFilter:
    """Approved, answered captures of ``alias`` served by its teacher: the training data."""
    return CaptureFilter(
        status=["approved"], alias=[alias], model=[teacher], error=False, created_before=until
    )


def teacher_of(engine: Engine, alias: str) -> str | None:
    with session_scope(engine) as session:
        try:
            view = get_alias_view(alias, session=session)
        except AliasError:
            return None
    return next((t.model for t in view.targets if t.role == "teacher"), None)


def count_examples(
    engine: Engine, alias: str, teacher: str, *, after: datetime | None, until: datetime | None
) -> int:
    capture_filter = teacher_filter(alias, teacher, until).model_copy(
        update={"created_after": after}
    )
    with session_scope(engine) as session:
        return count_filtered_captures(capture_filter, session=session)


def _move(ctx: CycleContext, cycle: Cycle, to: str, detail: str, **changes: Any) -> bool:
    """Close the running step with ``detail`` and enter ``to``; False if the cycle moved."""
    moment = ctx.now()
    outcome = {"failed": "failed", "cancelled": "cancelled"}.get(to, "done")
    steps = close_steps(cycle.steps, outcome, moment, detail)
    if to not in TERMINAL_CYCLE_STATES:
        steps.append({"step": to, "state": "running", "started_at": moment.isoformat()})
    else:
        changes["finished_at"] = moment
    with session_scope(ctx.engine) as session:
        moved = update_cycle(
            cycle.id, cycle.state, {**changes, "state": to, "steps": steps}, session=session
        )
    if moved:
        log.info("cycle %s: %s -> %s (%s)", cycle.id, cycle.state, to, detail)
    return moved


def _fail(ctx: CycleContext, cycle: Cycle, reason: str) -> bool:
    return _move(ctx, cycle, "failed", reason, reason=reason)


def _note(ctx: CycleContext, cycle: Cycle, detail: str, **changes: Any) -> None:
    """Say what the running step waits for, and store what it learnt, staying in its state."""
    steps = [dict(step) for step in cycle.steps]
    if steps and steps[-1].get("detail") == detail and not changes:
        return
    if steps:
        steps[-1]["detail"] = detail
    with session_scope(ctx.engine) as session:
        update_cycle(cycle.id, cycle.state, {**changes, "steps": steps}, session=session)


def note_trouble(ctx: CycleContext, cycle_id: str, trouble: str) -> None:
    """Show on the running step why it did not move, when it failed in a way nobody foresaw:
    the next round tries again, and the cycle's record says what went wrong meanwhile."""
    cycle = require_cycle(ctx.engine, cycle_id)
    if cycle.state not in TERMINAL_CYCLE_STATES:
        _note(ctx, cycle, f"retrying after an error: {trouble}"[:2000])


def advance_cycle(ctx: CycleContext, cycle_id: str) -> Cycle:
    """Take the cycle one step on if it can go; returns it as it is now."""
    cycle = require_cycle(ctx.engine, cycle_id)
    if cycle.state in TERMINAL_CYCLE_STATES:
        return cycle
    policy = CyclePolicy.model_validate(cycle.policy)
    step = _STEPS[cycle.state]
    step(ctx, cycle, policy)
    return require_cycle(ctx.engine, cycle_id)


def _collecting(ctx: CycleContext, cycle: Cycle, policy: CyclePolicy) -> None:
    teacher = teacher_of(ctx.engine, cycle.alias)
    if teacher is None:
        _fail(ctx, cycle, f"alias '{cycle.alias}' has no teacher target to learn from")
        return
    until = ctx.now()
    found = count_examples(ctx.engine, cycle.alias, teacher, after=None, until=until)
    if found < policy.min_examples:
        _note(ctx, cycle, f"waiting: {found} of {policy.min_examples} approved examples")
        return
    _move(
        ctx, cycle, "exporting", f"{found} approved examples from {teacher}", collected_until=until
    )


def _dataset_of(ctx: CycleContext, cycle: Cycle) -> str | None:
    for dataset in list_datasets(ctx.engine, name=dataset_name(cycle.alias)):
        if (dataset.lineage or {}).get("cycle_id") == cycle.id:
            return dataset.id
    return None


def _exporting(ctx: CycleContext, cycle: Cycle, policy: CyclePolicy) -> None:
    teacher = teacher_of(ctx.engine, cycle.alias)
    if teacher is None:
        _fail(ctx, cycle, f"alias '{cycle.alias}' has no teacher target to learn from")
        return
    dataset_id = cycle.dataset_id or _dataset_of(ctx, cycle)
    try:
        if dataset_id is None:
            dataset = create_dataset(
                ctx.engine,
                dataset_name(cycle.alias),
                teacher_filter(cycle.alias, teacher, cycle.collected_until),
                ratios=SplitRatios(*policy.split),
                lineage={"cycle_id": cycle.id, "alias": cycle.alias, "teacher": teacher},
            )
            dataset_id = dataset.id
        counts = get_dataset(ctx.engine, dataset_id).counts
        # Refused here, with the validator's words, rather than at the upload.
        prepare_files(ctx.engine, dataset_id, policy.training, redact=ctx.redact)
    except (DatasetError, InvalidTrainingRequest) as exc:
        _fail(ctx, cycle, f"dataset not usable: {exc.message}")
        return
    if not counts.get("test"):
        _fail(ctx, cycle, f"dataset {dataset_id} has no test examples to evaluate the student on")
        return
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "validation", "test"))
    _move(ctx, cycle, "training", f"dataset {dataset_id}: {summary}", dataset_id=dataset_id)


def _training(ctx: CycleContext, cycle: Cycle, policy: CyclePolicy) -> None:
    assert cycle.dataset_id is not None
    try:
        backend = ctx.backend_for(policy.backend)
        if cycle.training_job_id is None:
            job = launch_job(
                ctx.engine,
                backend,
                cycle.dataset_id,
                policy.training,
                cycle_id=cycle.id,
                idempotency_key=f"cycle:{cycle.id}",
                file_wait_seconds=ctx.file_wait_seconds,
                redact=ctx.redact,
            )
            _note(ctx, cycle, f"job {job.id}: {job.state}", training_job_id=job.id)
            cycle = require_cycle(ctx.engine, cycle.id)
        else:
            job = sync_job(ctx.engine, backend, cycle.training_job_id)
    except BackendUnavailable as exc:
        _note(ctx, cycle, f"waiting for the training backend: {exc.message}")
        return
    except (BackendRefused, InvalidTrainingRequest) as exc:
        _fail(ctx, cycle, f"training refused: {exc.message}")
        return
    except TrainingError as exc:
        _fail(ctx, cycle, f"training failed: {exc.message}")
        return
    if job.state == "succeeded" and job.fine_tuned_model:
        _move(
            ctx,
            cycle,
            "evaluating",
            f"job {job.id} trained {job.fine_tuned_model}",
            training_job_id=job.id,
            student_model=job.fine_tuned_model,
        )
    elif job.state in ("failed", "cancelled"):
        message = (job.error or {}).get("message") or "no reason given"
        _fail(ctx, cycle, f"training job {job.id} {job.state}: {message}")
    else:
        _note(ctx, cycle, f"job {job.id}: {job.state}", training_job_id=job.id)


def _evaluations_of(ctx: CycleContext, cycle: Cycle) -> tuple[str | None, str | None]:
    assert cycle.dataset_id is not None
    for evaluation in list_evaluations(ctx.engine, dataset_id=cycle.dataset_id):
        if evaluation.role == "candidate" and evaluation.config.get("cycle_id") == cycle.id:
            return evaluation.id, evaluation.base_evaluation_id
    return None, None


def _evaluating(ctx: CycleContext, cycle: Cycle, policy: CyclePolicy) -> None:
    assert cycle.dataset_id is not None and cycle.student_model is not None
    candidate_id, base_id = cycle.evaluation_id, cycle.base_evaluation_id
    if candidate_id is None:
        candidate_id, base_id = _evaluations_of(ctx, cycle)
    if candidate_id is None:
        # A self-hosted student answers from its own upstream, so it is loaded there first.
        if not _served(ctx, cycle, policy, "evaluated"):
            return
        created = create_evaluations(
            ctx.engine,
            cycle.dataset_id,
            cycle.student_model,
            base_model=policy.training.base_model if policy.evaluate_base else None,
            judge_model=policy.judge_model or ctx.judge_model,
            config={"cycle_id": cycle.id, "upstream": policy.student_upstream},
        )
        candidate_id, base_id = created[0].id, created[0].base_evaluation_id
    if cycle.evaluation_id is None:
        _note(ctx, cycle, "evaluating", evaluation_id=candidate_id, base_evaluation_id=base_id)
        cycle = require_cycle(ctx.engine, cycle.id)
    candidate = require_evaluation(ctx.engine, candidate_id)
    base = require_evaluation(ctx.engine, base_id) if base_id else None
    for evaluation in (candidate, base):
        if evaluation is not None and evaluation.state == "failed":
            _fail(
                ctx,
                cycle,
                f"evaluation {evaluation.id} of {evaluation.model} failed: "
                f"{evaluation.error or 'no reason given'}",
            )
            return
    if candidate.state != "succeeded" or (base is not None and base.state != "succeeded"):
        states = f"{candidate.model} {candidate.state}"
        if base is not None:
            states += f", {base.model} {base.state}"
        _note(ctx, cycle, f"evaluating: {states}")
        return
    decision = decide_gate(
        candidate.summary, base.summary if base else None, policy.gate or ctx.gate
    )
    verdict = {"passed": decision.passed, "reasons": decision.reasons, "figures": decision.figures}
    if decision.passed:
        passed = f"{cycle.student_model} passed the gate ({len(decision.reasons)} criteria)"
        _move(ctx, cycle, "promoting", passed, gate=verdict)
    else:
        failed = "did not pass the gate: " + "; ".join(decision.reasons)
        _move(ctx, cycle, "failed", failed, gate=verdict, reason=failed)


def _served(ctx: CycleContext, cycle: Cycle, policy: CyclePolicy, to_be: str) -> bool:
    """Whether the student is served on every replica of its upstream; if not, the cycle
    waits (a replica failed: the next round tries again) or fails (nothing to serve)."""
    assert cycle.student_model is not None
    if ctx.serving is None:
        return True
    try:
        ctx.serving.prepare(policy.student_upstream, cycle.student_model)
    except StudentNotServed as exc:
        _note(ctx, cycle, f"waiting for the student to be served: {exc.message}"[:2000])
        return False
    except ServingError as exc:
        _fail(ctx, cycle, f"student cannot be {to_be}: {exc.message}")
        return False
    return True


def _promotion_of(ctx: CycleContext, cycle: Cycle) -> str | None:
    for promotion in list_promotions(ctx.engine, alias=cycle.alias):
        if promotion.cycle_id == cycle.id:
            return promotion.id
    return None


def _promoting(ctx: CycleContext, cycle: Cycle, policy: CyclePolicy) -> None:
    assert cycle.student_model is not None
    promotion_id = cycle.promotion_id or _promotion_of(ctx, cycle)
    if promotion_id is None:
        try:
            promotion = start_promotion(
                ctx.engine,
                cycle.alias,
                cycle.student_model,
                upstream=policy.student_upstream,
                policy=policy.canary or ctx.canary,
                actor=f"cycle {cycle.id}",
                reason=f"cycle {cycle.id}: {cycle.student_model} passed the gate",
                cycle_id=cycle.id,
                serving=ctx.serving,
            )
        except StudentUnavailable as exc:
            _note(ctx, cycle, f"waiting for the student to be served: {exc.message}"[:2000])
            return
        except InvalidPromotion as exc:
            if exc.code not in ("adapter_not_found", "student_not_merged"):
                raise
            _fail(ctx, cycle, f"student cannot be served: {exc.message}")
            return
        promotion_id = promotion.id
    if cycle.promotion_id is None:
        _note(ctx, cycle, "promoting", promotion_id=promotion_id)
        cycle = require_cycle(ctx.engine, cycle.id)
    promotion = get_promotion(ctx.engine, promotion_id)
    if promotion.stage == "full":
        _move(ctx, cycle, "done", f"{cycle.student_model} serves {cycle.alias}")
    elif promotion.stage in ("rolled_back", "aborted"):
        _fail(ctx, cycle, f"promotion {promotion.stage}: {promotion.outcome or 'no reason given'}")
    else:
        _note(ctx, cycle, f"canary at {promotion.canary_percent:g}% of {cycle.alias}")


_STEPS: dict[str, Callable[[CycleContext, Cycle, CyclePolicy], None]] = {
    "collecting": _collecting,
    "exporting": _exporting,
    "training": _training,
    "evaluating": _evaluating,
    "promoting": _promoting,
}
