"""Training jobs against the sandbox upstream through the real OpenAI backend, on SQLite and
PostgreSQL: launch once, track to the ``ft:`` model, resume after a restart, cancel, refuse."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from sqlalchemy import Engine

from finetune import (
    BackendStatus,
    BackendUnavailable,
    FineTuningClosed,
    Hyperparameters,
    InvalidTrainingRequest,
    JobSpec,
    JobTracker,
    OpenAIBackend,
    TrainingConfig,
    TrainingJobNotFound,
    cancel_job,
    job_detail,
    launch_job,
    list_jobs,
    resume_open_jobs,
    sync_job,
    wait_for_job,
)
from storage import make_engine, session_scope, update_training_job
from tests.finetune._training_helpers import clear_training, training_dataset
from tests.sandbox import SandboxConfig, running_sandbox

BASE = "gpt-4o-mini-2024-07-18"
CONFIG = TrainingConfig(
    base_model=BASE, suffix="support", hyperparameters=Hyperparameters(n_epochs=3), seed=7
)


@pytest.fixture
def store(engine: Engine) -> Engine:
    """The shared store with no training jobs left from another test."""
    clear_training(engine)
    return engine


@pytest.fixture
def sandbox() -> Iterator[str]:
    with running_sandbox(SandboxConfig(step_seconds=0.15)) as url:
        yield url


def _backend(url: str, **options: Any) -> OpenAIBackend:
    return OpenAIBackend("openai", base_url=url, api_key="sk-sandbox", **options)


def _backend_jobs(url: str) -> list[str]:
    client = openai.OpenAI(base_url=url, api_key="sk-sandbox")
    return [job.id for job in client.fine_tuning.jobs.list(limit=100)]


def test_a_launched_job_is_tracked_to_its_ft_model(store: Engine, sandbox: str) -> None:
    backend = _backend(sandbox)
    dataset_id = training_dataset(store)
    job = launch_job(store, backend, dataset_id, CONFIG, cycle_id="cyc_1")
    assert job.state == "validating_files"
    assert job.backend_job_id is not None and job.training_file_id is not None
    assert job.validation_file_id is not None
    done = wait_for_job(store, backend, job.id, poll_seconds=0.1, timeout_seconds=10)
    assert done.state == "succeeded"
    assert done.fine_tuned_model == f"{'ft:' + BASE}:sandbox:support:{job.backend_job_id[-6:]}"
    assert done.trained_tokens is not None and done.trained_tokens > 0
    detail = job_detail(store, job.id)
    messages = [event.message for event in detail.events]
    assert messages[0].startswith("Created fine-tuning job")
    assert messages[-1] == "The job has successfully completed"
    losses = [checkpoint.metrics["train_loss"] for checkpoint in detail.checkpoints]
    assert [c.step for c in detail.checkpoints] == [1, 2, 3]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == 3
    assert detail.job.spec["suffix"] == "support" and detail.job.cycle_id == "cyc_1"
    client = openai.OpenAI(base_url=sandbox, api_key="sk-sandbox")
    metadata = client.fine_tuning.jobs.retrieve(job.backend_job_id).metadata
    assert metadata == {
        "stillroom_job_id": job.id,
        "stillroom_dataset_id": dataset_id,
        "stillroom_cycle_id": "cyc_1",
    }


def test_launching_again_returns_the_same_job(store: Engine, sandbox: str) -> None:
    backend = _backend(sandbox)
    dataset_id = training_dataset(store)
    first = launch_job(store, backend, dataset_id, CONFIG)
    second = launch_job(store, backend, dataset_id, CONFIG)
    assert second.id == first.id and second.backend_job_id == first.backend_job_id
    assert _backend_jobs(sandbox) == [first.backend_job_id]
    other = launch_job(store, backend, dataset_id, CONFIG, idempotency_key="second run")
    assert other.id != first.id
    assert len(_backend_jobs(sandbox)) == 2


def test_a_retry_after_a_crash_finds_the_started_job(store: Engine, sandbox: str) -> None:
    backend = _backend(sandbox)
    dataset_id = training_dataset(store)
    job = launch_job(store, backend, dataset_id, CONFIG)
    # As if the process died after the backend accepted the job, before its id was stored.
    with session_scope(store) as session:
        update_training_job(job.id, {"backend_job_id": None, "state": "pending"}, session=session)
    again = launch_job(store, backend, dataset_id, CONFIG)
    assert again.id == job.id and again.backend_job_id == job.backend_job_id
    assert _backend_jobs(sandbox) == [job.backend_job_id]


def test_tracking_resumes_after_a_restart(store: Engine, database_url: str, sandbox: str) -> None:
    backend = _backend(sandbox)
    running = launch_job(store, backend, training_dataset(store), CONFIG)
    interrupted = launch_job(store, backend, training_dataset(store), CONFIG)
    with session_scope(store) as session:
        update_training_job(
            interrupted.id,
            {"backend_job_id": None, "state": "pending", "training_file_id": None},
            session=session,
        )
    restarted = make_engine(database_url)
    try:
        resumed = resume_open_jobs(restarted, lambda name: _backend(sandbox))
        assert sorted(job.id for job in resumed) == sorted([running.id, interrupted.id])
        assert len(_backend_jobs(sandbox)) == 2
        for job in resumed:
            done = wait_for_job(restarted, backend, job.id, poll_seconds=0.1, timeout_seconds=10)
            assert done.state == "succeeded"
        assert resume_open_jobs(restarted, lambda name: _backend(sandbox)) == []
    finally:
        restarted.dispose()


def test_cancel_stops_the_job(store: Engine) -> None:
    with running_sandbox(SandboxConfig(step_seconds=30)) as url:
        backend = _backend(url)
        job = launch_job(store, backend, training_dataset(store), CONFIG)
        cancelled = cancel_job(store, backend, job.id)
        assert cancelled.state == "cancelled"
        assert job_detail(store, job.id).events[-1].message == "Fine-tuning job cancelled"
        assert cancel_job(store, backend, job.id).state == "cancelled"
        assert sync_job(store, backend, job.id).fine_tuned_model is None


def test_closed_fine_tuning_is_said_plainly_and_not_retried(
    store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with running_sandbox(SandboxConfig(refuse_fine_tuning=True)) as url:
        backend = _backend(url)
        dataset_id = training_dataset(store)
        with (
            caplog.at_level(logging.WARNING, "stillroom.training"),
            pytest.raises(FineTuningClosed) as refused,
        ):
            launch_job(store, backend, dataset_id, CONFIG)
        [said] = [r.getMessage() for r in caplog.records if r.name == "stillroom.training"]
        assert said.startswith(f"training job {list_jobs(store)[0].id} failed to start: ")
        assert "self-serve fine-tuning is closed" in said
        assert "self-serve fine-tuning is closed to this organisation" in refused.value.message
        assert "2027-01-06" in refused.value.message
        [job] = list_jobs(store)
        assert job.state == "failed" and job.error is not None
        assert job.error["code"] == "fine_tuning_closed"
        assert launch_job(store, backend, dataset_id, CONFIG).id == job.id


def test_data_that_fails_validation_is_refused_before_anything_is_stored(
    store: Engine, sandbox: str
) -> None:
    with pytest.raises(InvalidTrainingRequest) as refused:
        launch_job(store, _backend(sandbox), training_dataset(store, train=3), CONFIG)
    assert refused.value.code == "validation_failed"
    assert list_jobs(store) == []
    assert _backend_jobs(sandbox) == []


def test_an_unreachable_backend_keeps_the_intent_for_a_retry(
    store: Engine, sandbox: str, caplog: pytest.LogCaptureFixture
) -> None:
    dataset_id = training_dataset(store)
    down = _backend("http://127.0.0.1:9/v1", max_retries=0, timeout_seconds=2)
    with caplog.at_level(logging.WARNING, "stillroom.training"), pytest.raises(BackendUnavailable):
        launch_job(store, down, dataset_id, CONFIG)
    [pending] = list_jobs(store)
    assert pending.state == "pending" and pending.backend_job_id is None
    assert [r.getMessage() for r in caplog.records if r.name == "stillroom.training"] == [
        f"training job {pending.id} not started, kept pending: cannot reach the training "
        "backend: Connection error."
    ]
    started = launch_job(store, _backend(sandbox), dataset_id, CONFIG)
    assert started.id == pending.id and started.backend_job_id is not None
    assert started.error is None


def test_an_unknown_job_is_not_found(store: Engine, sandbox: str) -> None:
    with pytest.raises(TrainingJobNotFound):
        sync_job(store, _backend(sandbox), "trj_missing")


def test_dpo_trains_on_the_preference_pairs_with_its_beta(store: Engine, sandbox: str) -> None:
    dpo = TrainingConfig(base_model=BASE, method="dpo", beta=0.2)
    with pytest.raises(InvalidTrainingRequest) as refused:
        launch_job(store, _backend(sandbox), training_dataset(store), dpo)
    assert "no preference pairs" in refused.value.message
    job = launch_job(store, _backend(sandbox), training_dataset(store, preference=True), dpo)
    client = openai.OpenAI(base_url=sandbox, api_key="sk-sandbox")
    assert job.backend_job_id is not None
    method = client.fine_tuning.jobs.retrieve(job.backend_job_id).method
    assert method is not None and method.type == "dpo"
    assert method.dpo is not None and method.dpo.hyperparameters is not None
    assert method.dpo.hyperparameters.beta == 0.2
    uploaded = client.files.retrieve(job.training_file_id or "")
    assert uploaded.bytes > 0 and uploaded.filename == f"{job.id}-train.jsonl"


class _CancelledWhileStarting(OpenAIBackend):
    """Someone cancels the job in the moment between the backend accepting it and its id
    being stored."""

    engine: Engine

    def start(self, spec: JobSpec) -> BackendStatus:
        started = super().start(spec)
        cancel_job(self.engine, self, spec.metadata["stillroom_job_id"])
        return started


def test_a_job_cancelled_while_starting_is_cancelled_at_the_backend(
    store: Engine, sandbox: str
) -> None:
    backend = _CancelledWhileStarting("openai", base_url=sandbox, api_key="sk-sandbox")
    backend.engine = store
    job = launch_job(store, backend, training_dataset(store), CONFIG)
    assert job.state == "cancelled" and job.backend_job_id is not None
    client = openai.OpenAI(base_url=sandbox, api_key="sk-sandbox")
    assert client.fine_tuning.jobs.retrieve(job.backend_job_id).status == "cancelled"


def test_the_tracker_finishes_interrupted_launches_and_follows_jobs(
    store: Engine, sandbox: str
) -> None:
    job = launch_job(store, _backend(sandbox), training_dataset(store), CONFIG)
    with session_scope(store) as session:
        update_training_job(job.id, {"backend_job_id": None, "state": "pending"}, session=session)
    tracker = JobTracker(
        store, lambda name: _backend(sandbox), poll_seconds=0.1, file_wait_seconds=5
    )
    tracker.start()
    try:
        deadline = time.monotonic() + 10
        while job_detail(store, job.id).job.state != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        tracker.stop()
    done = job_detail(store, job.id).job
    assert done.state == "succeeded" and done.backend_job_id == job.backend_job_id
    assert tracker.rounds >= 2 and _backend_jobs(sandbox) == [job.backend_job_id]
