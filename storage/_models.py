"""Table models. API schemas live beside the code that serves them, never here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Capture(SQLModel, table=True):
    """One chat-completion exchange as it passed through the proxy."""

    __tablename__ = "captures"
    __table_args__ = (
        Index("ix_captures_key_id", "api_key_id", "id"),
        Index("ix_captures_model_id", "requested_model", "id"),
    )

    # Time-ordered, so ordering by id is ordering by arrival and cursors stay cheap.
    id: str = Field(primary_key=True, max_length=40)
    completion_id: str | None = Field(default=None, index=True, max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    request: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    response: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    status_code: int | None = None
    error: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    error_kind: str | None = Field(default=None, max_length=40)
    upstream_request_id: str | None = Field(default=None, max_length=200)

    requested_model: str | None = Field(default=None, max_length=200)
    alias: str | None = Field(default=None, max_length=200)
    served_model: str | None = Field(default=None, max_length=200)
    upstream: str = Field(default="default", max_length=100)

    ttfb_ms: float | None = None
    total_ms: float | None = None

    usage: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    finish_reason: str | None = Field(default=None, max_length=40)

    stream: bool = False
    abandoned: bool = False
    metadata_: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSONType, nullable=False)
    )
    store: bool | None = None
    user: str | None = Field(default=None, max_length=400)
    api_key_id: str | None = Field(default=None, max_length=64)


class ApiKey(SQLModel, table=True):
    """A stillroom key: only its SHA-256 is kept, the secret is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    key_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
