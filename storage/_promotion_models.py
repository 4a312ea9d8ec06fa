"""The promotions table: one gated, reversible change of an alias from teacher to student.

A promotion is open while it is a canary; it ends full (the student serves everything), rolled
back (the online signals regressed) or aborted (by hand, or because the alias was changed
under it). Every alias change it makes is an ordinary alias version with its own history
event; this row ties those versions together and says why it ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, text
from sqlmodel import Field, SQLModel

from storage._models import JSONType, UTCDateTime, utcnow

PROMOTION_STAGES = ("canary", "full", "rolled_back", "aborted")
OPEN_STAGE = "canary"


class Promotion(SQLModel, table=True):
    """One promotion of a student model on an alias, canary first unless asked otherwise."""

    __tablename__ = "promotions"
    __table_args__ = (
        Index("ix_promotions_alias", "alias", "id"),
        # The database itself refuses a second open canary on an alias, whichever replica asks.
        Index(
            "ux_promotions_one_canary_per_alias",
            "alias",
            unique=True,
            sqlite_where=text(f"stage = '{OPEN_STAGE}'"),
            postgresql_where=text(f"stage = '{OPEN_STAGE}'"),
        ),
    )

    # Time-ordered, so listing by id lists by start.
    id: str = Field(primary_key=True, max_length=40)
    alias: str = Field(max_length=200)
    model: str = Field(max_length=200)
    """The student being promoted."""
    upstream: str = Field(default="default", max_length=100)
    stage: str = Field(default=OPEN_STAGE, max_length=16)
    """canary, then full, rolled_back or aborted."""
    canary_percent: float
    """Share of the alias's traffic the student got during the canary; 0 when it went
    straight to full."""
    policy: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    """The canary policy as it was at the start: a later config change does not move a
    running canary."""
    from_version: int
    """The alias version before the promotion: what a rollback or an abort returns to."""
    canary_version: int | None = None
    full_version: int | None = None
    actor: str = Field(max_length=200)
    """Who started it."""
    reason: str | None = Field(default=None, sa_column=Column(Text))
    """Why it was started."""
    cycle_id: str | None = Field(default=None, max_length=40)
    started_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    decided_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    decided_by: str | None = Field(default=None, max_length=200)
    """Who ended the canary: ``stillroom`` for the automatic decision, else the person."""
    outcome: str | None = Field(default=None, sa_column=Column(Text))
    """How it ended, in plain words with the figures that decided it."""
    signals: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    """The online signals last measured: student and teacher requests, errors, negative
    feedback and their rates since the start."""
    checked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
    """When the signals were last measured."""
