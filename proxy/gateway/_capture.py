"""What the hot path hands to the sink, and how it becomes a row.

The request path only fills an ``Exchange`` with raw bytes and timings. Decoding, parsing and
stream reconstruction happen in the sink's writer thread, off the request's way.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from finetune import (
    Redactor,
    RuleConfig,
    evaluate,
    finish_reason_of,
    prompt_hash,
    request_as_chat,
    usage_as_chat,
)
from proxy.gateway._accumulate import StreamError, accumulate_sse
from proxy.gateway._accumulate_responses import accumulate_response_sse

CHAT = "chat"
RESPONSES = "responses"


def new_capture_id() -> str:
    """Time-ordered and unique across processes: nanoseconds, then random bits.

    ``random`` rather than ``os.urandom``: no system call on the hot path, and the module's
    generator is seeded anew in every forked child, so two workers never share a sequence."""
    return f"cap_{time.time_ns():016x}{random.getrandbits(40):010x}"


@dataclass(slots=True)
class Exchange:
    """One chat-completion or Responses API exchange, as raw as the hot path saw it."""

    request: dict[str, Any]
    api_key_id: str | None
    upstream: str
    served_model: str | None
    api: str = CHAT
    """``chat`` for ``/v1/chat/completions``, ``responses`` for ``/v1/responses``."""
    alias: str | None = None
    capture_id: str = field(default_factory=new_capture_id)
    started_at: float = field(default_factory=time.time)
    stream: bool = False
    status_code: int | None = None
    body: bytes = b""
    content_encoding: str | None = None
    upstream_request_id: str | None = None
    ttfb_ms: float | None = None
    total_ms: float | None = None
    abandoned: bool = False
    error_kind: str | None = None
    """None when the upstream answered; else timeout, connection, stream_cut, client_abandoned."""
    error_message: str | None = None
    translated: bool = False
    """A Responses call served by a chat-only upstream: ``body`` holds the translated answer."""
    extra_tags: list[str] | None = None
    """Tags the proxy itself sets, e.g. ``shadow`` on a shadow request's capture."""
    extra_metadata: dict[str, str] | None = None
    """Added to the request's metadata: ``stillroom_shadow_of`` on a shadow capture,
    ``stillroom_fallback_from`` / ``stillroom_fallback_reason`` when a student's error was
    answered by the teacher instead."""


def decode_body(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        # A cut gzip stream still yields what arrived whole.
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(body)
    if encoding == "deflate":
        return zlib.decompressobj().decompress(body)
    raise ValueError(f"unsupported content-encoding {encoding}")


def build_row(
    exchange: Exchange,
    *,
    rules: Sequence[RuleConfig] = (),
    redactor: Redactor | None = None,
) -> dict[str, Any]:
    """The capture's columns; never raises on a strange body, it records it instead.

    With a ``redactor``, request, response and error are scrubbed before anything is derived
    from them; ``rules`` then set the review status and tags from what will be stored."""
    request = exchange.request if redactor is None else redactor.redact_value(exchange.request)
    responses = exchange.api == RESPONSES
    # A Responses request read as chat: its input's function_call items are assistant turns.
    chat_form = request_as_chat(request) if responses else request
    metadata = request.get("metadata")
    row: dict[str, Any] = {
        "id": exchange.capture_id,
        "created_at": datetime.fromtimestamp(exchange.started_at, UTC),
        "request": request,
        "status_code": exchange.status_code,
        "error_kind": exchange.error_kind,
        "upstream_request_id": exchange.upstream_request_id,
        "requested_model": _str_or_none(request.get("model")),
        "alias": exchange.alias,
        "served_model": exchange.served_model,
        "upstream": exchange.upstream,
        "ttfb_ms": exchange.ttfb_ms,
        "total_ms": exchange.total_ms,
        "stream": exchange.stream,
        "abandoned": exchange.abandoned,
        "metadata_": {str(k): str(v) for k, v in metadata.items()}
        if isinstance(metadata, dict)
        else {},
        "store": request.get("store") if isinstance(request.get("store"), bool) else None,
        "user": _str_or_none(request.get("user") or request.get("safety_identifier")),
        "api_key_id": exchange.api_key_id,
        "response": None,
        "error": None,
        "completion_id": None,
        "usage": None,
        "prompt_tokens": None,
        "completion_tokens": None,
        "total_tokens": None,
        "finish_reason": None,
        "review_status": "pending",
        "tags": [],
        "rating": None,
        "feedback": None,
        "prompt_hash": prompt_hash(chat_form),
        "has_tool_calls": _request_called_a_tool(chat_form),
        "api": exchange.api,
    }
    if exchange.extra_metadata:
        row["metadata_"].update(exchange.extra_metadata)
    if exchange.extra_tags:
        row["tags"] = list(exchange.extra_tags)
    completion, error = _parse_response(exchange)
    if error is None and exchange.error_message is not None:
        error = {"message": exchange.error_message, "type": exchange.error_kind}
    if redactor is not None:
        completion, error = redactor.redact_value(completion), redactor.redact_value(error)
    row["error"] = error
    if completion is not None and responses:
        _response_columns(row, completion)
        if error is None and completion.get("status") == "failed":
            failure = completion.get("error")
            row["error"] = failure if isinstance(failure, dict) else {"message": "failed"}
    elif completion is not None:
        row["response"] = completion
        row["completion_id"] = _str_or_none(completion.get("id"))
        usage = completion.get("usage")
        if isinstance(usage, dict):
            row["usage"] = usage
            row["prompt_tokens"] = _int_or_none(usage.get("prompt_tokens"))
            row["completion_tokens"] = _int_or_none(usage.get("completion_tokens"))
            row["total_tokens"] = _int_or_none(usage.get("total_tokens"))
        choices = completion.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            row["finish_reason"] = _str_or_none(choices[0].get("finish_reason"))
            row["has_tool_calls"] = row["has_tool_calls"] or any(
                isinstance(c, dict) and called_a_tool(c.get("message")) for c in choices
            )
    return apply_rules(row, rules)


def called_a_tool(message: Any) -> bool:
    """An assistant message with a non-empty ``tool_calls`` list or a legacy ``function_call``.

    Migration 0012 states the same test in SQL to backfill ``has_tool_calls``: keep them equal."""
    if not isinstance(message, dict):
        return False
    if isinstance(message.get("function_call"), dict):
        return True
    calls = message.get("tool_calls")
    return isinstance(calls, list) and bool(calls)


def _request_called_a_tool(request: dict[str, Any]) -> bool:
    messages = request.get("messages")
    if not isinstance(messages, list):
        return False
    return any(
        isinstance(m, dict) and m.get("role") == "assistant" and called_a_tool(m) for m in messages
    )


def _response_columns(row: dict[str, Any], response: dict[str, Any]) -> None:
    """A Responses API answer's columns, named as a chat completion's are."""
    row["response"] = response
    row["completion_id"] = _str_or_none(response.get("id"))
    usage = response.get("usage")
    if isinstance(usage, dict):
        row["usage"] = usage
        chat = usage_as_chat(usage) or {}
        row["prompt_tokens"] = _int_or_none(chat.get("prompt_tokens"))
        row["completion_tokens"] = _int_or_none(chat.get("completion_tokens"))
        row["total_tokens"] = _int_or_none(chat.get("total_tokens"))
    row["finish_reason"] = finish_reason_of(response)
    output = response.get("output")
    row["has_tool_calls"] = row["has_tool_calls"] or (
        isinstance(output, list)
        and any(isinstance(item, dict) and item.get("type") == "function_call" for item in output)
    )


def apply_rules(row: dict[str, Any], rules: Sequence[RuleConfig]) -> dict[str, Any]:
    """Set a new capture's review status and tags as the curation rules decide."""
    if rules:
        outcome = evaluate(rules, row)
        row["review_status"] = outcome.status or "pending"
        row["tags"] = [*row["tags"], *outcome.tags]
    return row


def _parse_response(exchange: Exchange) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(completion, error) from the raw body."""
    if not exchange.body:
        return None, None
    try:
        body = decode_body(exchange.body, exchange.content_encoding)
    except (ValueError, zlib.error) as exc:
        return None, {"message": f"undecodable body: {exc}", "type": "capture_error"}
    ok = exchange.status_code is not None and 200 <= exchange.status_code < 300
    if ok and exchange.stream and b"data:" in body[:4096]:
        rebuild = accumulate_response_sse if exchange.api == RESPONSES else accumulate_sse
        try:
            return rebuild(body), None
        except StreamError as exc:
            return None, exc.error if isinstance(exc.error, dict) else {"message": str(exc.error)}
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:65536].decode("utf-8", "replace")
        return None, {"message": "response was not JSON", "type": "capture_error", "body": text}
    if not isinstance(parsed, dict):
        return None, {"message": "response was not a JSON object", "type": "capture_error"}
    # A Responses object always carries "error", null when it succeeded.
    if ok and parsed.get("error") is None:
        return parsed, None
    error = parsed.get("error", parsed)
    return None, error if isinstance(error, dict) else {"message": str(error)}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# A quarantined capture keeps this much of each raw part: enough to see what went wrong.
RAW_LIMIT = 64 * 1024
QUARANTINE_TAG = "quarantined"


def quarantine_exchange(
    exchange: Exchange, reason: str, *, redactor: Redactor | None = None
) -> dict[str, Any]:
    """The exchange as a raw, size-capped record, for a capture that could not be built.

    Nothing is parsed: the request and the response body are kept as (redacted) text."""
    raw = {
        "request": raw_text(exchange.request),
        "response": exchange.body[:RAW_LIMIT].decode("utf-8", "replace"),
    }
    if redactor is not None:
        raw = {part: redactor.redact_text(text) for part, text in raw.items()}
    return _quarantined(
        {
            "id": exchange.capture_id,
            "created_at": datetime.fromtimestamp(exchange.started_at, UTC),
            "status_code": exchange.status_code,
            "error_kind": exchange.error_kind,
            "upstream_request_id": exchange.upstream_request_id,
            "alias": exchange.alias,
            "served_model": exchange.served_model,
            "upstream": exchange.upstream,
            "ttfb_ms": exchange.ttfb_ms,
            "total_ms": exchange.total_ms,
            "stream": exchange.stream,
            "abandoned": exchange.abandoned,
            "api_key_id": exchange.api_key_id,
        },
        raw,
        reason,
    )


def quarantine_row(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """A built row the database refused, as a raw record (the row was redacted when built)."""
    kept = {name: row.get(name) for name in _QUARANTINE_KEEPS if name in row}
    raw = {
        part: raw_text(row.get(part))
        for part in ("request", "response", "error", "metadata_")
        if row.get(part) is not None
    }
    return _quarantined(kept, raw, reason)


_QUARANTINE_KEEPS = (
    "id",
    "created_at",
    "status_code",
    "error_kind",
    "upstream_request_id",
    "alias",
    "served_model",
    "upstream",
    "ttfb_ms",
    "total_ms",
    "stream",
    "abandoned",
    "api_key_id",
)


def _quarantined(kept: dict[str, Any], raw: dict[str, str], reason: str) -> dict[str, Any]:
    # Rejected and tagged, so no dataset ever takes it; everything else stays as it came.
    return {
        **kept,
        "request": {},
        "response": None,
        "error": {
            "message": f"capture quarantined: {reason}"[:2000],
            "type": "capture_quarantined",
            "raw": raw,
        },
        "metadata_": {},
        "review_status": "rejected",
        "tags": [QUARANTINE_TAG],
        "has_tool_calls": False,
    }


def raw_text(value: Any, limit: int = RAW_LIMIT) -> str:
    """``value`` as JSON text, or its repr when JSON cannot hold it; cut to ``limit``."""
    if isinstance(value, bytes):
        return value[:limit].decode("utf-8", "replace")
    try:
        text = orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        try:
            text = repr(value)
        except RecursionError:
            text = f"<{type(value).__name__} nested too deep to show>"
    return text[:limit]
