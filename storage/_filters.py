"""A filter over captures, as data: the admin API, the CLI and datasets share it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    and_,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from storage._models import Capture, CaptureEdit
from storage._search import fold

TRIGRAM = 3
"""The shortest search the trigram indexes answer; a shorter one reads every row."""

ReviewStatus = Literal["pending", "approved", "rejected"]
FeedbackKind = Literal["positive", "negative", "neutral", "none"]


class CaptureFilter(BaseModel):
    """Every field narrows the selection; an empty filter selects every capture."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: list[ReviewStatus] | None = None
    model: list[str] | None = None
    """Requested or served model."""
    alias: list[str] | None = None
    tags: list[str] | None = None
    """Captures carrying every one of these curation tags."""
    metadata: dict[str, str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finish_reason: list[str] | None = None
    has_tool_calls: bool | None = None
    """True: some assistant turn called a tool (``tool_calls`` or a legacy ``function_call``),
    in the request's messages or in the answer; False: none did."""
    error: bool | None = None
    """True: failed (non-2xx, or no upstream answer); False: answered with 2xx."""
    feedback: list[FeedbackKind] | None = None
    stream: bool | None = None
    min_prompt_tokens: int | None = Field(default=None, ge=0)
    max_prompt_tokens: int | None = Field(default=None, ge=0)
    min_completion_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    min_total_tokens: int | None = Field(default=None, ge=0)
    max_total_tokens: int | None = Field(default=None, ge=0)
    search: str | None = Field(default=None, min_length=1, max_length=500)
    """Text anywhere in what people wrote or the model answered, case-insensitive."""
    api_key_id: str | None = None
    edited: bool | None = None
    """True: a reviewer or an end user's correction replaced the answer; False: never edited."""


def filter_clauses(capture_filter: CaptureFilter, dialect: str) -> list[ColumnElement[bool]]:
    """SQL conditions for ``capture_filter`` on the captures table, for ``dialect``."""
    f = capture_filter
    table: Any = Capture.__table__  # type: ignore[attr-defined]
    c = table.c
    clauses: list[ColumnElement[bool]] = []
    if f.status:
        clauses.append(c.review_status.in_(f.status))
    if f.model:
        clauses.append(or_(c.requested_model.in_(f.model), c.served_model.in_(f.model)))
    if f.alias:
        clauses.append(c.alias.in_(f.alias))
    for tag in f.tags or []:
        clauses.append(_json_array_contains(c.tags, tag, dialect))
    if f.metadata and dialect == "postgresql":
        # Containment has statistics and a GIN index; ->> equality has neither, and a wrong
        # guess of its selectivity made the planner sort a sequential scan.
        clauses.append(type_coerce(c.metadata, JSONB).contains(dict(f.metadata)))
    elif f.metadata:
        clauses.extend(c.metadata[key].as_string() == value for key, value in f.metadata.items())
    if f.created_after is not None:
        clauses.append(c.created_at >= f.created_after)
    if f.created_before is not None:
        clauses.append(c.created_at < f.created_before)
        # Ids begin with their capture's start time in nanoseconds, so the same bound on the id
        # lets a newest-first page start inside the window instead of walking back to it.
        # A second of slack covers the id being taken a moment before the timestamp.
        before = f.created_before
        if before.tzinfo is None:
            before = before.replace(tzinfo=UTC)
        ceiling_ns = int((before.timestamp() + 1) * 1_000_000_000)
        if ceiling_ns > 0:
            clauses.append(c.id < f"cap_{ceiling_ns:016x}")
    if f.finish_reason:
        clauses.append(c.finish_reason.in_(f.finish_reason))
    if f.has_tool_calls is not None:
        clauses.append(c.has_tool_calls.is_(true() if f.has_tool_calls else false()))
    if f.error is not None:
        ok = and_(c.status_code >= 200, c.status_code < 300, c.error_kind.is_(None))
        clauses.append(not_(ok) if f.error else ok)
    if f.feedback:
        kinds = [k for k in f.feedback if k != "none"]
        options = [c.feedback.in_(kinds)] if kinds else []
        if "none" in f.feedback:
            options.append(c.feedback.is_(None))
        clauses.append(or_(*options))
    if f.stream is not None:
        clauses.append(c.stream.is_(true() if f.stream else false()))
    bounds = (
        (c.prompt_tokens, f.min_prompt_tokens, f.max_prompt_tokens),
        (c.completion_tokens, f.min_completion_tokens, f.max_completion_tokens),
        (c.total_tokens, f.min_total_tokens, f.max_total_tokens),
    )
    for column, low, high in bounds:
        if low is not None:
            clauses.append(column >= low)
        if high is not None:
            clauses.append(column <= high)
    if f.search:
        clauses.append(_search_clause(f.search, dialect))
    if f.api_key_id is not None:
        clauses.append(c.api_key_id == f.api_key_id)
    if f.edited is not None:
        edits: Any = CaptureEdit.__table__  # type: ignore[attr-defined]
        edited = exists(select(literal(1)).where(edits.c.capture_id == c.id))
        clauses.append(edited if f.edited else not_(edited))
    return clauses


def _search_clause(words: str, dialect: str) -> ColumnElement[bool]:
    # Both indexes answer a substring LIKE of three characters or more (storage._search); the
    # column holds folded text, so the folded words are compared byte for byte.
    words, escaped = _search_words(words)
    column = Capture.__table__.c.search_text  # type: ignore[attr-defined]
    if dialect == "postgresql" or len(words) < TRIGRAM or escaped != words:
        # FTS5 uses its index only for a LIKE without ESCAPE, so on SQLite words holding a
        # wildcard character, or too short for a trigram, read every row.
        return column.like(f"%{escaped}%", escape="\\")  # type: ignore[no-any-return]
    matches = text("SELECT rowid FROM captures_search WHERE search_text LIKE :pattern").bindparams(
        pattern=f"%{words}%"
    )
    return literal_column("captures.rowid").in_(matches)


def sqlite_scan_clause(words: str) -> ColumnElement[bool] | None:
    """On SQLite, the condition that matches exactly what the search index would for
    ``words``, read from each row's text instead; None for words the index does not answer.

    FTS5 checks a ``LIKE`` against the text as SQLite's ``LIKE`` does, so the two find the
    same captures."""
    words, escaped = _search_words(words)
    if len(words) < TRIGRAM or escaped != words:
        return None
    column = Capture.__table__.c.search_text  # type: ignore[attr-defined]
    return column.like(f"%{words}%")  # type: ignore[no-any-return]


def _search_words(words: str) -> tuple[str, str]:
    """The words as the column holds text (folded, no NUL), and escaped for a ``LIKE``."""
    words = fold(words.replace("\x00", ""))
    return words, words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json_array_contains(column: Any, value: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        return type_coerce(column, JSONB).contains([value])
    each = func.json_each(column).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == value))
