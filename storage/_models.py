"""Table models. API schemas live beside the code that serves them, never here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# None is SQL NULL, so "IS NULL" means what it says.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back aware, in UTC: SQLite drops the zone it was given."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return as_utc(value)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` with UTC as its zone when it has none."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Capture(SQLModel, table=True):
    """One chat-completion exchange as it passed through the proxy."""

    __tablename__ = "captures"
    __table_args__ = (
        Index("ix_captures_key_id", "api_key_id", "id"),
        Index("ix_captures_model_id", "requested_model", "id"),
        Index("ix_captures_review_status_id", "review_status", "id"),
        Index("ix_captures_alias_id", "alias", "id"),
        # It carries what the overview sums, so that read never touches the bodies; SQLite,
        # without INCLUDE, has those columns after created_at in the key (migration 0010,
        # which also adds the partial ix_captures_shadow).
        Index(
            "ix_captures_created_at",
            "created_at",
            postgresql_include=[
                "alias",
                "served_model",
                "requested_model",
                "status_code",
                "error_kind",
                "review_status",
                "prompt_tokens",
                "completion_tokens",
            ],
        ),
        # Captures with feedback, few of them, for a build's contested prompts (migration
        # 0016; on SQLite the carried columns follow in the key).
        Index(
            "ix_captures_feedback",
            "prompt_hash",
            "feedback",
            postgresql_include=["status_code", "error_kind", "abandoned"],
            postgresql_where=text("feedback IS NOT NULL"),
            sqlite_where=text("feedback IS NOT NULL"),
        ),
    )

    # Time-ordered, so ordering by id is ordering by arrival and cursors stay cheap.
    id: str = Field(primary_key=True, max_length=40)
    completion_id: str | None = Field(default=None, index=True, max_length=200)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))

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

    # Curation.
    review_status: str = Field(default="pending", max_length=16)
    """pending, approved or rejected."""
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSONType, nullable=False))
    rating: int | None = None
    """1-5, set by a reviewer."""
    feedback: str | None = Field(default=None, max_length=16)
    """The latest end-user feedback: positive, negative or neutral."""
    prompt_hash: str | None = Field(default=None, max_length=64, index=True)
    """Stable hash of the normalised prompt and tools: duplicates share it; splits follow it."""
    has_tool_calls: bool = False
    search_text: str | None = Field(default=None, sa_column=Column(Text))
    """What people wrote and the model answered, indexed for search (``storage._search``)."""
    api: str = Field(default="chat", max_length=16, sa_column_kwargs={"server_default": "chat"})
    """Which API the exchange spoke: ``chat`` (chat completions) or ``responses``."""


class CaptureEdit(SQLModel, table=True):
    """A corrected assistant message, kept beside the original; the newest one counts."""

    __tablename__ = "capture_edits"

    id: int | None = Field(default=None, primary_key=True)
    capture_id: str = Field(
        foreign_key="captures.id", ondelete="CASCADE", index=True, max_length=40
    )
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    author: str = Field(default="admin", max_length=200)
    message: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    reason: str | None = Field(default=None, max_length=2000)


class Feedback(SQLModel, table=True):
    """End-user feedback on a completion, keyed by the completion id the client saw."""

    __tablename__ = "feedback"

    id: int | None = Field(default=None, primary_key=True)
    capture_id: str | None = Field(
        default=None, foreign_key="captures.id", ondelete="CASCADE", index=True, max_length=40
    )
    completion_id: str = Field(index=True, max_length=200)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    thumbs: int | None = None
    """+1 or -1."""
    score: float | None = None
    comment: str | None = Field(default=None, max_length=10_000)
    corrected: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONType))
    """A better assistant message, when the user gave one."""
    api_key_id: str | None = Field(default=None, max_length=64)


class Dataset(SQLModel, table=True):
    """An immutable, versioned snapshot of curated examples."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_datasets_name_version"),)

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200, index=True)
    version: int
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    filter: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    """The capture filter it was built from."""
    lineage: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONType, nullable=False)
    )
    """How it was built: rules, duplicate policy, redaction, stillroom version."""
    split: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    """Ratios for train / validation / test."""
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONType, nullable=False))


class DatasetExample(SQLModel, table=True):
    """One frozen example of a dataset: later edits to its capture never change it."""

    __tablename__ = "dataset_examples"
    __table_args__ = (Index("ix_dataset_examples_split", "dataset_id", "split", "position"),)

    dataset_id: str = Field(
        foreign_key="datasets.id", ondelete="CASCADE", primary_key=True, max_length=40
    )
    capture_id: str = Field(primary_key=True, max_length=40)
    position: int
    split: str = Field(max_length=16)
    prompt_hash: str = Field(max_length=64)
    example: dict[str, Any] = Field(sa_column=Column(JSONType, nullable=False))
    """The chat fine-tuning example: messages (answer appended), tools, functions, ..."""


class ApiKey(SQLModel, table=True):
    """A stillroom key: only its SHA-256 is kept, the secret is shown once."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    key_hash: str = Field(unique=True, max_length=64)
    prefix: str = Field(max_length=16)
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
