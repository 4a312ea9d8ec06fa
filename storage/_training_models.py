"""Tables of training jobs: the job as stillroom launched it, and what its backend reported.

A job row is written before the backend is asked for anything (the launch intent), so a crash
between the two leaves a row that a restart can finish instead of a job nobody knows about.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage._models import JSONType, utcnow


class TrainingJob(SQLModel, table=True):
    """One fine-tune at a training backend, from launch intent to its ``ft:`` model."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        Index("ix_training_jobs_state", "state", "id"),
        Index("ix_training_jobs_dataset", "dataset_id", "id"),
    )

    # Time-ordered, so listing by id lists by launch.
    id: str = Field(primary_key=True, max_length=40)
    idempotency_key: str = Field(unique=True, max_length=200)
    """A retried launch with the same key finds this row instead of starting a second job."""
    backend: str = Field(max_length=100)
    backend_job_id: str | None = Field(default=None, max_length=200, index=True)
    """None until the backend has accepted the job."""
    dataset_id: str = Field(max_length=40)
    cycle_id: str | None = Field(default=None, max_length=40, index=True)
    spec: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    """Base model, method, hyperparameters, suffix, seed: what was asked for."""
    training_file_id: str | None = Field(default=None, max_length=200)
    validation_file_id: str | None = Field(default=None, max_length=200)
    state: str = Field(default="pending", max_length=32)
    """pending (intent stored), validating_files, queued, running, succeeded, failed, cancelled."""
    fine_tuned_model: str | None = Field(default=None, max_length=400)
    trained_tokens: int | None = None
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    """code, message, param: why the job failed or could not start."""
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class TrainingEvent(SQLModel, table=True):
    """One status message of a job, as the backend reported it."""

    __tablename__ = "training_events"
    __table_args__ = (
        UniqueConstraint("job_id", "backend_event_id", name="uq_training_events_backend_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(
        foreign_key="training_jobs.id", ondelete="CASCADE", index=True, max_length=40
    )
    backend_event_id: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    level: str = Field(default="info", max_length=16)
    message: str = Field(max_length=4000)
    type: str | None = Field(default=None, max_length=32)
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))


class TrainingCheckpoint(SQLModel, table=True):
    """A usable intermediate model of a job, with its training metrics at that step."""

    __tablename__ = "training_checkpoints"
    __table_args__ = (
        UniqueConstraint(
            "job_id", "backend_checkpoint_id", name="uq_training_checkpoints_backend_id"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(
        foreign_key="training_jobs.id", ondelete="CASCADE", index=True, max_length=40
    )
    backend_checkpoint_id: str = Field(max_length=200)
    step: int
    model: str = Field(max_length=400)
    """The checkpoint's own model name, servable like the final one."""
    metrics: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    """train_loss, train_mean_token_accuracy, valid_loss, ... as the backend named them."""
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
