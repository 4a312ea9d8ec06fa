"""Tables of alias routing: the alias, its immutable versions, and its history.

An alias points at one current version; a change writes a new version and never edits an old
one, so rollback is a pointer move. Every change, rollback and deletion adds an event; the
highest event id is the route table's generation, which every replica polls to know when to
reload.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, DateTime, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage._models import JSONType, utcnow


class Alias(SQLModel, table=True):
    """A model name clients send, and the version of its targets that answers it."""

    __tablename__ = "aliases"

    name: str = Field(primary_key=True, max_length=200)
    current_version: int
    previous_version: int | None = None
    """The version that was current before the last change: what rollback returns to."""
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class AliasVersion(SQLModel, table=True):
    """One immutable configuration of an alias: weighted targets and the shadow rate."""

    __tablename__ = "alias_versions"
    __table_args__ = (UniqueConstraint("alias", "version", name="uq_alias_versions_alias_version"),)

    id: int | None = Field(default=None, primary_key=True)
    alias: str = Field(max_length=200, index=True)
    version: int
    targets: list[dict[str, Any]] = Field(sa_column=Column(JSONType, nullable=False))
    """``[{"upstream", "model", "weight", "role"}]``; role is teacher or student."""
    shadow_rate: float = 0.0
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    created_by: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=2000)


class AliasEvent(SQLModel, table=True):
    """Who did what to an alias, when and why; kept after the alias is deleted."""

    __tablename__ = "alias_events"

    id: int | None = Field(default=None, primary_key=True)
    alias: str = Field(max_length=200, index=True)
    action: str = Field(max_length=16)
    """create, update, promote, rollback or delete."""
    from_version: int | None = None
    to_version: int | None = None
    actor: str = Field(max_length=200)
    reason: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
