"""Tables of distillation cycles and of leases.

A cycle row is the whole state of one pass of collect → export → train → evaluate → promote:
a process that dies mid-step leaves a row from which any process can carry on. A lease names
the one process that does a kind of work (running cycles) while it keeps renewing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from storage._models import JSONType, UTCDateTime, utcnow

OPEN_CYCLE_STATES = ("collecting", "exporting", "training", "evaluating", "promoting")
TERMINAL_CYCLE_STATES = ("done", "failed", "cancelled")
_OPEN = ", ".join(f"'{state}'" for state in OPEN_CYCLE_STATES)


class Cycle(SQLModel, table=True):
    """One distillation cycle of an alias, persisted step by step."""

    __tablename__ = "cycles"
    __table_args__ = (
        Index("ix_cycles_alias", "alias", "id"),
        Index("ix_cycles_state", "state", "id"),
        # The database itself refuses a second open cycle of an alias, whichever replica asks.
        Index(
            "ux_cycles_one_open_per_alias",
            "alias",
            unique=True,
            sqlite_where=text(f"state IN ({_OPEN})"),
            postgresql_where=text(f"state IN ({_OPEN})"),
        ),
    )

    # Time-ordered, so listing by id lists by start.
    id: str = Field(primary_key=True, max_length=40)
    alias: str = Field(max_length=200)
    state: str = Field(default="collecting", max_length=16)
    """collecting, exporting, training, evaluating, promoting; then done, failed or cancelled."""
    trigger: str = Field(max_length=16)
    """manual, threshold (enough new approved examples) or schedule."""
    actor: str = Field(max_length=200)
    """Who started it: the admin, or ``stillroom`` for a trigger."""
    reason: str | None = Field(default=None, sa_column=Column(Text))
    """Why it failed or was cancelled, in plain words."""
    policy: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    """The alias's cycle policy as it was at the start: a later config change does not move a
    running cycle."""
    collected_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    """Approved captures up to this moment make the dataset; the next cycle counts new ones
    from here."""
    dataset_id: str | None = Field(default=None, max_length=40)
    training_job_id: str | None = Field(default=None, max_length=40)
    student_model: str | None = Field(default=None, max_length=400)
    evaluation_id: str | None = Field(default=None, max_length=40)
    base_evaluation_id: str | None = Field(default=None, max_length=40)
    gate: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    """The gate's decision: passed, reasons, figures."""
    promotion_id: str | None = Field(default=None, max_length=40)
    steps: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONType, nullable=False)
    )
    """One entry per step: step, state, started_at, finished_at, detail."""
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    finished_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))


class Lease(SQLModel, table=True):
    """Held by one process until ``until``; renewing it keeps it."""

    __tablename__ = "leases"

    name: str = Field(primary_key=True, max_length=100)
    owner: str = Field(max_length=200)
    until: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    acquired_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
