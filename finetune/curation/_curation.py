"""Curation: reading captures, reviewing them one by one or by filter, and end-user feedback.

Every function checks its whole input before it writes, so a refused call changes nothing.
An edit or a corrected answer is a new ``CaptureEdit`` beside the original response; the
newest edit is the capture's current answer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from finetune.curation._input import (
    CaptureNotFound,
    FeedbackInput,
    InvalidCurationInput,
    assistant_message,
)
from finetune.curation._previews import capture_previews, preview
from finetune.datasets._responses import answer_as_message, request_as_chat
from storage import (
    STATUS_OF_ACTION,
    BulkAction,
    Capture,
    CaptureEdit,
    CaptureFilter,
    Feedback,
    FeedbackKind,
    Order,
    ReviewStatus,
    add_capture_edit,
    add_feedback,
    count_bulk_candidates,
    existing_capture_ids,
    get_capture,
    get_capture_by_completion_id,
    list_capture_edits,
    list_capture_page,
    list_feedback,
    next_bulk_batch,
    replace_tags,
    session_scope,
    set_review_status,
)
from storage import (
    delete_captures as delete_capture_rows,
)

MAX_PAGE_SIZE = 500
BULK_BATCH_SIZE = 500
FEEDBACK_AUTHOR = "feedback"
"""The author of edits that come from end users' corrected answers."""
POSITIVE_SCORE = 0.7
NEGATIVE_SCORE = 0.3
"""Scores run from 0 to 1: at or above the first is positive, at or below the second negative."""


@dataclass(frozen=True, slots=True)
class CapturePage:
    items: list[dict[str, Any]]
    """Summaries: every column but the request and response bodies, and each capture's
    preview (``CapturePreview.fields``)."""
    next_cursor: str | None
    """Opaque; pass it back for the next page. None on the last page."""


def list_captures(
    capture_filter: CaptureFilter,
    *,
    session: Session,
    cursor: str | None = None,
    limit: int = 50,
    order: Order = "desc",
) -> CapturePage:
    """Newest first unless ``order="asc"``."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidCurationInput(
            f"'limit' must be between 1 and {MAX_PAGE_SIZE}.", param="limit", code="invalid_limit"
        )
    if cursor is not None and not 0 < len(cursor) <= 40:
        raise InvalidCurationInput("'cursor' is not a cursor this API gave.", param="cursor")
    items, next_cursor = list_capture_page(
        capture_filter, session=session, cursor=cursor, limit=limit, order=order
    )
    previews = capture_previews([str(item["id"]) for item in items], session=session)
    for item in items:
        found = previews.get(str(item["id"]))
        item.update(found.fields() if found is not None else _NO_PREVIEW)
    return CapturePage(items=items, next_cursor=next_cursor)


_NO_PREVIEW = preview(None, None, edited=False).fields()
"""For a capture deleted between the page and its previews."""


@dataclass(frozen=True, slots=True)
class CaptureDetail:
    capture: Capture
    edits: list[CaptureEdit]
    """Oldest first; the last is the current answer."""
    feedback: list[Feedback]
    """Oldest first."""

    @property
    def messages(self) -> list[Any]:
        """The conversation the client sent (a Responses request read as chat messages)."""
        if self.capture.api == "responses":
            return list(request_as_chat(self.capture.request)["messages"])
        messages = self.capture.request.get("messages")
        return list(messages) if isinstance(messages, list) else []

    @property
    def original_answer(self) -> dict[str, Any] | None:
        return original_answer(self.capture)

    @property
    def current_edit(self) -> CaptureEdit | None:
        return self.edits[-1] if self.edits else None

    @property
    def answer(self) -> dict[str, Any] | None:
        """What training uses: the newest edit, else the original."""
        edit = self.current_edit
        return edit.message if edit is not None else self.original_answer


def original_answer(capture: Capture) -> dict[str, Any] | None:
    """The first choice's assistant message as the upstream sent it, if it answered (for a
    Responses capture, the assistant message its output amounts to)."""
    if capture.api == "responses":
        return answer_as_message(capture.response)
    choices = (capture.response or {}).get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message
    return None


def _capture(capture_id: str, session: Session) -> Capture:
    capture = get_capture(capture_id, session=session)
    if capture is None:
        raise CaptureNotFound(
            f"No capture '{capture_id}'.", param="capture_id", code="capture_not_found"
        )
    return capture


def capture_detail(capture_id: str, *, session: Session) -> CaptureDetail:
    capture = _capture(capture_id, session)
    return CaptureDetail(
        capture=capture,
        edits=list_capture_edits(capture_id, session=session),
        feedback=list_feedback(capture_id, session=session),
    )


def _require_all(capture_ids: Collection[str], session: Session) -> None:
    missing = sorted(set(capture_ids) - existing_capture_ids(capture_ids, session=session))
    if missing:
        raise CaptureNotFound(
            f"No capture '{missing[0]}'.", param="capture_id", code="capture_not_found"
        )


def set_capture_status(
    capture_ids: Collection[str], status: ReviewStatus, *, session: Session
) -> int:
    """Approve, reject or reset to pending; returns how many changed. All ids must exist."""
    _require_all(capture_ids, session)
    return set_review_status(capture_ids, status, session=session)


def _checked_tags(tags: Sequence[str]) -> list[str]:
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > 100:
            raise InvalidCurationInput(
                "A tag is a non-blank string of at most 100 characters.",
                param="tags",
                code="invalid_tag",
            )
    return [tag.strip() for tag in tags]


def retag_capture(
    capture_id: str,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    session: Session,
) -> Capture:
    """Add then remove tags; a capture's tags stay unique and sorted."""
    added, removed = _checked_tags(add), set(_checked_tags(remove))
    capture = _capture(capture_id, session)
    # A new list, never the loaded one mutated: the JSON column only saves on reassignment.
    capture.tags = sorted((set(capture.tags) | set(added)) - removed)
    session.add(capture)
    session.flush()
    return capture


def rate_capture(capture_id: str, rating: int | None, *, session: Session) -> Capture:
    """A reviewer's 1-5 rating; None clears it."""
    if rating is not None and (
        isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5
    ):
        raise InvalidCurationInput(
            "'rating' must be an integer from 1 to 5.", param="rating", code="invalid_rating"
        )
    capture = _capture(capture_id, session)
    capture.rating = rating
    session.add(capture)
    session.flush()
    return capture


def edit_capture(
    capture_id: str,
    message: Any,
    *,
    author: str = "admin",
    reason: str | None = None,
    session: Session,
) -> CaptureEdit:
    """Store a corrected assistant message beside the original."""
    checked = assistant_message(message)
    if not author.strip() or len(author) > 200:
        raise InvalidCurationInput("'author' must be 1 to 200 characters.", param="author")
    if reason is not None and len(reason) > 2000:
        raise InvalidCurationInput("'reason' must be at most 2000 characters.", param="reason")
    _capture(capture_id, session)
    return add_capture_edit(capture_id, checked, author=author, reason=reason, session=session)


def delete_captures(capture_ids: Collection[str], *, session: Session) -> int:
    """Delete captures, their edits and feedback. All ids must exist."""
    _require_all(capture_ids, session)
    return delete_capture_rows(capture_ids, session=session)


def _bulk_tags(action: BulkAction, tags: Sequence[str]) -> list[str]:
    if action in ("tag", "untag"):
        if not tags:
            raise InvalidCurationInput(
                f"Bulk '{action}' needs at least one tag.", param="tags", code="invalid_tag"
            )
        return _checked_tags(tags)
    if tags:
        raise InvalidCurationInput(
            f"Bulk '{action}' takes no tags.", param="tags", code="invalid_tag"
        )
    return []


def bulk_preview(
    capture_filter: CaptureFilter,
    action: BulkAction,
    *,
    tags: Sequence[str] = (),
    session: Session,
) -> int:
    """How many captures ``action`` would change; changes nothing."""
    return count_bulk_candidates(
        capture_filter, action, tags=_bulk_tags(action, tags), session=session
    )


def run_bulk(
    engine: Engine,
    capture_filter: CaptureFilter,
    action: BulkAction,
    *,
    tags: Sequence[str] = (),
    batch_size: int = BULK_BATCH_SIZE,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Apply ``action`` to every capture the filter selects that it would change, one committed
    batch at a time (short transactions, progress that survives an interruption); returns how
    many changed. ``on_batch`` hears each batch's count."""
    checked = _bulk_tags(action, tags)
    changed = 0
    after: str | None = None
    while True:
        with session_scope(engine) as session:
            batch = next_bulk_batch(
                capture_filter, action, tags=checked, after=after, limit=batch_size, session=session
            )
            if not batch:
                return changed
            count = _apply(action, batch, checked, session)
        after = batch[-1][0]
        changed += count
        if on_batch is not None:
            on_batch(count)


def _apply(
    action: BulkAction, batch: list[tuple[str, list[str]]], tags: list[str], session: Session
) -> int:
    ids = [capture_id for capture_id, _ in batch]
    if action in STATUS_OF_ACTION:
        return set_review_status(ids, STATUS_OF_ACTION[action], session=session)
    if action == "delete":
        return delete_capture_rows(ids, session=session)
    if action == "tag":
        replace_tags(((i, sorted(set(old) | set(tags))) for i, old in batch), session=session)
    else:
        replace_tags(((i, sorted(set(old) - set(tags))) for i, old in batch), session=session)
    return len(batch)


def feedback_kind(submitted: FeedbackInput) -> FeedbackKind:
    """Thumbs decide; else the score; a correction alone says the answer was wrong."""
    if submitted.thumbs is not None:
        return "positive" if submitted.thumbs > 0 else "negative"
    if submitted.score is not None:
        if submitted.score >= POSITIVE_SCORE:
            return "positive"
        if submitted.score <= NEGATIVE_SCORE:
            return "negative"
        return "neutral"
    return "negative" if submitted.corrected is not None else "neutral"


def record_feedback(submitted: FeedbackInput, *, api_key_id: str, session: Session) -> Feedback:
    """Store feedback on the caller's own completion, update the capture's feedback summary,
    and keep a corrected answer as an edit authored by ``feedback``."""
    capture = get_capture_by_completion_id(
        submitted.completion_id, session=session, api_key_id=api_key_id
    )
    if capture is None:
        raise CaptureNotFound(
            f"No chat completion or response found with id '{submitted.completion_id}'.",
            param="completion_id",
            code="not_found",
        )
    row = add_feedback(
        Feedback(
            capture_id=capture.id,
            completion_id=submitted.completion_id,
            thumbs=submitted.thumbs,
            score=submitted.score,
            comment=submitted.comment,
            corrected=submitted.corrected,
            api_key_id=api_key_id,
        ),
        session=session,
    )
    capture.feedback = feedback_kind(submitted)
    session.add(capture)
    if submitted.corrected is not None:
        add_capture_edit(
            capture.id,
            submitted.corrected,
            author=FEEDBACK_AUTHOR,
            reason=submitted.comment[:2000] if submitted.comment else None,
            session=session,
        )
    session.flush()
    return row
