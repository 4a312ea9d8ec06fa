"""Evaluation tables: one run of a model over a dataset's test split, and its per-example
results. API schemas live beside the code that serves them, never here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel

from storage._models import JSONType, utcnow


class Evaluation(SQLModel, table=True):
    """One model run on one dataset's test split, scored against the teacher's answers."""

    __tablename__ = "evaluations"
    __table_args__ = (
        Index("ix_evaluations_dataset_id", "dataset_id", "id"),
        # Each replica's worker looks for pending or abandoned evaluations every few seconds.
        Index("ix_evaluations_state", "state"),
    )

    # Time-ordered, so listing by id lists by creation.
    id: str = Field(primary_key=True, max_length=40)
    # No foreign key: an evaluation outlives the dataset it was run on, as a record.
    dataset_id: str = Field(max_length=40)
    model: str = Field(max_length=200)
    role: str = Field(default="candidate", max_length=16)
    """candidate (the model under test) or base (the model it was fine-tuned from)."""
    base_evaluation_id: str | None = Field(default=None, max_length=40)
    """On a candidate evaluated together with its base: the base's evaluation."""
    judge_model: str = Field(max_length=200)
    state: str = Field(default="pending", max_length=16)
    """pending, running, succeeded or failed."""
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    started_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    """How it ran: concurrency, retries, seed."""
    summary: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    """Aggregates once finished: counts, mean rubric score, win rate, check pass rates."""
    lease_owner: str | None = Field(default=None, max_length=100)
    """The runner that holds (or last held) the evaluation."""
    lease_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    """Until when the runner holds it; past that a ``running`` evaluation is anyone's to resume."""
    attempts: int = 0
    """How many times a runner claimed it; a crash loop ends it ``failed``."""
    progress: int = 0
    """Examples scored and stored so far."""
    total: int | None = None
    """Examples in the test split, known once a runner has loaded it."""


class EvaluationResult(SQLModel, table=True):
    """One test example answered by the evaluated model and scored."""

    __tablename__ = "evaluation_results"
    __table_args__ = (Index("ix_evaluation_results_score", "evaluation_id", "rubric_score"),)

    evaluation_id: str = Field(
        foreign_key="evaluations.id", ondelete="CASCADE", primary_key=True, max_length=40
    )
    position: int = Field(primary_key=True)
    """The example's position in its dataset."""
    capture_id: str = Field(max_length=40)
    prompt_hash: str = Field(max_length=64)
    candidate_answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    teacher_answer: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    rubric_score: int | None = None
    """1-5 from the judge; None when the model or the judge failed."""
    rubric_reason: str | None = Field(default=None, sa_column=Column(Text))
    pairwise_outcome: str | None = Field(default=None, max_length=8)
    """win, tie or loss of the evaluated model against the teacher."""
    pairwise_position: str | None = Field(default=None, max_length=1)
    """Where the evaluated model's answer was shown to the judge: A or B."""
    pairwise_reason: str | None = Field(default=None, sa_column=Column(Text))
    checks: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))
    """Deterministic checks: name -> true/false (or a figure), only those that apply."""
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text))
    """Why the evaluated model gave no answer."""
    judge_error: str | None = Field(default=None, sa_column=Column(Text))
    """Why a verdict is missing (unparseable, out of range, judge call failed)."""
