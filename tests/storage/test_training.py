"""Training job rows: one per idempotency key, events and checkpoints stored once, one
launcher at a time, and the tables come and go with their migration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError

from storage import (
    TrainingJob,
    add_training_checkpoints,
    add_training_events,
    claim_training_launch,
    get_training_job,
    insert_training_job,
    last_training_event_id,
    list_training_checkpoints,
    list_training_events,
    new_training_job_id,
    session_scope,
)
from storage._migrate import downgrade, upgrade
from tests.finetune._training_helpers import clear_training

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _job(engine: Engine, key: str = "ds_1:abc") -> TrainingJob:
    job = TrainingJob(
        id=new_training_job_id(),
        idempotency_key=key,
        backend="openai",
        dataset_id="ds_1",
        spec={"base_model": "gpt-4o-mini"},
    )
    with session_scope(engine) as session:
        return insert_training_job(job, session=session)


def test_one_job_per_idempotency_key(engine: Engine) -> None:
    clear_training(engine)
    _job(engine)
    with pytest.raises(IntegrityError):
        _job(engine)


def test_events_and_checkpoints_are_stored_once(engine: Engine) -> None:
    clear_training(engine)
    job = _job(engine)
    events = [
        {"backend_event_id": f"ev{n}", "created_at": T0 + timedelta(seconds=n), "message": f"m{n}"}
        for n in range(3)
    ]
    checkpoint = {
        "backend_checkpoint_id": "ck1",
        "step": 10,
        "model": "ft:x:ckpt-step-10",
        "metrics": {"train_loss": 0.5},
        "created_at": T0,
    }
    with session_scope(engine) as session:
        assert add_training_events(job.id, events[:2], session=session) == 2
        assert add_training_events(job.id, events, session=session) == 1
        add_training_checkpoints(job.id, [checkpoint], session=session)
        add_training_checkpoints(job.id, [checkpoint], session=session)
    with session_scope(engine) as session:
        assert [e.message for e in list_training_events(job.id, session=session)] == [
            "m0",
            "m1",
            "m2",
        ]
        assert last_training_event_id(job.id, session=session) == "ev2"
        [stored] = list_training_checkpoints(job.id, session=session)
        assert stored.metrics == {"train_loss": 0.5}


def test_only_one_launcher_claims_a_job_until_it_goes_quiet(engine: Engine) -> None:
    clear_training(engine)
    job = _job(engine)
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        assert claim_training_launch(job.id, now - timedelta(minutes=15), session=session)
    with session_scope(engine) as session:
        assert not claim_training_launch(job.id, now - timedelta(minutes=15), session=session)
    with session_scope(engine) as session:
        assert claim_training_launch(job.id, now + timedelta(seconds=5), session=session)
        found = get_training_job(job.id, session=session)
        assert found is not None and found.state == "starting"


def test_the_migration_adds_and_removes_the_tables(database_url: str, engine: Engine) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the shared PostgreSQL store stays at head for the other tests")
    tables = {"training_jobs", "training_events", "training_checkpoints"}
    downgrade(engine, "0003")
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert tables <= set(inspect(engine).get_table_names())
