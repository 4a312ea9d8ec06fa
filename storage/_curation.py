"""Data access for curation: pages of capture summaries, review state, edits, feedback rows.

List queries read summary columns only, never the request or response bodies, and page by id
(time-ordered), so the first page under a filter is an index range scan, not a sort.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Literal

from sqlalchemy import (
    Select,
    bindparam,
    delete,
    false,
    func,
    literal_column,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from storage._captures import SUMMARY_COLUMNS, Order
from storage._filters import (
    CaptureFilter,
    ReviewStatus,
    _json_array_contains,
    filter_clauses,
    sqlite_scan_clause,
)
from storage._models import Capture, CaptureEdit, Feedback

BulkAction = Literal["approve", "reject", "pending", "tag", "untag", "delete"]

STATUS_OF_ACTION: dict[str, ReviewStatus] = {
    "approve": "approved",
    "reject": "rejected",
    "pending": "pending",
}

"""What a list shows of a capture: everything but the bodies."""


def _table() -> Any:
    return Capture.__table__  # type: ignore[attr-defined]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def capture_page_statement(
    capture_filter: CaptureFilter,
    dialect: str,
    *,
    cursor: str | None = None,
    limit: int = 50,
    order: Order = "desc",
) -> Select[Any]:
    """One page of summaries after ``cursor``, plus one row that tells whether more follow."""
    c = _table().c
    stmt = select(*(c[name] for name in SUMMARY_COLUMNS)).where(
        *filter_clauses(capture_filter, dialect)
    )
    if cursor is not None:
        stmt = stmt.where(c.id < cursor if order == "desc" else c.id > cursor)
    ordering = c.id.desc() if order == "desc" else c.id.asc()
    return stmt.order_by(ordering).limit(limit + 1)


def list_capture_page(
    capture_filter: CaptureFilter,
    *,
    session: Session,
    cursor: str | None = None,
    limit: int = 50,
    order: Order = "desc",
) -> tuple[list[dict[str, Any]], str | None]:
    """Summaries of one page and the cursor of the next (None on the last page)."""
    dialect = _dialect(session)
    rows = None
    if dialect == "sqlite" and capture_filter.search:
        rows = _newest_matches(capture_filter, session, cursor=cursor, limit=limit, order=order)
    if rows is None:
        stmt = capture_page_statement(
            capture_filter, dialect, cursor=cursor, limit=limit, order=order
        )
        rows = [dict(row._mapping) for row in session.execute(stmt)]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, str(rows[-1]["id"])


SEARCH_WINDOW = 2000
"""On SQLite, how many captures next in the page's order a search reads first, before it
decides between reading on and asking the search index."""


def _newest_matches(
    capture_filter: CaptureFilter,
    session: Session,
    *,
    cursor: str | None,
    limit: int,
    order: Order,
) -> list[dict[str, Any]] | None:
    """A search's page read from the text of the captures next in order; None when the
    search index should say instead.

    SQLite's search index checks every match against its text before the page is sorted,
    so a word in most captures reads most of the table. Reading the captures in the page's
    order instead stops once the page is full, and a full page is exact: every match past
    the captures read comes later in the order. It costs about what the index does a match,
    so it reads on only while that is fewer captures than the index would check: how common
    the word is in the first ``SEARCH_WINDOW`` says how far a page is."""
    assert capture_filter.search is not None
    scan = sqlite_scan_clause(capture_filter.search)
    if scan is None:
        return None
    others = capture_filter.model_copy(update={"search": None})
    rows = _scan_page(others, scan, session, SEARCH_WINDOW, cursor=cursor, limit=limit, order=order)
    if len(rows) > limit:
        return rows
    if not rows:
        return None
    # Captures to read for a full page, with room to spare; matches the index would check.
    wanted = (limit + 1) * SEARCH_WINDOW * 3 // (2 * len(rows))
    captures = (
        session.execute(select(func.max(literal_column("rowid"))).select_from(_table())).scalar()
        or 0
    )
    if wanted >= captures * len(rows) // SEARCH_WINDOW:
        return None
    rows = _scan_page(others, scan, session, wanted, cursor=cursor, limit=limit, order=order)
    return rows if len(rows) > limit else None


def _scan_page(
    others: CaptureFilter,
    scan: ColumnElement[bool],
    session: Session,
    window: int,
    *,
    cursor: str | None,
    limit: int,
    order: Order,
) -> list[dict[str, Any]]:
    """The page's matches of ``scan`` among the next ``window`` captures ``others`` select."""
    c = _table().c
    ordering = c.id.desc() if order == "desc" else c.id.asc()
    selected = select(c.id).where(*filter_clauses(others, "sqlite"))
    if cursor is not None:
        selected = selected.where(c.id < cursor if order == "desc" else c.id > cursor)
    stmt = (
        select(*(c[name] for name in SUMMARY_COLUMNS))
        .where(c.id.in_(selected.order_by(ordering).limit(window)), scan)
        .order_by(ordering)
        .limit(limit + 1)
    )
    return [dict(row._mapping) for row in session.execute(stmt)]


def conversation_ends(
    capture_ids: Collection[str], *, session: Session
) -> dict[str, tuple[Any, Any]]:
    """Each capture's request messages and its first choice's message, as stored; for a
    Responses capture, ``{"instructions", "input"}`` of its request and ``{"output"}`` of its
    response instead (``api_of_ends`` tells them apart).

    Only these parts of the bodies leave the database, for a page's rows and no others.
    """
    if not capture_ids:
        return {}
    c = _table().c
    stmt = select(
        c.id,
        c.api,
        c.request[("messages",)],
        c.response[("choices", 0, "message")],
        c.request[("instructions",)],
        c.request[("input",)],
        c.response[("output",)],
    ).where(c.id.in_(list(capture_ids)))
    ends: dict[str, tuple[Any, Any]] = {}
    for row in session.execute(stmt):
        if row[1] == "responses":
            ends[str(row[0])] = ({"instructions": row[4], "input": row[5]}, {"output": row[6]})
        else:
            ends[str(row[0])] = (row[2], row[3])
    return ends


def existing_capture_ids(capture_ids: Collection[str], *, session: Session) -> set[str]:
    c = _table().c
    found = session.execute(select(c.id).where(c.id.in_(list(capture_ids))))
    return {str(row[0]) for row in found}


def set_review_status(
    capture_ids: Collection[str], status: ReviewStatus, *, session: Session
) -> int:
    """Set the status; returns how many captures it changed (those already there are not)."""
    if not capture_ids:
        return 0
    c = _table().c
    stmt = (
        update(_table())
        .where(c.id.in_(list(capture_ids)), c.review_status != status)
        .values(review_status=status)
    )
    return int(getattr(session.execute(stmt), "rowcount", 0) or 0)


def replace_tags(rows: Iterable[tuple[str, list[str]]], *, session: Session) -> None:
    """Write each capture's whole tag list, as many rows in one statement."""
    params = [{"row_id": capture_id, "new_tags": tags} for capture_id, tags in rows]
    if not params:
        return
    c = _table().c
    stmt = update(_table()).where(c.id == bindparam("row_id")).values(tags=bindparam("new_tags"))
    session.execute(stmt.execution_options(synchronize_session=False), params)


def delete_captures(capture_ids: Collection[str], *, session: Session) -> int:
    """Delete captures with their edits and feedback (SQLite does not cascade by itself)."""
    if not capture_ids:
        return 0
    ids = list(capture_ids)
    session.execute(delete(CaptureEdit).where(col(CaptureEdit.capture_id).in_(ids)))
    session.execute(delete(Feedback).where(col(Feedback.capture_id).in_(ids)))
    result = session.execute(delete(_table()).where(_table().c.id.in_(ids)))
    session.expire_all()
    return int(getattr(result, "rowcount", 0) or 0)


def _would_change(action: BulkAction, tags: Sequence[str], dialect: str) -> ColumnElement[bool]:
    """Rows that ``action`` would really change, so a count is a true preview."""
    c = _table().c
    clause: ColumnElement[bool]
    if action in STATUS_OF_ACTION:
        clause = c.review_status != STATUS_OF_ACTION[action]
    elif action == "tag":
        clause = or_(false(), *(not_(_json_array_contains(c.tags, t, dialect)) for t in tags))
    elif action == "untag":
        clause = or_(false(), *(_json_array_contains(c.tags, t, dialect) for t in tags))
    else:
        clause = c.id.is_not(None)
    return clause


def count_bulk_candidates(
    capture_filter: CaptureFilter,
    action: BulkAction,
    *,
    tags: Sequence[str] = (),
    session: Session,
) -> int:
    dialect = _dialect(session)
    clauses = [*filter_clauses(capture_filter, dialect), _would_change(action, tags, dialect)]
    stmt = select(func.count()).select_from(_table()).where(*clauses)
    return int(session.execute(stmt).scalar_one())


def next_bulk_batch(
    capture_filter: CaptureFilter,
    action: BulkAction,
    *,
    tags: Sequence[str] = (),
    after: str | None,
    limit: int,
    session: Session,
) -> list[tuple[str, list[str]]]:
    """(id, tags) of the next captures ``action`` would change, oldest first after ``after``."""
    dialect = _dialect(session)
    c = _table().c
    stmt = select(c.id, c.tags).where(
        *filter_clauses(capture_filter, dialect), _would_change(action, tags, dialect)
    )
    if after is not None:
        stmt = stmt.where(c.id > after)
    stmt = stmt.order_by(c.id.asc()).limit(limit)
    return [(str(row[0]), list(row[1] or [])) for row in session.execute(stmt)]


def add_capture_edit(
    capture_id: str,
    message: dict[str, Any],
    *,
    author: str,
    reason: str | None,
    session: Session,
) -> CaptureEdit:
    edit = CaptureEdit(capture_id=capture_id, message=message, author=author, reason=reason)
    session.add(edit)
    session.flush()
    return edit


def list_capture_edits(capture_id: str, *, session: Session) -> list[CaptureEdit]:
    """Oldest first: the history of corrections; the last one is the current answer."""
    stmt = (
        select(CaptureEdit)
        .where(col(CaptureEdit.capture_id) == capture_id)
        .order_by(col(CaptureEdit.id).asc())
    )
    return list(session.scalars(stmt))


def latest_edit_messages(
    capture_ids: Collection[str], *, session: Session
) -> dict[str, dict[str, Any]]:
    """The current corrected answer of each capture that has one."""
    if not capture_ids:
        return {}
    newest = (
        select(func.max(CaptureEdit.id))
        .where(col(CaptureEdit.capture_id).in_(list(capture_ids)))
        .group_by(col(CaptureEdit.capture_id))
    )
    stmt = select(CaptureEdit).where(col(CaptureEdit.id).in_(newest))
    return {edit.capture_id: edit.message for edit in session.scalars(stmt)}


def add_feedback(feedback: Feedback, *, session: Session) -> Feedback:
    session.add(feedback)
    session.flush()
    return feedback


def list_feedback(capture_id: str, *, session: Session) -> list[Feedback]:
    """Oldest first."""
    stmt = (
        select(Feedback)
        .where(col(Feedback.capture_id) == capture_id)
        .order_by(col(Feedback.id).asc())
    )
    return list(session.scalars(stmt))
