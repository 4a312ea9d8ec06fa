"""What curation accepts, and the errors for what it refuses.

    CurationError              any refusal; ``param`` names the offending input
    ├── CaptureNotFound        no such capture, or not the caller's
    └── InvalidCurationInput   a bad filter, edit, rating, tag or feedback: nothing changed

Query-string filters (``status=approved&tag=good&metadata.team=a``) become a ``CaptureFilter``
here, so the admin API and the CLI refuse the same things with the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from storage import CaptureFilter


class CurationError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class CaptureNotFound(CurationError):
    pass


class InvalidCurationInput(CurationError):
    pass


_LIST_FIELDS = {
    "status": "status",
    "model": "model",
    "alias": "alias",
    "tag": "tags",
    "tags": "tags",
    "finish_reason": "finish_reason",
    "feedback": "feedback",
}
_BOOL_FIELDS = ("has_tool_calls", "error", "stream", "edited")
_TIME_FIELDS = ("created_after", "created_before")
_INT_FIELDS = tuple(
    f"{bound}_{kind}_tokens"
    for bound in ("min", "max")
    for kind in ("prompt", "completion", "total")
)
_TEXT_FIELDS = ("search", "api_key_id")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def filter_from_params(pairs: Iterable[tuple[str, str]]) -> CaptureFilter:
    """A filter from query-string pairs; list parameters repeat or take commas."""
    raw: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, value in pairs:
        field = _store(raw, name, value)
        names.setdefault(field, name)
    try:
        return CaptureFilter.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        param = names.get(field, field) or None
        raise InvalidCurationInput(
            f"Invalid filter '{param}': {first['msg']}.", param=param, code="invalid_filter"
        ) from None


def _store(raw: dict[str, Any], name: str, value: str) -> str:
    """Put one pair into ``raw``; returns the filter field it set."""
    key = _metadata_key(name)
    if key is not None:
        raw.setdefault("metadata", {})[key] = value
        return "metadata"
    if name in _LIST_FIELDS:
        field = _LIST_FIELDS[name]
        raw.setdefault(field, []).extend(part.strip() for part in value.split(",") if part.strip())
        return field
    if name in _BOOL_FIELDS:
        raw[name] = _boolean(name, value)
    elif name in _TIME_FIELDS:
        raw[name] = _instant(name, value)
    elif name in _INT_FIELDS:
        raw[name] = _integer(name, value)
    elif name in _TEXT_FIELDS:
        raw[name] = value
    else:
        raise InvalidCurationInput(
            f"Unknown filter parameter '{name}'.", param=name, code="invalid_filter"
        )
    return name


def _metadata_key(name: str) -> str | None:
    if name.startswith("metadata.") and len(name) > len("metadata."):
        return name[len("metadata.") :]
    if name.startswith("metadata[") and name.endswith("]") and len(name) > len("metadata[]"):
        return name[len("metadata[") : -1]
    return None


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise InvalidCurationInput(
        f"Invalid filter '{name}': expected true or false, got '{value}'.",
        param=name,
        code="invalid_filter",
    )


def _integer(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidCurationInput(
            f"Invalid filter '{name}': expected an integer, got '{value}'.",
            param=name,
            code="invalid_filter",
        ) from None


def _instant(name: str, value: str) -> datetime:
    """ISO 8601 (a time without zone is UTC) or Unix seconds."""
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidCurationInput(
            f"Invalid filter '{name}': expected an ISO 8601 time or Unix seconds, got '{value}'.",
            param=name,
            code="invalid_filter",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_MESSAGE_KEYS = {"role", "content", "tool_calls", "function_call", "refusal", "name"}
_Refuse = Callable[[str, str], InvalidCurationInput]


def assistant_message(message: Any, *, param: str = "message") -> dict[str, Any]:
    """A corrected answer, checked against the chat schema; a copy with ``role`` set.

    Export appends it to the prompt as the training target, so it must be what a fine-tuning
    example accepts: text, tool calls with JSON-object arguments, or both.
    """

    def refuse(path: str, problem: str) -> InvalidCurationInput:
        where = f"{param}.{path}" if path else param
        return InvalidCurationInput(f"'{where}' {problem}.", param=where, code="invalid_message")

    if not isinstance(message, dict):
        raise refuse("", "must be an object with role 'assistant'")
    unknown = sorted(set(message) - _MESSAGE_KEYS)
    if unknown:
        raise refuse(unknown[0], "is not a field of an assistant message")
    if message.get("role", "assistant") != "assistant":
        raise refuse("role", "must be 'assistant'")
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise refuse("content", "must be a string or null")
    for key in ("refusal", "name"):
        if message.get(key) is not None and not isinstance(message[key], str):
            raise refuse(key, "must be a string")
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise refuse("tool_calls", "must be a list")
    for index, call in enumerate(calls or []):
        _check_tool_call(call, f"tool_calls[{index}]", refuse)
    if message.get("function_call") is not None:
        _check_function(message["function_call"], "function_call", refuse)
    if not content and not calls and not message.get("function_call"):
        raise refuse("content", "must be non-empty text when there are no 'tool_calls'")
    return {**message, "role": "assistant"}


def _check_tool_call(call: Any, path: str, refuse: _Refuse) -> None:
    if not isinstance(call, dict):
        raise refuse(path, "must be an object")
    if not isinstance(call.get("id"), str) or not call["id"]:
        raise refuse(f"{path}.id", "must be a non-empty string")
    if call.get("type", "function") != "function":
        raise refuse(f"{path}.type", "must be 'function'")
    _check_function(call.get("function"), f"{path}.function", refuse)


def _check_function(function: Any, path: str, refuse: _Refuse) -> None:
    if not isinstance(function, dict):
        raise refuse(path, "must be an object with 'name' and 'arguments'")
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise refuse(f"{path}.name", "must be a non-empty string")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        raise refuse(f"{path}.arguments", "must be a string of JSON")
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise refuse(f"{path}.arguments", "is not valid JSON") from None
    # A string here means the arguments were JSON-encoded twice.
    if not isinstance(parsed, dict):
        raise refuse(f"{path}.arguments", f"must encode a JSON object, not {type(parsed).__name__}")


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    """End-user feedback on one completion, checked."""

    completion_id: str
    thumbs: int | None = None
    """+1 (up) or -1 (down)."""
    score: float | None = None
    """From 0 (worst) to 1 (best)."""
    comment: str | None = None
    corrected: dict[str, Any] | None = None
    """A better assistant message."""


_FEEDBACK_KEYS = ("completion_id", "response_id", "thumbs", "score", "comment", "corrected")
_THUMBS = {"up": 1, "down": -1, 1: 1, -1: -1}


def feedback_input(body: Any) -> FeedbackInput:
    """Feedback from a request body: ``completion_id`` (or ``response_id``, for a Responses API
    answer) and at least one of the rest."""
    if not isinstance(body, dict):
        raise InvalidCurationInput("The request body must be a JSON object.", code="invalid_body")
    unknown = sorted(set(body) - set(_FEEDBACK_KEYS))
    if unknown:
        raise InvalidCurationInput(
            f"Unrecognized request argument supplied: {unknown[0]}.", param=unknown[0]
        )
    if "completion_id" in body and "response_id" in body:
        raise InvalidCurationInput(
            "Give either 'completion_id' or 'response_id', not both.", param="response_id"
        )
    param = "response_id" if "response_id" in body else "completion_id"
    completion_id = body.get(param)
    if not isinstance(completion_id, str) or not 0 < len(completion_id) <= 200:
        raise InvalidCurationInput(
            f"'{param}' must be the id of a chat completion or response you received.",
            param=param,
        )
    thumbs = body.get("thumbs")
    if thumbs is not None and (isinstance(thumbs, bool) or thumbs not in _THUMBS):
        raise InvalidCurationInput("'thumbs' must be 'up', 'down', 1 or -1.", param="thumbs")
    score = body.get("score")
    if score is not None and (
        isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1
    ):
        raise InvalidCurationInput("'score' must be a number from 0 to 1.", param="score")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 10_000):
        raise InvalidCurationInput(
            "'comment' must be a string of at most 10000 characters.", param="comment"
        )
    corrected = body.get("corrected")
    if corrected is not None:
        corrected = assistant_message(corrected, param="corrected")
    if thumbs is None and score is None and not comment and corrected is None:
        raise InvalidCurationInput(
            "Give at least one of 'thumbs', 'score', 'comment' or 'corrected'.", param="thumbs"
        )
    return FeedbackInput(
        completion_id=completion_id,
        thumbs=_THUMBS[thumbs] if thumbs is not None else None,
        score=float(score) if score is not None else None,
        comment=comment or None,
        corrected=corrected,
    )
