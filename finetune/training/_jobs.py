"""Training jobs: launch idempotently, track, resume after a restart, cancel.

A launch stores its intent (a ``pending`` row keyed by the idempotency key) before it asks the
backend for anything, and tags the backend job with the row's id. A retry of the same launch —
after a timeout, a crash, or from another replica — finds the row; a row whose backend job id
was never stored is looked up at the backend by that tag before anything is created, so a retry
never starts a second job. Only one launcher at a time moves a row from ``pending`` on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from finetune.datasets._export import Redact, export_lines
from finetune.datasets._validate import ValidationOptions, split_lines, validate_jsonl
from finetune.training._protocol import (
    BackendCheckpoint,
    BackendEvent,
    BackendRefused,
    BackendStatus,
    BackendUnavailable,
    InvalidTrainingRequest,
    JobSpec,
    TrainingBackend,
    TrainingConfig,
    TrainingError,
    TrainingJobNotFound,
)
from storage import (
    TERMINAL_TRAINING_STATES,
    TrainingCheckpoint,
    TrainingEvent,
    TrainingJob,
    add_training_checkpoints,
    add_training_events,
    claim_training_launch,
    get_training_job,
    get_training_job_by_key,
    insert_training_job,
    last_training_event_id,
    list_training_checkpoints,
    list_training_events,
    list_training_jobs,
    new_training_job_id,
    session_scope,
    touch_training_launch,
    update_training_job,
)

log = logging.getLogger("stillroom.training")

JOB_TAG = "stillroom_job_id"
"""Metadata key naming our job at the backend: how a retried launch finds its job."""

LAUNCH_LEASE = timedelta(seconds=20)
"""A launcher silent this long is taken to have died; another may take its launch over."""

LAUNCH_HEARTBEAT_SECONDS = 4.0
"""How often a live launcher says so, however long an upload or a file's processing takes."""


@contextmanager
def _heartbeat(engine: Engine, job_id: str) -> Iterator[None]:
    """Keep the launch claimed while the block runs: a launcher that dies stops beating."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(LAUNCH_HEARTBEAT_SECONDS):
            try:
                with session_scope(engine) as session:
                    touch_training_launch(job_id, session=session)
            except SQLAlchemyError:
                log.warning("training job %s: launch heartbeat failed", job_id)

    thread = threading.Thread(target=beat, name=f"launch-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(LAUNCH_HEARTBEAT_SECONDS)


@dataclass(frozen=True, slots=True)
class JobDetail:
    job: TrainingJob
    events: list[TrainingEvent]
    checkpoints: list[TrainingCheckpoint]


def default_idempotency_key(dataset_id: str, config: TrainingConfig) -> str:
    """The same dataset trained the same way is the same launch."""
    return f"{dataset_id}:{config.digest()[:40]}"


def _require(engine: Engine, job_id: str) -> TrainingJob:
    with session_scope(engine) as session:
        job = get_training_job(job_id, session=session)
    if job is None:
        raise TrainingJobNotFound(f"no training job {job_id}", param="job_id", code="not_found")
    return job


def _update(engine: Engine, job_id: str, **changes: Any) -> TrainingJob:
    with session_scope(engine) as session:
        job = update_training_job(job_id, changes, session=session)
    if job is None:
        raise TrainingJobNotFound(f"no training job {job_id}", param="job_id", code="not_found")
    return job


def _error(exc: TrainingError) -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message, "param": exc.param}


def prepare_files(
    engine: Engine,
    dataset_id: str,
    config: TrainingConfig,
    *,
    redact: Redact | None = None,
    options: ValidationOptions | None = None,
) -> tuple[bytes, bytes | None]:
    """The train and validation files of a dataset, exported as an upload would send them,
    refused when the validator does not pass them. Unknown datasets raise ``DatasetNotFound``."""
    fmt = "dpo" if config.method == "dpo" else "sft"
    train = b"".join(export_lines(engine, dataset_id, split="train", fmt=fmt, redact=redact))
    validation = b"".join(
        export_lines(engine, dataset_id, split="validation", fmt=fmt, redact=redact)
    )
    if fmt == "dpo":
        # The chat validator does not read preference lines; an empty file is the one refusal.
        if not train:
            raise InvalidTrainingRequest(
                f"dataset {dataset_id} has no preference pairs in its train split",
                param="dataset_id",
                code="validation_failed",
            )
        return train, validation or None
    checked = options or ValidationOptions(base_model=config.base_model)
    sides = [("train", train, checked)]
    if validation:
        sides.append(("validation", validation, replace(checked, min_examples=1)))
    for side, body, side_options in sides:
        report = validate_jsonl(split_lines(body), side_options)
        if not report.passed:
            first = "; ".join(issue.message for issue in report.errors[:3])
            raise InvalidTrainingRequest(
                f"the {side} split of dataset {dataset_id} failed validation "
                f"({sum(report.error_counts.values())} errors): {first}",
                param="dataset_id",
                code="validation_failed",
            )
    return train, validation or None


def backend_validation_options(
    backend: TrainingBackend, config: TrainingConfig
) -> ValidationOptions | None:
    """What a backend that trains with its own tokenizer checks the data with (its token counts
    and context length: ``validation_options``); None: OpenAI's counts and limits."""
    hook = getattr(backend, "validation_options", None)
    return hook(config) if callable(hook) else None


def launch_job(
    engine: Engine,
    backend: TrainingBackend,
    dataset_id: str,
    config: TrainingConfig,
    *,
    cycle_id: str | None = None,
    idempotency_key: str | None = None,
    file_wait_seconds: float = 600.0,
    redact: Redact | None = None,
    options: ValidationOptions | None = None,
) -> TrainingJob:
    """Start fine-tuning ``dataset_id`` once: a second call with the same key returns the job
    the first one made (or is making). Bad data is refused before anything is stored."""
    key = idempotency_key or default_idempotency_key(dataset_id, config)
    options = options or backend_validation_options(backend, config)
    with session_scope(engine) as session:
        job = get_training_job_by_key(key, session=session)
    files: tuple[bytes, bytes | None] | None = None
    if job is None:
        files = prepare_files(engine, dataset_id, config, redact=redact, options=options)
        intent = TrainingJob(
            id=new_training_job_id(),
            idempotency_key=key,
            backend=backend.name,
            dataset_id=dataset_id,
            cycle_id=cycle_id,
            spec=config.model_dump(mode="json"),
        )
        try:
            with session_scope(engine) as session:
                job = insert_training_job(intent, session=session)
        except IntegrityError:
            # Another launcher with the same key stored its intent first: carry on with it.
            with session_scope(engine) as session:
                job = get_training_job_by_key(key, session=session)
            if job is None:
                raise
    if job.backend_job_id is not None or job.state in TERMINAL_TRAINING_STATES:
        return job
    return _drive(engine, backend, job, files, file_wait_seconds, redact, options)


def _drive(
    engine: Engine,
    backend: TrainingBackend,
    job: TrainingJob,
    files: tuple[bytes, bytes | None] | None,
    file_wait_seconds: float,
    redact: Redact | None,
    options: ValidationOptions | None,
) -> TrainingJob:
    """Take a stored intent to a started backend job."""
    with session_scope(engine) as session:
        claimed = claim_training_launch(job.id, datetime.now(UTC) - LAUNCH_LEASE, session=session)
    if not claimed:
        return _require(engine, job.id)
    config = TrainingConfig.model_validate(job.spec)
    try:
        with _heartbeat(engine, job.id):
            tag = {JOB_TAG: job.id}
            found = backend.find_job(tag)
            if found is None:
                if job.training_file_id is None:
                    train, validation = files or prepare_files(
                        engine, job.dataset_id, config, redact=redact, options=options
                    )
                    training_id = backend.upload(train, filename=f"{job.id}-train.jsonl")
                    validation_id = (
                        backend.upload(validation, filename=f"{job.id}-validation.jsonl")
                        if validation
                        else None
                    )
                    job = _update(
                        engine,
                        job.id,
                        training_file_id=training_id,
                        validation_file_id=validation_id,
                    )
                assert job.training_file_id is not None
                for file_id in (job.training_file_id, job.validation_file_id):
                    if file_id is not None:
                        backend.wait_for_file(file_id, timeout_seconds=file_wait_seconds)
                metadata = {**tag, "stillroom_dataset_id": job.dataset_id}
                if job.cycle_id is not None:
                    metadata["stillroom_cycle_id"] = job.cycle_id
                spec = JobSpec(
                    config=config,
                    training_file=job.training_file_id,
                    validation_file=job.validation_file_id,
                    metadata=metadata,
                )
                found = backend.start(spec)
    except BackendUnavailable as exc:
        # Transient: the intent stays, so a retry or a restart carries on from here.
        _update(engine, job.id, state="pending", error=_error(exc))
        log.warning("training job %s not started, kept pending: %s", job.id, exc.message)
        raise
    except (BackendRefused, InvalidTrainingRequest) as exc:
        _update(engine, job.id, state="failed", error=_error(exc))
        log.warning("training job %s failed to start: %s", job.id, exc.message)
        raise
    if _require(engine, job.id).state == "cancelled" and found.state not in (
        TERMINAL_TRAINING_STATES
    ):
        # Cancelled while it was being started: the job the backend just accepted goes too.
        found = backend.cancel(found.backend_job_id)
    started = _apply_status(engine, job.id, found)
    log.info("training job %s started at %s as %s", job.id, backend.name, found.backend_job_id)
    return started


def _apply_status(engine: Engine, job_id: str, status: BackendStatus) -> TrainingJob:
    changes: dict[str, Any] = {
        "backend_job_id": status.backend_job_id,
        "state": status.state,
        "error": status.error,
    }
    if status.fine_tuned_model is not None:
        changes["fine_tuned_model"] = status.fine_tuned_model
    if status.trained_tokens is not None:
        changes["trained_tokens"] = status.trained_tokens
    return _update(engine, job_id, **changes)


def _moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _event_row(event: BackendEvent) -> dict[str, Any]:
    return {
        "backend_event_id": event.id,
        "created_at": _moment(event.created_at),
        "level": event.level[:16],
        "message": event.message[:4000],
        "type": event.type,
        "data": event.data,
    }


def _checkpoint_row(checkpoint: BackendCheckpoint) -> dict[str, Any]:
    return {
        "backend_checkpoint_id": checkpoint.id,
        "step": checkpoint.step,
        "model": checkpoint.model,
        "metrics": checkpoint.metrics,
        "created_at": _moment(checkpoint.created_at),
    }


def sync_job(engine: Engine, backend: TrainingBackend, job_id: str) -> TrainingJob:
    """Read the job's status, new events and checkpoints from its backend and store them."""
    job = _require(engine, job_id)
    if job.backend_job_id is None:
        return job
    status = backend.status(job.backend_job_id)
    with session_scope(engine) as session:
        after = last_training_event_id(job_id, session=session)
    events = backend.events(job.backend_job_id, after=after)
    checkpoints = backend.checkpoints(job.backend_job_id)
    with session_scope(engine) as session:
        add_training_events(job_id, [_event_row(e) for e in events], session=session)
        add_training_checkpoints(job_id, [_checkpoint_row(c) for c in checkpoints], session=session)
    return _apply_status(engine, job_id, status)


def cancel_job(engine: Engine, backend: TrainingBackend, job_id: str) -> TrainingJob:
    """Cancel at the backend; a job that has already ended is returned as it is."""
    job = _require(engine, job_id)
    if job.state in TERMINAL_TRAINING_STATES:
        return job
    if job.backend_job_id is None:
        return _update(engine, job_id, state="cancelled")
    _apply_status(engine, job_id, backend.cancel(job.backend_job_id))
    return sync_job(engine, backend, job_id)


def wait_for_job(
    engine: Engine,
    backend: TrainingBackend,
    job_id: str,
    *,
    poll_seconds: float = 30.0,
    timeout_seconds: float | None = None,
    on_update: Callable[[TrainingJob], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainingJob:
    """Sync until the job ends (or ``timeout_seconds`` pass); ``on_update`` hears each sync."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        job = sync_job(engine, backend, job_id)
        if on_update is not None:
            on_update(job)
        if job.state in TERMINAL_TRAINING_STATES:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            return job
        sleep(poll_seconds)


def resume_open_jobs(
    engine: Engine,
    backend_for: Callable[[str], TrainingBackend],
    *,
    file_wait_seconds: float = 600.0,
    redact: Redact | None = None,
) -> list[TrainingJob]:
    """At start-up: finish launches that were interrupted and sync every job still running.
    A job whose backend cannot be reached now is left for the next call."""
    resumed = []
    with session_scope(engine) as session:
        open_jobs = list_training_jobs(session=session, open_only=True, limit=10_000)
    for job in open_jobs:
        try:
            backend = backend_for(job.backend)
            if job.backend_job_id is None:
                resumed.append(_drive(engine, backend, job, None, file_wait_seconds, redact, None))
            else:
                resumed.append(sync_job(engine, backend, job.id))
        except TrainingError as exc:
            log.warning("training job %s not resumed: %s", job.id, exc.message)
    return resumed


def list_jobs(
    engine: Engine,
    *,
    state: str | None = None,
    dataset_id: str | None = None,
    cycle_id: str | None = None,
    limit: int = 100,
) -> list[TrainingJob]:
    with session_scope(engine) as session:
        return list_training_jobs(
            session=session,
            states=None if state is None else [state],
            dataset_id=dataset_id,
            cycle_id=cycle_id,
            limit=limit,
        )


def job_detail(engine: Engine, job_id: str) -> JobDetail:
    job = _require(engine, job_id)
    with session_scope(engine) as session:
        events = list_training_events(job_id, session=session)
        checkpoints = list_training_checkpoints(job_id, session=session)
    return JobDetail(job=job, events=events, checkpoints=checkpoints)
