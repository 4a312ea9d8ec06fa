"""Rebuild the ``response`` object a Responses API stream describes, from its SSE bytes.

A stream opens with ``response.created`` (the response, still without output), adds output
items and their content parts, sends text, refusal, function-call arguments and reasoning
summaries as deltas, closes each item with ``*.done``, and ends with ``response.completed``,
``response.incomplete`` or ``response.failed`` carrying the whole response. When the terminal
event came, it is the answer; when the stream was cut before it, the items are folded from the
events that did come, so a partial capture keeps everything the client saw.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import orjson

from proxy.gateway._accumulate import StreamError, iter_sse_data

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SNAPSHOT_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})


class _Fold:
    """The response as far as the events went."""

    def __init__(self) -> None:
        self.response: dict[str, Any] | None = None
        self.items: dict[int, dict[str, Any]] = {}
        self.final: dict[str, Any] | None = None

    def feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "error":
            raise StreamError(_error_of(event))
        if not isinstance(kind, str):
            return
        if kind in TERMINAL_EVENTS:
            response = event.get("response")
            if isinstance(response, dict):
                self.final = response
            return
        if kind in _SNAPSHOT_EVENTS:
            response = event.get("response")
            if isinstance(response, dict):
                self.response = copy.deepcopy(response)
            return
        index = event.get("output_index")
        if not isinstance(index, int):
            return
        if kind in ("response.output_item.added", "response.output_item.done"):
            item = event.get("item")
            if isinstance(item, dict):
                self.items[index] = copy.deepcopy(item)
            return
        item = self.items.setdefault(index, {})
        self._feed_item(kind, event, item)

    def _feed_item(self, kind: str, event: dict[str, Any], item: dict[str, Any]) -> None:
        if kind == "response.function_call_arguments.delta":
            item["arguments"] = str(item.get("arguments") or "") + str(event.get("delta") or "")
        elif kind == "response.function_call_arguments.done":
            item["arguments"] = event.get("arguments", item.get("arguments"))
        elif kind.startswith("response.reasoning_summary_"):
            self._feed_part(item, "summary", event.get("summary_index"), kind, event)
        elif kind.startswith("response.content_part.") or kind.startswith(
            ("response.output_text.", "response.refusal.", "response.reasoning_text.")
        ):
            self._feed_part(item, "content", event.get("content_index"), kind, event)

    @staticmethod
    def _feed_part(
        item: dict[str, Any], field: str, index: Any, kind: str, event: dict[str, Any]
    ) -> None:
        if not isinstance(index, int):
            return
        parts = item.setdefault(field, [])
        if not isinstance(parts, list):
            return
        while len(parts) <= index:
            parts.append({})
        part = parts[index]
        if kind.endswith("_part.added") or kind.endswith("_part.done"):
            if isinstance(event.get("part"), dict):
                parts[index] = copy.deepcopy(event["part"])
            return
        key = "refusal" if kind.startswith("response.refusal.") else "text"
        if kind.endswith(".delta"):
            part[key] = str(part.get(key) or "") + str(event.get("delta") or "")
        elif kind.endswith(".done") and key in event:
            part[key] = event[key]
        elif kind == "response.output_text.annotation.added" and "annotation" in event:
            part.setdefault("annotations", []).append(event["annotation"])

    def build(self) -> dict[str, Any] | None:
        if self.final is not None:
            return self.final
        if self.response is None and not self.items:
            return None
        response = self.response or {"object": "response", "status": "in_progress"}
        response["output"] = [self.items[i] for i in sorted(self.items)]
        return response


def _error_of(event: dict[str, Any]) -> dict[str, Any]:
    error = event.get("error")
    if isinstance(error, dict):
        return error
    return {k: v for k, v in event.items() if k not in ("type", "sequence_number")}


def accumulate_response_events(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Fold typed Responses stream events into one ``response``; None if none came."""
    fold = _Fold()
    for event in events:
        fold.feed(event)
    return fold.build()


def accumulate_response_sse(body: bytes) -> dict[str, Any] | None:
    """Parse a Responses SSE body (possibly cut short) into a ``response`` object."""
    events = []
    for data in iter_sse_data(body):
        if data.strip() == b"[DONE]":
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            # A stream cut mid-event leaves a partial last payload; keep what came whole.
            continue
        if isinstance(event, dict):
            events.append(event)
    return accumulate_response_events(events)
