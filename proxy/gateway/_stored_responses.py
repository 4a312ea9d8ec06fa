"""``GET`` / ``DELETE /v1/responses/{id}`` and ``/input_items``, answered from the store.

What stillroom captured is answered from its captures, as stored chat completions are; any
other response id (one made elsewhere, or before stillroom stood in front) is for the
upstream to answer, so the handlers pass those calls through (``None`` here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine
from sqlmodel import Session

from proxy.gateway._auth import Caller
from proxy.gateway._capture import RESPONSES
from proxy.gateway._stored import limit_param, order_param, page_after
from storage import Capture, delete_capture, get_capture_by_completion_id, session_scope


class StoredResponses:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def retrieve(self, caller: Caller, response_id: str) -> dict[str, Any] | None:
        def run() -> dict[str, Any] | None:
            with session_scope(self._engine) as session:
                capture = self._get(response_id, caller, session)
                return dict(capture.response or {}) if capture is not None else None

        return await anyio.to_thread.run_sync(run)

    async def delete(self, caller: Caller, response_id: str) -> dict[str, Any] | None:
        def run() -> dict[str, Any] | None:
            with session_scope(self._engine) as session:
                capture = self._get(response_id, caller, session)
                if capture is None:
                    return None
                delete_capture(capture, session=session)
            return {"id": response_id, "object": "response.deleted", "deleted": True}

        return await anyio.to_thread.run_sync(run)

    async def input_items(
        self, caller: Caller, response_id: str, query: Mapping[str, str]
    ) -> dict[str, Any] | None:
        limit = limit_param(query.get("limit"))
        order = order_param(query.get("order"), default="desc")

        def run() -> list[dict[str, Any]] | None:
            with session_scope(self._engine) as session:
                capture = self._get(response_id, caller, session)
                return input_items(capture.request) if capture is not None else None

        items = await anyio.to_thread.run_sync(run)
        if items is None:
            return None
        for index, item in enumerate(items):
            item.setdefault("id", f"{response_id}-{index}")
        return page_after(items, order=order, after=query.get("after"), limit=limit)

    def _get(self, response_id: str, caller: Caller, session: Session) -> Capture | None:
        capture = get_capture_by_completion_id(
            response_id, session=session, api_key_id=caller.key_id, api=RESPONSES
        )
        return capture if capture is not None and capture.response is not None else None


def input_items(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A request's ``input`` as the items OpenAI lists: a string is one user message, and a
    message's string content becomes one text part."""
    raw = request.get("input")
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    items: list[dict[str, Any]] = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict):
            continue
        item = dict(entry)
        if "role" in item and "type" not in item:
            item["type"] = "message"
        if item.get("type") == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        items.append(item)
    return items
