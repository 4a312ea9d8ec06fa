"""Promotion and cycles with a self-hosted student: nothing routes to a student that a replica
did not load, the cycle says which replica and why, and after each promotion only the students
a route serves or can be rolled back to stay loaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from finetune import (
    CanaryPolicy,
    CycleContext,
    CyclePolicy,
    GatePolicy,
    InvalidPromotion,
    StudentServing,
    StudentUnavailable,
    TrainingConfig,
    advance_cycle,
    list_promotions,
    promote_now,
    start_cycle,
    start_promotion,
    students_in_use,
)
from storage import session_scope, update_cycle
from tests.finetune.routing.lora_fake import FakeLoraFleet
from tests.finetune.routing.test_serving import job_folder, serving
from tests.promotion_support import CANARY, make_alias

FIRST, SECOND, THIRD = (f"ft:tiny:local:support:ftjob-{n}" for n in (1, 2, 3))
FULL = CANARY.model_copy(update={"canary_percent": 0.0})


@pytest.fixture
def fleet() -> FakeLoraFleet:
    return FakeLoraFleet(2)


@pytest.fixture
def service(fleet: FakeLoraFleet, tmp_path: Path) -> StudentServing:
    for n in (1, 2, 3):
        job_folder(tmp_path, f"ftjob-{n}")
    return serving(fleet, tmp_path)


def _promote(engine: Engine, service: StudentServing, model: str, policy: CanaryPolicy) -> str:
    promotion = start_promotion(
        engine, "bot", model, upstream="gpu", policy=policy, actor="ann", serving=service
    )
    return promotion.id


def _loaded(fleet: FakeLoraFleet) -> list[list[str]]:
    return [sorted(r.adapters) for r in fleet.replicas.values()]


def test_a_promotion_is_refused_and_changes_nothing_when_a_replica_did_not_load_it(
    engine: Engine, fleet: FakeLoraFleet, service: StudentServing
) -> None:
    make_alias(engine)
    fleet.replicas["http://replica-2/v1"].refuse_loads = True
    with pytest.raises(StudentUnavailable) as refused:
        _promote(engine, service, FIRST, CANARY)
    assert refused.value.code == "student_not_served"
    assert "http://replica-2/v1: load_lora_adapter answered 400" in refused.value.message
    assert list_promotions(engine) == []
    assert students_in_use(engine, "gpu") == set()


def test_a_student_without_weights_is_an_invalid_promotion(
    engine: Engine, service: StudentServing
) -> None:
    make_alias(engine)
    with pytest.raises(InvalidPromotion) as refused:
        _promote(engine, service, "ft:tiny:local:support:ftjob-404", CANARY)
    assert refused.value.code == "adapter_not_found"


def test_each_promotion_keeps_the_student_it_can_roll_back_to_and_unloads_older_ones(
    engine: Engine, fleet: FakeLoraFleet, service: StudentServing
) -> None:
    make_alias(engine)
    _promote(engine, service, FIRST, FULL)
    assert _loaded(fleet) == [[FIRST], [FIRST]]
    canary = _promote(engine, service, SECOND, CANARY)
    assert _loaded(fleet) == [[FIRST, SECOND], [FIRST, SECOND]]
    promote_now(engine, canary, actor="ann", serving=service)
    # Aborting the full promotion still returns to FIRST: it stays.
    assert students_in_use(engine, "gpu") == {FIRST, SECOND}
    _promote(engine, service, THIRD, FULL)
    assert _loaded(fleet) == [[SECOND, THIRD], [SECOND, THIRD]]


def test_going_full_loads_the_student_again_on_a_replica_that_lost_it(
    engine: Engine, fleet: FakeLoraFleet, service: StudentServing
) -> None:
    make_alias(engine)
    canary = _promote(engine, service, FIRST, CANARY)
    fleet.replicas["http://replica-1/v1"].adapters.clear()  # restarted
    promote_now(engine, canary, actor="ann", serving=service)
    assert _loaded(fleet) == [[FIRST], [FIRST]]
    second = _promote(engine, service, SECOND, CANARY)
    fleet.replicas["http://replica-2/v1"].adapters.clear()
    fleet.replicas["http://replica-2/v1"].refuse_loads = True
    with pytest.raises(StudentUnavailable):
        promote_now(engine, second, actor="ann", serving=service)
    assert list_promotions(engine)[0].stage == "canary"


def _promoting_cycle(engine: Engine, student: str) -> str:
    policy = CyclePolicy(
        training=TrainingConfig(base_model="tiny", suffix="support"),
        student_upstream="gpu",
        canary=FULL,
    )
    cycle = start_cycle(engine, "bot", policy)
    with session_scope(engine) as session:
        update_cycle(
            cycle.id,
            cycle.state,
            {
                "state": "promoting",
                "student_model": student,
                "steps": [{"step": "promoting", "state": "running", "started_at": "now"}],
            },
            session=session,
        )
    return cycle.id


def _context(engine: Engine, service: StudentServing) -> CycleContext:
    def no_backend(name: str) -> None:
        raise AssertionError(f"a promoting cycle needs no training backend, asked for {name}")

    return CycleContext(
        engine=engine,
        backend_for=no_backend,  # type: ignore[arg-type]
        gate=GatePolicy(),
        canary=FULL,
        judge_model="judge",
        serving=service,
    )


def test_a_cycle_waits_saying_which_replica_did_not_load_the_student_then_promotes_it(
    engine: Engine, fleet: FakeLoraFleet, service: StudentServing
) -> None:
    make_alias(engine)
    cycle_id = _promoting_cycle(engine, FIRST)
    fleet.replicas["http://replica-1/v1"].down = True
    cycle = advance_cycle(_context(engine, service), cycle_id)
    assert cycle.state == "promoting"
    detail = cycle.steps[-1]["detail"]
    assert detail.startswith(
        f"waiting for the student to be served: 1 of 2 replicas of upstream 'gpu' do not serve "
        f"'{FIRST}': http://replica-1/v1: GET http://replica-1/v1/models: ConnectError"
    )
    fleet.replicas["http://replica-1/v1"].down = False
    cycle = advance_cycle(_context(engine, service), cycle_id)
    cycle = advance_cycle(_context(engine, service), cycle_id)
    assert (cycle.state, cycle.steps[-1]["detail"]) == ("done", f"{FIRST} serves bot")
    assert _loaded(fleet) == [[FIRST], [FIRST]]


def test_a_cycle_fails_when_its_student_has_no_adapter_to_load(
    engine: Engine, service: StudentServing
) -> None:
    make_alias(engine)
    cycle_id = _promoting_cycle(engine, "ft:tiny:local:support:ftjob-404")
    cycle = advance_cycle(_context(engine, service), cycle_id)
    assert cycle.state == "failed"
    assert cycle.reason is not None
    assert cycle.reason.startswith("student cannot be served: No LoRA adapter found for")


def test_a_cycle_evaluates_its_student_only_once_every_replica_serves_it(
    engine: Engine, fleet: FakeLoraFleet, service: StudentServing
) -> None:
    make_alias(engine)
    cycle_id = _promoting_cycle(engine, FIRST)
    with session_scope(engine) as session:
        update_cycle(
            cycle_id, "promoting", {"state": "evaluating", "dataset_id": "ds"}, session=session
        )
    fleet.replicas["http://replica-2/v1"].refuse_loads = True
    cycle = advance_cycle(_context(engine, service), cycle_id)
    assert (cycle.state, cycle.evaluation_id) == ("evaluating", None)
    assert cycle.steps[-1]["detail"].startswith(
        f"waiting for the student to be served: 1 of 2 replicas of upstream 'gpu' do not serve "
        f"'{FIRST}': http://replica-2/v1: load_lora_adapter answered 400"
    )


def test_a_replica_that_restarted_is_given_the_routed_student_again(
    engine: Engine, fleet: FakeLoraFleet, service: StudentServing
) -> None:
    make_alias(engine)
    _promote(engine, service, FIRST, FULL)
    _promote(engine, service, SECOND, FULL)
    for replica in fleet.replicas.values():
        replica.adapters.clear()  # both restarted
    fleet.replicas["http://replica-2/v1"].refuse_loads = True
    problems = service.restore_routed(engine)
    # Only the student that takes traffic is loaded again, not the one kept for a rollback.
    assert _loaded(fleet) == [[SECOND], []]
    assert len(problems) == 1
    assert problems[0].startswith(f"1 of 2 replicas of upstream 'gpu' do not serve '{SECOND}'")
