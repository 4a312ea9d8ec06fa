"""The captures admin API under /admin/captures: list, read, review, edit, bulk actions.

Handlers hand over to the ``finetune`` curation services inside one unit of work, off the
event loop; the services' refusals become OpenAI-shaped errors in ``proxy._errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar

import anyio.to_thread
from litestar import Controller, Request, delete, get, post
from litestar.params import FromPath, JSONBody
from pydantic import BaseModel, Field
from sqlmodel import Session

from finetune import (
    MAX_PAGE_SIZE,
    CaptureDetail,
    CapturePage,
    bulk_preview,
    capture_detail,
    delete_captures,
    edit_capture,
    filter_from_params,
    list_captures,
    rate_capture,
    retag_capture,
    run_bulk,
    set_capture_status,
)
from proxy._errors import InvalidRequest
from proxy._services import services
from proxy.admin._base import admin_guard
from storage import (
    BulkAction,
    Capture,
    CaptureEdit,
    CaptureFilter,
    Feedback,
    Order,
    ReviewStatus,
    session_scope,
)

T = TypeVar("T")


class CaptureSummary(BaseModel):
    """A capture without its request and response bodies."""

    id: str
    completion_id: str | None
    created_at: datetime
    status_code: int | None
    error_kind: str | None
    requested_model: str | None
    alias: str | None
    served_model: str | None
    stream: bool
    abandoned: bool
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    total_ms: float | None
    api_key_id: str | None
    metadata: dict[str, Any]
    review_status: str
    """pending, approved or rejected."""
    tags: list[str]
    rating: int | None
    feedback: str | None
    """Summary of the latest end-user feedback: positive, negative or neutral."""
    has_tool_calls: bool
    prompt_hash: str | None
    api: str = "chat"
    """``chat`` (chat completions) or ``responses`` (the Responses API)."""


class CaptureListItem(CaptureSummary):
    """A row of the list: the summary, and enough of the conversation to tell rows apart."""

    edited: bool
    """An edit replaced the upstream's answer; training uses the edit."""
    last_user_text: str | None
    """The last user message, whitespace folded, at most 200 characters."""
    answer_text: str | None
    """The start of the current answer (the edit, if any), at most 200 characters."""
    answer_tools: list[str]
    """Names of the tools the current answer called."""


class CaptureList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CaptureListItem]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next page; null on the last page."""
    has_more: bool


class EditPublic(BaseModel):
    id: int
    created_at: datetime
    author: str
    message: dict[str, Any]
    reason: str | None


class FeedbackPublic(BaseModel):
    id: int
    created_at: datetime
    completion_id: str
    thumbs: int | None
    score: float | None
    """From 0 (worst) to 1 (best)."""
    comment: str | None
    corrected: dict[str, Any] | None
    api_key_id: str | None


class CaptureDetailPublic(CaptureSummary):
    """One capture with its whole conversation, its edit history and its feedback."""

    request: dict[str, Any]
    response: dict[str, Any] | None
    error: dict[str, Any] | None
    usage: dict[str, Any] | None
    upstream: str
    upstream_request_id: str | None
    user: str | None
    ttfb_ms: float | None
    messages: list[Any]
    """The conversation the client sent."""
    original_answer: dict[str, Any] | None
    """The assistant message the upstream returned (first choice)."""
    current_edit: EditPublic | None
    answer: dict[str, Any] | None
    """What training uses: the current edit, else the original answer."""
    edits: list[EditPublic]
    """Oldest first."""
    feedback_entries: list[FeedbackPublic]
    """Oldest first."""


class CaptureQuery(BaseModel):
    filter: CaptureFilter = Field(default_factory=CaptureFilter)
    cursor: str | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)
    order: Order = "desc"


class TagChange(BaseModel):
    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class RatingSet(BaseModel):
    rating: int | None = Field(ge=1, le=5)
    """1-5, or null to clear."""


class EditCreate(BaseModel):
    message: dict[str, Any]
    """The corrected assistant message: content, tool_calls, or both."""
    author: str = Field(default="admin", min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=2000)


class BulkRequest(BaseModel):
    filter: CaptureFilter
    """Required: ``{}`` selects every capture."""
    action: BulkAction
    tags: list[str] = Field(default_factory=list)
    """For ``tag`` and ``untag``."""
    dry_run: bool = False


class BulkResult(BaseModel):
    action: BulkAction
    dry_run: bool
    count: int
    """Captures that would change (dry run) or that changed."""


class Deleted(BaseModel):
    id: str
    deleted: bool


def summary_public(capture: Capture) -> CaptureSummary:
    values = {name: getattr(capture, name) for name in CaptureSummary.model_fields}
    return CaptureSummary(**{**values, "metadata": capture.metadata_})


def _edit(edit: CaptureEdit) -> EditPublic:
    return EditPublic.model_validate(edit, from_attributes=True)


def _feedback(feedback: Feedback) -> FeedbackPublic:
    return FeedbackPublic.model_validate(feedback, from_attributes=True)


def detail_public(detail: CaptureDetail) -> CaptureDetailPublic:
    capture, current = detail.capture, detail.current_edit
    return CaptureDetailPublic(
        **summary_public(capture).model_dump(),
        **{name: getattr(capture, name) for name in ("request", "response", "error", "usage")},
        upstream=capture.upstream,
        upstream_request_id=capture.upstream_request_id,
        user=capture.user,
        ttfb_ms=capture.ttfb_ms,
        messages=detail.messages,
        original_answer=detail.original_answer,
        current_edit=_edit(current) if current is not None else None,
        answer=detail.answer,
        edits=[_edit(e) for e in detail.edits],
        feedback_entries=[_feedback(f) for f in detail.feedback],
    )


def page_public(page: CapturePage) -> CaptureList:
    return CaptureList(
        data=[CaptureListItem.model_validate(item) for item in page.items],
        next_cursor=page.next_cursor,
        has_more=page.next_cursor is not None,
    )


def _page_params(pairs: Iterable[tuple[str, str]]) -> tuple[CaptureQuery, list[tuple[str, str]]]:
    """Split the paging parameters from the filter's."""
    paging: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name in ("cursor", "limit", "order"):
            paging.setdefault(name, value)
        else:
            rest.append((name, value))
    limit = paging.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"'limit' must be between 1 and {MAX_PAGE_SIZE}.", param="limit")
    order = paging.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    query = CaptureQuery(cursor=paging.get("cursor"), limit=int(limit), order=order)
    return query, rest


async def _in_session(request: Request[Any, Any, Any], work: Callable[[Session], T]) -> T:
    engine = services(request).engine

    def run() -> T:
        with session_scope(engine) as session:
            return work(session)

    return await anyio.to_thread.run_sync(run)


class CapturesController(Controller):
    path = "/admin/captures"
    guards = [admin_guard]
    tags = ["captures"]

    @get("/")
    async def list_captures(self, request: Request[Any, Any, Any]) -> CaptureList:
        """Captures newest first (``order=asc`` for oldest), ``limit`` at most 500, paged by
        ``cursor``. Filters as query parameters: ``status``, ``model``, ``alias``, ``tag``,
        ``finish_reason``, ``feedback`` (repeat them or separate with commas),
        ``metadata.KEY=VALUE``, ``created_after`` / ``created_before`` (ISO 8601 or Unix
        seconds), ``has_tool_calls``, ``error``, ``stream``, ``edited`` (true/false),
        ``min_/max_prompt_tokens``, ``min_/max_completion_tokens``, ``min_/max_total_tokens``,
        ``search`` (text in the messages or the answer), ``api_key_id``."""
        query, rest = _page_params(request.query_params.multi_items())
        capture_filter = filter_from_params(rest)
        return await self._page(request, query.model_copy(update={"filter": capture_filter}))

    @post("/query", status_code=200)
    async def query_captures(
        self, request: Request[Any, Any, Any], data: JSONBody[CaptureQuery]
    ) -> CaptureList:
        """The same list, with the filter as a JSON ``CaptureFilter``."""
        return await self._page(request, data)

    async def _page(self, request: Request[Any, Any, Any], query: CaptureQuery) -> CaptureList:
        return page_public(
            await _in_session(
                request,
                lambda s: list_captures(
                    query.filter,
                    session=s,
                    cursor=query.cursor,
                    limit=query.limit,
                    order=query.order,
                ),
            )
        )

    @get("/{capture_id:str}")
    async def get_capture(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str]
    ) -> CaptureDetailPublic:
        return await _in_session(
            request, lambda s: detail_public(capture_detail(capture_id, session=s))
        )

    @post("/{capture_id:str}/approve", status_code=200)
    async def approve(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str]
    ) -> CaptureSummary:
        return await self._status(request, capture_id, "approved")

    @post("/{capture_id:str}/reject", status_code=200)
    async def reject(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str]
    ) -> CaptureSummary:
        return await self._status(request, capture_id, "rejected")

    @post("/{capture_id:str}/pending", status_code=200)
    async def reset(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str]
    ) -> CaptureSummary:
        """Back to pending review."""
        return await self._status(request, capture_id, "pending")

    async def _status(
        self,
        request: Request[Any, Any, Any],
        capture_id: str,
        status: ReviewStatus,
    ) -> CaptureSummary:
        def work(session: Session) -> CaptureSummary:
            set_capture_status([capture_id], status, session=session)
            return summary_public(capture_detail(capture_id, session=session).capture)

        return await _in_session(request, work)

    @post("/{capture_id:str}/tags", status_code=200)
    async def tag(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str], data: JSONBody[TagChange]
    ) -> CaptureSummary:
        """Add, then remove, curation tags."""
        return await _in_session(
            request,
            lambda s: summary_public(
                retag_capture(capture_id, add=data.add, remove=data.remove, session=s)
            ),
        )

    @post("/{capture_id:str}/rating", status_code=200)
    async def rate(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str], data: JSONBody[RatingSet]
    ) -> CaptureSummary:
        return await _in_session(
            request, lambda s: summary_public(rate_capture(capture_id, data.rating, session=s))
        )

    @post("/{capture_id:str}/edits", status_code=201)
    async def edit(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str], data: JSONBody[EditCreate]
    ) -> EditPublic:
        """A corrected assistant message, stored beside the original; it becomes the answer."""
        return await _in_session(
            request,
            lambda s: _edit(
                edit_capture(
                    capture_id, data.message, author=data.author, reason=data.reason, session=s
                )
            ),
        )

    @delete("/{capture_id:str}", status_code=200)
    async def delete_capture(
        self, request: Request[Any, Any, Any], capture_id: FromPath[str]
    ) -> Deleted:
        """Delete a capture with its edits and feedback."""
        await _in_session(request, lambda s: delete_captures([capture_id], session=s))
        return Deleted(id=capture_id, deleted=True)

    @post("/bulk", status_code=200)
    async def bulk(
        self, request: Request[Any, Any, Any], data: JSONBody[BulkRequest]
    ) -> BulkResult:
        """approve, reject, pending, tag, untag or delete every capture the filter selects;
        ``dry_run`` counts the captures that would change and changes nothing."""
        if data.dry_run:
            count = await _in_session(
                request, lambda s: bulk_preview(data.filter, data.action, tags=data.tags, session=s)
            )
        else:
            work = partial(
                run_bulk, services(request).engine, data.filter, data.action, tags=data.tags
            )
            count = await anyio.to_thread.run_sync(work)
        return BulkResult(action=data.action, dry_run=data.dry_run, count=count)
