"""Data access for datasets: the capture reads a build needs, and the frozen snapshots.

Builds read captures in two passes: light columns for the whole selection (to skip failures and
pick one capture per duplicate group without loading a body), then bodies in batches of ids.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    Row,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    func,
    not_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from storage._engine import json_text
from storage._filters import CaptureFilter, filter_clauses
from storage._models import Capture, CaptureEdit, Dataset, DatasetExample, Feedback

_CAPTURES: Any = Capture.__table__  # type: ignore[attr-defined]
_EXAMPLES: Any = DatasetExample.__table__  # type: ignore[attr-defined]

CANDIDATE_COLUMNS = (
    "id",
    "created_at",
    "status_code",
    "error_kind",
    "abandoned",
    "error",
    "review_status",
    "rating",
    "prompt_hash",
)
"""What deciding eligibility and duplicates needs: no request or response body."""


_CHUNK = 1000
"""Most values in one ``IN``."""


def new_dataset_id() -> str:
    """Time-ordered, so listing by id lists by creation."""
    return f"ds_{time.time_ns():016x}{os.urandom(4).hex()}"


def _among(column: Any, values: Collection[str], session: Session) -> ColumnElement[bool]:
    """``column IN values``, the values sent as one JSON array that the database unpacks.

    A build asks about a thousand ids at a time. As a thousand placeholders, the statement
    was compiled again for every call (SQLite) or parsed from thousands of parameters
    (PostgreSQL); as a list parameter, the driver checked every element for quoting. One
    parameter keeps the statement cached and costs the driver nothing.
    """
    listed: Any = bindparam("among", orjson.dumps(list(values)).decode(), unique=True)
    if session.get_bind().dialect.name == "postgresql":
        elements = select(func.jsonb_array_elements_text(cast(listed, JSONB))).scalar_subquery()
        return column == any_(func.array(elements))  # type: ignore[no-any-return]
    each = func.json_each(listed).table_valued("value")
    return column.in_(select(each.c.value))  # type: ignore[no-any-return]


def _answered() -> Any:
    c = _CAPTURES.c
    return and_(
        c.status_code >= 200,
        c.status_code < 300,
        c.error_kind.is_(None),
        not_(c.abandoned),
    )


def select_dataset_candidates(capture_filter: CaptureFilter, *, session: Session) -> list[Row[Any]]:
    """The light columns of every capture the filter selects, oldest first."""
    dialect = session.get_bind().dialect.name
    stmt = (
        select(*(_CAPTURES.c[name] for name in CANDIDATE_COLUMNS))
        .where(*filter_clauses(capture_filter, dialect))
        .order_by(_CAPTURES.c.id)
    )
    return list(session.execute(stmt))


def _response(session: Session, answers_only: bool) -> Any:
    """The response column; with ``answers_only``, on PostgreSQL, a chat completion's
    ``object`` and ``choices`` only: the server encodes every JSONB value it sends as text,
    and the rest of a completion (ids, usage, fingerprints) is half of it."""
    c = _CAPTURES.c
    if not answers_only or session.get_bind().dialect.name != "postgresql":
        return c.response
    completion = c.response["object"].as_string() == "chat.completion"
    answer = func.jsonb_build_object(
        "object", c.response["object"], "choices", c.response["choices"], type_=JSONB
    )
    return case((completion, answer), else_=c.response).label("response")


def load_capture_bodies(
    ids: Collection[str], *, session: Session, answers_only: bool = False
) -> dict[str, tuple[Any, Any]]:
    """capture id -> (request, response); the response cut to its answer (``_response``)."""
    if not ids:
        return {}
    c = _CAPTURES.c
    response = _response(session, answers_only)
    rows = session.execute(select(c.id, c.request, response).where(_among(c.id, ids, session)))
    return {row.id: (row.request, row.response) for row in rows}


def newest_corrections(ids: Collection[str], *, session: Session) -> dict[str, dict[str, Any]]:
    """capture id -> the newest corrected answer end users sent as feedback."""
    if not ids:
        return {}
    f: Any = Feedback.__table__  # type: ignore[attr-defined]
    stmt = (
        select(f.c.capture_id, f.c.corrected)
        .where(_among(f.c.capture_id, ids, session))
        .order_by(f.c.created_at, f.c.id)
    )
    return {
        capture_id: corrected
        for capture_id, corrected in session.execute(stmt)
        if capture_id is not None and isinstance(corrected, dict)
    }


def answers_for_prompts(
    hashes: Collection[str],
    *,
    session: Session,
    feedback: Sequence[str] | None = None,
    include_rejected: bool = False,
    answers_only: bool = False,
) -> list[Row[Any]]:
    """Answered captures of these prompts, oldest first: id, prompt_hash, feedback, created_at,
    response (cut to its answer with ``answers_only``), and whether a reviewer edited the
    answer. With ``feedback``, only those with that feedback; rejected ones only with
    ``include_rejected``."""
    if not hashes:
        return []
    c = _CAPTURES.c
    edited = (
        select(func.count())
        .select_from(CaptureEdit)
        .where(col(CaptureEdit.capture_id) == c.id)
        .scalar_subquery()
    )
    stmt = select(
        c.id,
        c.prompt_hash,
        c.feedback,
        c.created_at,
        _response(session, answers_only),
        (edited > 0).label("edited"),
    ).where(_answered())
    if not include_rejected:
        stmt = stmt.where(c.review_status != "rejected")
    if feedback is not None:
        stmt = stmt.where(c.feedback.in_(list(feedback)))
    found = session.execute(stmt.where(_among(c.prompt_hash, hashes, session)))
    return sorted(found, key=lambda row: row.id)


def newest_edits(ids: Collection[str], *, session: Session) -> dict[str, dict[str, Any]]:
    """capture id -> the message of its newest edit, for the captures that have one."""
    if not ids:
        return {}
    e: Any = CaptureEdit.__table__  # type: ignore[attr-defined]
    stmt = (
        select(e.c.capture_id, e.c.message)
        .where(_among(e.c.capture_id, ids, session))
        .order_by(e.c.created_at, e.c.id)
    )
    # Later rows overwrite earlier ones: the newest edit wins.
    return {capture_id: message for capture_id, message in session.execute(stmt)}


def contested_prompts(*, session: Session) -> set[str]:
    """Prompts answered more than once with both positive and negative feedback: the makings
    of preference pairs."""
    c = _CAPTURES.c
    stmt = (
        select(c.prompt_hash)
        .where(c.feedback.in_(["positive", "negative"]), c.prompt_hash.is_not(None), _answered())
        .group_by(c.prompt_hash)
        .having(func.count(func.distinct(c.feedback)) == 2)
    )
    return set(session.execute(stmt).scalars())


def next_dataset_version(name: str, *, session: Session) -> int:
    stmt = select(func.max(Dataset.version)).where(col(Dataset.name) == name)
    latest = session.execute(stmt).scalar_one_or_none()
    return 1 if latest is None else int(latest) + 1


def insert_dataset(dataset: Dataset, *, session: Session) -> Dataset:
    session.add(dataset)
    session.flush()
    return dataset


_EXAMPLE_COLUMNS = ("dataset_id", "capture_id", "position", "split", "prompt_hash", "example")


def insert_dataset_examples(rows: Sequence[Mapping[str, Any]], *, session: Session) -> None:
    insert_encoded_dataset_examples(
        [{**row, "example": json_text(row["example"])} for row in rows], session=session
    )


_INSERT_ENCODED = (
    "INSERT INTO dataset_examples (dataset_id, capture_id, position, split, prompt_hash, example)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def insert_encoded_dataset_examples(rows: Sequence[Mapping[str, Any]], *, session: Session) -> None:
    """``insert_dataset_examples`` of rows whose ``example`` is already its JSON text
    (``json_text``), encoded where the build read it."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        values = [tuple(row[name] for name in _EXAMPLE_COLUMNS) for row in rows]
        session.connection().exec_driver_sql(_INSERT_ENCODED, values)
        return
    # COPY inside the session's transaction: a tenth of the time of row-by-row inserts.
    columns = ", ".join(_EXAMPLE_COLUMNS)
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY dataset_examples ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([row[name] for name in _EXAMPLE_COLUMNS])


def delete_dataset_examples(
    dataset_id: str, capture_ids: Iterable[str], *, session: Session
) -> None:
    ids = list(capture_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        session.execute(
            delete(_EXAMPLES).where(
                _EXAMPLES.c.dataset_id == dataset_id, _among(_EXAMPLES.c.capture_id, chunk, session)
            )
        )


def discard_dataset_examples(dataset_id: str, *, session: Session, limit: int = 1000) -> int:
    """Delete up to ``limit`` examples of a dataset whose build failed; returns how many, so
    a caller deletes a large one in short transactions."""
    e = _EXAMPLES.c
    some = select(e.capture_id).where(e.dataset_id == dataset_id).limit(limit)
    result = session.execute(
        delete(_EXAMPLES).where(e.dataset_id == dataset_id, e.capture_id.in_(some))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def load_dataset_examples(
    dataset_id: str, capture_ids: Collection[str], *, session: Session
) -> dict[str, dict[str, Any]]:
    """capture id -> stored example, for these captures of a dataset."""
    if not capture_ids:
        return {}
    e = _EXAMPLES.c
    stmt = select(e.capture_id, e.example).where(
        e.dataset_id == dataset_id, _among(e.capture_id, capture_ids, session)
    )
    return {row.capture_id: row.example for row in session.execute(stmt)}


def update_dataset_example(
    dataset_id: str, capture_id: str, example: Mapping[str, Any], *, session: Session
) -> None:
    """Rewrite one example while its dataset is being built (a dataset is frozen after)."""
    e = _EXAMPLES.c
    session.execute(
        update(_EXAMPLES)
        .where(e.dataset_id == dataset_id, e.capture_id == capture_id)
        .values(example=dict(example))
    )


def get_dataset(dataset_id: str, *, session: Session) -> Dataset | None:
    return session.get(Dataset, dataset_id)


def list_datasets(*, session: Session, name: str | None = None) -> list[Dataset]:
    """Newest first."""
    stmt = select(Dataset)
    if name is not None:
        stmt = stmt.where(col(Dataset.name) == name)
    return list(session.execute(stmt.order_by(col(Dataset.id).desc())).scalars())


def delete_dataset(dataset: Dataset, *, session: Session) -> None:
    # SQLite enforces no foreign keys here, so the cascade is spelled out.
    session.execute(delete(_EXAMPLES).where(_EXAMPLES.c.dataset_id == dataset.id))
    session.delete(dataset)
    session.flush()


def read_examples_page(
    dataset_id: str, split: str, *, session: Session, after_position: int = -1, limit: int = 1000
) -> list[Row[Any]]:
    """One page of a split in position order: capture_id, position, prompt_hash, example.

    Keyset paging on (dataset_id, split, position) follows the index, so every page of a large
    dataset costs the same.
    """
    e = _EXAMPLES.c
    stmt = (
        select(e.capture_id, e.position, e.prompt_hash, e.example)
        .where(e.dataset_id == dataset_id, e.split == split, e.position > after_position)
        .order_by(e.position)
        .limit(limit)
    )
    return list(session.execute(stmt))


def duplicate_groups(
    capture_filter: CaptureFilter, *, session: Session, limit: int = 50, offset: int = 0
) -> tuple[list[Row[Any]], int]:
    """Prompts the filter selects more than once, largest groups first: (prompt_hash, size)
    rows for one page, and how many such groups there are."""
    dialect = session.get_bind().dialect.name
    c = _CAPTURES.c
    grouped = (
        select(c.prompt_hash, func.count().label("size"), func.max(c.id).label("newest"))
        .where(c.prompt_hash.is_not(None), *filter_clauses(capture_filter, dialect))
        .group_by(c.prompt_hash)
        .having(func.count() > 1)
    )
    total = session.execute(select(func.count()).select_from(grouped.subquery())).scalar_one()
    page = grouped.order_by(func.count().desc(), func.max(c.id).desc()).limit(limit).offset(offset)
    return list(session.execute(page)), int(total)


def duplicate_group_members(
    capture_filter: CaptureFilter, hashes: Collection[str], *, session: Session
) -> list[Row[Any]]:
    """The light columns of the selected captures of these prompts, oldest first."""
    if not hashes:
        return []
    dialect = session.get_bind().dialect.name
    stmt = (
        select(*(_CAPTURES.c[name] for name in CANDIDATE_COLUMNS))
        .where(
            _among(_CAPTURES.c.prompt_hash, hashes, session),
            *filter_clauses(capture_filter, dialect),
        )
        .order_by(_CAPTURES.c.id)
    )
    return list(session.execute(stmt))
