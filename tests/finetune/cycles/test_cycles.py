"""Cycles end to end against the sandbox: each step, its resumption, the gate, cancel, refusal."""

from __future__ import annotations

import openai
import pytest
from sqlalchemy import Engine

from finetune import (
    CycleConflict,
    CyclePolicy,
    SplitRatios,
    advance_cycle,
    alias_history,
    cancel_cycle,
    create_dataset,
    dataset_name,
    get_alias_view,
    launch_job,
    list_datasets,
    require_cycle,
    start_cycle,
    teacher_filter,
)
from storage import list_training_jobs, session_scope
from tests.finetune._cycle_helpers import (
    ALIAS,
    BASE,
    POLICY,
    SANDBOX_KEY,
    TEACHER,
    context,
    drive,
    sandbox_world,
)
from tests.sandbox import SandboxConfig


def test_a_cycle_goes_from_collecting_to_the_student_serving_the_alias(engine: Engine) -> None:
    with sandbox_world(engine) as url:
        ctx = context(engine, url)
        cycle = start_cycle(engine, ALIAS, POLICY, actor="tester")
        done = drive(ctx, url, cycle.id)

        assert done.state == "done", done.reason
        assert [s["step"] for s in done.steps] == [
            "collecting",
            "exporting",
            "training",
            "evaluating",
            "promoting",
        ]
        assert all(s["state"] == "done" and s["finished_at"] for s in done.steps)
        assert done.student_model is not None and done.student_model.startswith(
            f"ft:{BASE}:sandbox:support:"
        )
        assert done.gate is not None and done.gate["passed"] is True
        dataset = list_datasets(engine, name=dataset_name(ALIAS))[0]
        assert dataset.id == done.dataset_id and dataset.lineage["cycle_id"] == done.id
        assert dataset.counts["total"] == 40
        with session_scope(engine) as session:
            jobs = list_training_jobs(session=session, cycle_id=done.id)
            view = get_alias_view(ALIAS, session=session)
            history = alias_history(ALIAS, session=session)
        assert [j.fine_tuned_model for j in jobs] == [done.student_model]
        served = {(t.model, t.role): t.weight for t in view.targets}
        assert served == {(done.student_model, "student"): 100, (TEACHER, "teacher"): 0}
        assert history[0].action == "promote" and history[0].actor == f"cycle {done.id}"

        client = openai.OpenAI(base_url=url, api_key=SANDBOX_KEY)
        answer = client.chat.completions.create(
            model=done.student_model, messages=[{"role": "user", "content": "What is 3 squared?"}]
        )
        teacher = client.chat.completions.create(
            model=TEACHER, messages=[{"role": "user", "content": "What is 3 squared?"}]
        )
        assert answer.choices[0].message.content == teacher.choices[0].message.content


def test_collecting_waits_until_enough_examples_are_approved(engine: Engine) -> None:
    with sandbox_world(engine, examples=5) as url:
        ctx = context(engine, url)
        cycle = start_cycle(engine, ALIAS, POLICY)
        waiting = advance_cycle(ctx, cycle.id)
        assert waiting.state == "collecting"
        assert waiting.steps[-1]["detail"] == "waiting: 5 of 20 approved examples"
        assert waiting.collected_until is None


def test_an_alias_has_one_open_cycle_at_a_time(engine: Engine) -> None:
    with sandbox_world(engine, examples=1):
        first = start_cycle(engine, ALIAS, POLICY)
        with pytest.raises(CycleConflict) as refused:
            start_cycle(engine, ALIAS, POLICY)
        assert refused.value.code == "cycle_open"
        cancelled = cancel_cycle(engine, first.id, actor="tester", reason="wrong data")
        assert cancelled.state == "cancelled"
        assert cancelled.reason == "cancelled by tester: wrong data"
        assert cancelled.steps[-1]["state"] == "cancelled"
        second = start_cycle(engine, ALIAS, POLICY)
        assert second.state == "collecting" and second.id != first.id


def test_an_exported_dataset_is_found_again_after_a_crash(engine: Engine) -> None:
    with sandbox_world(engine) as url:
        ctx = context(engine, url)
        cycle = start_cycle(engine, ALIAS, POLICY)
        exporting = advance_cycle(ctx, cycle.id)
        assert exporting.state == "exporting"
        # The process built the dataset and died before it could record it.
        built = create_dataset(
            engine,
            dataset_name(ALIAS),
            teacher_filter(ALIAS, TEACHER, exporting.collected_until),
            ratios=SplitRatios(*POLICY.split),
            lineage={"cycle_id": cycle.id},
        )
        training = advance_cycle(ctx, cycle.id)
        assert training.state == "training" and training.dataset_id == built.id
        assert [d.id for d in list_datasets(engine, name=dataset_name(ALIAS))] == [built.id]


def test_a_launched_job_is_found_again_after_a_crash(engine: Engine) -> None:
    with sandbox_world(engine) as url:
        ctx = context(engine, url)
        cycle = drive(ctx, url, start_cycle(engine, ALIAS, POLICY).id, until="training")
        assert cycle.state == "training" and cycle.dataset_id is not None
        # The launch happened; recording it in the cycle did not.
        launched = launch_job(
            engine,
            ctx.backend_for("openai"),
            cycle.dataset_id,
            POLICY.training,
            cycle_id=cycle.id,
            idempotency_key=f"cycle:{cycle.id}",
        )
        done = drive(ctx, url, cycle.id)
        assert done.state == "done", done.reason
        assert done.training_job_id == launched.id
        with session_scope(engine) as session:
            assert [j.id for j in list_training_jobs(session=session)] == [launched.id]


def test_a_student_below_the_gate_fails_the_cycle_and_the_alias_stays(engine: Engine) -> None:
    with sandbox_world(
        engine, SandboxConfig(step_seconds=0.05, epochs=2, student_skill=0.0)
    ) as url:
        ctx = context(engine, url)
        failed = drive(ctx, url, start_cycle(engine, ALIAS, POLICY).id)
        assert failed.state == "failed"
        assert failed.reason is not None and failed.reason.startswith("did not pass the gate: ")
        assert failed.gate is not None and failed.gate["passed"] is False
        assert failed.promotion_id is None
        with session_scope(engine) as session:
            view = get_alias_view(ALIAS, session=session)
        assert [(t.model, t.weight) for t in view.targets] == [(TEACHER, 100)]


def test_closed_fine_tuning_stops_the_cycle_saying_so(engine: Engine) -> None:
    closed = SandboxConfig(step_seconds=0.05, refuse_fine_tuning=True)
    with sandbox_world(engine, closed) as url:
        ctx = context(engine, url)
        failed = drive(ctx, url, start_cycle(engine, ALIAS, POLICY).id)
        assert failed.state == "failed"
        assert failed.reason is not None and failed.reason.startswith("training refused: ")
        assert "fine-tuning" in failed.reason.lower() and "closed" in failed.reason.lower()
        assert failed.steps[-1]["step"] == "training" and failed.steps[-1]["state"] == "failed"


def test_cancel_during_training_cancels_the_backend_job(engine: Engine) -> None:
    slow = SandboxConfig(step_seconds=30, epochs=3)
    with sandbox_world(engine, slow) as url:
        ctx = context(engine, url)
        cycle = drive(ctx, url, start_cycle(engine, ALIAS, POLICY).id, until="training")
        cycle = advance_cycle(ctx, cycle.id)
        assert cycle.training_job_id is not None
        cancelled = cancel_cycle(engine, cycle.id, actor="tester", backend_for=ctx.backend_for)
        assert cancelled.state == "cancelled"
        with session_scope(engine) as session:
            jobs = list_training_jobs(session=session)
        assert [(j.id, j.state) for j in jobs] == [(cycle.training_job_id, "cancelled")]
        # A round that was mid-step when the cancel landed changes nothing.
        assert advance_cycle(ctx, cycle.id).state == "cancelled"
        assert require_cycle(engine, cycle.id).finished_at is not None


def test_a_cycle_policy_refuses_unknown_fields() -> None:
    with pytest.raises(ValueError, match="extra"):
        CyclePolicy.model_validate({"min_examples": 3, "epochs": 2})
