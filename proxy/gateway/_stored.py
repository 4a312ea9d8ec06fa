"""Stored-completions parity: OpenAI's list/retrieve/update/delete/messages, from our store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine

from proxy._errors import InvalidRequest, NotFound
from proxy.gateway._auth import Caller
from storage import (
    Capture,
    Order,
    delete_capture,
    get_capture_by_completion_id,
    list_stored_completions,
    session_scope,
    update_capture_metadata,
)

_MAX_LIMIT = 100
_DEFAULT_LIMIT = 20
_MAX_METADATA_KEYS = 16


class StoredCompletions:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def list(self, caller: Caller, query: Mapping[str, str]) -> dict[str, Any]:
        limit = limit_param(query.get("limit"))
        order = order_param(query.get("order"), default="asc")
        metadata = {
            key[len("metadata[") : -1]: value
            for key, value in query.items()
            if key.startswith("metadata[") and key.endswith("]")
        }

        def run() -> dict[str, Any]:
            with session_scope(self._engine) as session:
                rows, has_more = list_stored_completions(
                    session=session,
                    api_key_id=caller.key_id,
                    model=query.get("model"),
                    metadata=metadata,
                    after=query.get("after"),
                    limit=limit,
                    order=order,
                )
                return page([completion_object(row) for row in rows], has_more)

        return await anyio.to_thread.run_sync(run)

    async def retrieve(self, caller: Caller, completion_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with session_scope(self._engine) as session:
                return completion_object(self._get(completion_id, caller, session))

        return await anyio.to_thread.run_sync(run)

    async def update(self, caller: Caller, completion_id: str, body: Any) -> dict[str, Any]:
        metadata = _metadata_param(body)

        def run() -> dict[str, Any]:
            with session_scope(self._engine) as session:
                capture = self._get(completion_id, caller, session)
                return completion_object(
                    update_capture_metadata(capture, metadata, session=session)
                )

        return await anyio.to_thread.run_sync(run)

    async def delete(self, caller: Caller, completion_id: str) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            with session_scope(self._engine) as session:
                delete_capture(self._get(completion_id, caller, session), session=session)
            return {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}

        return await anyio.to_thread.run_sync(run)

    async def messages(
        self, caller: Caller, completion_id: str, query: Mapping[str, str]
    ) -> dict[str, Any]:
        limit = limit_param(query.get("limit"))
        order = order_param(query.get("order"), default="asc")

        def run() -> list[dict[str, Any]]:
            with session_scope(self._engine) as session:
                capture = self._get(completion_id, caller, session)
                raw = capture.request.get("messages")
                return list(raw) if isinstance(raw, list) else []

        messages = await anyio.to_thread.run_sync(run)
        items = [_message_object(completion_id, i, m) for i, m in enumerate(messages)]
        return page_after(items, order=order, after=query.get("after"), limit=limit)

    def _get(self, completion_id: str, caller: Caller, session: Any) -> Capture:
        capture = get_capture_by_completion_id(
            completion_id, session=session, api_key_id=caller.key_id, api="chat"
        )
        if capture is None or capture.response is None:
            raise NotFound(
                f"No chat completion found with id '{completion_id}'.",
                param="completion_id",
                code="not_found",
            )
        return capture


def completion_object(capture: Capture) -> dict[str, Any]:
    completion = dict(capture.response or {})
    completion["metadata"] = capture.metadata_ or {}
    completion.setdefault("request_id", capture.upstream_request_id)
    return completion


def _message_object(completion_id: str, index: int, message: Any) -> dict[str, Any]:
    item = dict(message) if isinstance(message, dict) else {"content": message}
    content = item.get("content")
    item["content_parts"] = content if isinstance(content, list) else None
    if isinstance(content, list):
        item["content"] = (
            "".join(part.get("text", "") for part in content if isinstance(part, dict)) or None
        )
    item["id"] = f"{completion_id}-{index}"
    return item


def page_after(
    items: list[dict[str, Any]], *, order: Order, after: str | None, limit: int
) -> dict[str, Any]:
    """One page of ``items`` (in ascending order as given), as OpenAI's list calls give it."""
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return page(items[:limit], len(items) > limit)


def page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def limit_param(raw: str | None) -> int:
    """OpenAI's spec gives ``limit`` no bounds: 0 asks for an empty page (``has_more`` still
    says whether anything is there), and more than 100 is served as a page of 100."""
    if raw is None:
        return _DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest("'limit' must be an integer.", param="limit") from None
    if value < 0:
        raise InvalidRequest("'limit' must not be negative.", param="limit")
    return min(value, _MAX_LIMIT)


def order_param(raw: str | None, *, default: Order) -> Order:
    if raw is None:
        return default
    if raw in ("asc", "desc"):
        return "asc" if raw == "asc" else "desc"
    raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")


def _metadata_param(body: Any) -> dict[str, str]:
    if not isinstance(body, dict) or "metadata" not in body:
        raise InvalidRequest("Send a JSON object with 'metadata'.", param="metadata")
    metadata = body["metadata"]
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > _MAX_METADATA_KEYS:
        raise InvalidRequest(
            f"'metadata' must be an object of at most {_MAX_METADATA_KEYS} string pairs.",
            param="metadata",
        )
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise InvalidRequest(
                "'metadata' keys are strings of at most 64 characters and values strings of "
                "at most 512.",
                param="metadata",
            )
    return metadata
