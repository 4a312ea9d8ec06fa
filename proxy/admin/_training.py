"""The training admin API under /admin/jobs: launch from a dataset, list, inspect, cancel, sync.

Handlers hand over to the ``finetune`` training services off the event loop; their refusals
become OpenAI-shaped errors in ``proxy._errors``. A launch exports the dataset's train and
validation splits, validates them (refusing data that does not pass), uploads and starts, and
answers once the backend has accepted the job (or refused it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from finetune import (
    BackendConfig,
    Hyperparameters,
    InvalidTrainingRequest,
    JobDetail,
    JobTracker,
    TrainingBackend,
    TrainingConfig,
    cancel_job,
    job_detail,
    launch_job,
    list_jobs,
    make_backend,
    sync_job,
)
from proxy._errors import InvalidRequest
from proxy._services import services
from proxy._settings import Settings
from proxy.admin._base import admin_guard
from proxy.admin._datasets import export_hook
from storage import TrainingCheckpoint, TrainingEvent, TrainingJob


def backend_config(settings: Settings, name: str = "openai") -> BackendConfig:
    """The named backend's config; ``openai`` needs none. Unset URL and key are the upstream's."""
    config = settings.training_backends.get(name)
    if config is None:
        if name != "openai":
            known = ", ".join(sorted({"openai", *settings.training_backends}))
            raise InvalidTrainingRequest(
                f"no training backend '{name}' (configured: {known})", param="backend"
            )
        config = BackendConfig()
    return config.model_copy(
        update={
            "base_url": config.base_url or settings.upstream_base_url,
            "api_key": config.api_key or settings.upstream_api_key,
        }
    )


def backend_from_settings(settings: Settings, name: str = "openai") -> TrainingBackend:
    return make_backend(name, backend_config(settings, name))


class JobLaunch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=40)
    base_model: str = Field(min_length=1, max_length=200)
    suffix: str | None = Field(default=None, max_length=64)
    method: Literal["supervised", "dpo"] = "supervised"
    beta: float | Literal["auto"] | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    seed: int | None = None
    backend: str = Field(default="openai", min_length=1, max_length=100)
    cycle_id: str | None = Field(default=None, max_length=40)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    """A retry with the same key returns the same job; by default dataset and spec decide."""

    def config(self) -> TrainingConfig:
        return TrainingConfig(
            base_model=self.base_model,
            suffix=self.suffix,
            method=self.method,
            beta=self.beta,
            hyperparameters=self.hyperparameters,
            seed=self.seed,
        )


class JobPublic(BaseModel):
    id: str
    backend: str
    backend_job_id: str | None
    dataset_id: str
    cycle_id: str | None
    idempotency_key: str
    spec: dict[str, Any]
    state: str
    """pending, starting, validating_files, queued, running, succeeded, failed, cancelled."""
    training_file_id: str | None
    validation_file_id: str | None
    fine_tuned_model: str | None
    trained_tokens: int | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class EventPublic(BaseModel):
    id: str
    created_at: datetime
    level: str
    message: str
    type: str | None
    data: dict[str, Any] | None


class CheckpointPublic(BaseModel):
    id: str
    step: int
    model: str
    metrics: dict[str, Any]
    created_at: datetime


class JobDetailPublic(JobPublic):
    events: list[EventPublic]
    checkpoints: list[CheckpointPublic]


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobPublic]


def _utc(moment: datetime) -> datetime:
    # SQLite hands times back without their zone; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def public_job(job: TrainingJob) -> JobPublic:
    found = JobPublic.model_validate(job, from_attributes=True)
    return found.model_copy(
        update={"created_at": _utc(found.created_at), "updated_at": _utc(found.updated_at)}
    )


def _event(event: TrainingEvent) -> EventPublic:
    return EventPublic(
        id=event.backend_event_id,
        created_at=_utc(event.created_at),
        level=event.level,
        message=event.message,
        type=event.type,
        data=event.data,
    )


def _checkpoint(checkpoint: TrainingCheckpoint) -> CheckpointPublic:
    return CheckpointPublic(
        id=checkpoint.backend_checkpoint_id,
        step=checkpoint.step,
        model=checkpoint.model,
        metrics=checkpoint.metrics,
        created_at=_utc(checkpoint.created_at),
    )


def public_detail(detail: JobDetail) -> JobDetailPublic:
    return JobDetailPublic(
        **public_job(detail.job).model_dump(),
        events=[_event(e) for e in detail.events],
        checkpoints=[_checkpoint(c) for c in detail.checkpoints],
    )


class TrainingController(Controller):
    path = "/admin/jobs"
    guards = [admin_guard]
    tags = ["training"]

    @get("/")
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        job_state: Annotated[str | None, QueryParameter(name="state")] = None,
        dataset_id: FromQuery[str | None] = None,
        cycle_id: FromQuery[str | None] = None,
        limit: FromQuery[int] = 100,
    ) -> JobList:
        """Training jobs, newest first; ``limit`` at most 1000."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("'limit' must be from 1 to 1000.", param="limit")
        engine = services(request).engine
        found = await anyio.to_thread.run_sync(
            lambda: list_jobs(
                engine, state=job_state, dataset_id=dataset_id, cycle_id=cycle_id, limit=limit
            )
        )
        return JobList(data=[public_job(job) for job in found])

    @post("/", status_code=201)
    async def launch(self, request: Request[Any, Any, Any], data: JSONBody[JobLaunch]) -> JobPublic:
        """Fine-tune a dataset: export, validate (refused if it fails), upload, start. The same
        request again (or the same ``idempotency_key``) returns the same job."""
        found = services(request)
        settings = found.settings

        def run() -> TrainingJob:
            return launch_job(
                found.engine,
                backend_from_settings(settings, data.backend),
                data.dataset_id,
                data.config(),
                cycle_id=data.cycle_id,
                idempotency_key=data.idempotency_key,
                file_wait_seconds=settings.training_file_wait_seconds,
                redact=export_hook(settings),
            )

        return public_job(await anyio.to_thread.run_sync(run))

    @get("/{job_id:str}")
    async def get_job(
        self, request: Request[Any, Any, Any], job_id: FromPath[str]
    ) -> JobDetailPublic:
        """The job with its events (oldest first) and checkpoints (by step)."""
        engine = services(request).engine
        return public_detail(await anyio.to_thread.run_sync(job_detail, engine, job_id))

    @post("/{job_id:str}/cancel", status_code=200)
    async def cancel(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> JobPublic:
        """Cancel at the backend; a job that has already ended is returned as it is."""
        return await self._act(request, job_id, cancel_job)

    @post("/{job_id:str}/sync", status_code=200)
    async def sync(self, request: Request[Any, Any, Any], job_id: FromPath[str]) -> JobPublic:
        """Read the job's status, events and checkpoints from its backend now."""
        return await self._act(request, job_id, sync_job)

    async def _act(self, request: Request[Any, Any, Any], job_id: str, action: Any) -> JobPublic:
        found = services(request)

        def run() -> TrainingJob:
            job = job_detail(found.engine, job_id).job
            backend = backend_from_settings(found.settings, job.backend)
            result: TrainingJob = action(found.engine, backend, job_id)
            return result

        return public_job(await anyio.to_thread.run_sync(run))


def job_tracker(settings: Settings, engine: Engine) -> JobTracker:
    """Tracks open jobs from start-up on (resuming those a restart interrupted)."""
    return JobTracker(
        engine,
        lambda name: backend_from_settings(settings, name),
        poll_seconds=settings.training_poll_seconds,
        file_wait_seconds=settings.training_file_wait_seconds,
        redact=export_hook(settings),
    )
