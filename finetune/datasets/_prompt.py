"""The normalised prompt: what makes two captures duplicates, and what fixes a split."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

import orjson

_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def _normalise_content(content: Any) -> Any:
    if isinstance(content, str):
        return normalise_text(content)
    if isinstance(content, list):
        return [
            {**part, "text": normalise_text(part["text"])}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def _normalise_message(message: Any) -> Any:
    if not isinstance(message, dict):
        return message
    kept: dict[str, Any] = {"role": message.get("role")}
    for key in ("content", "name", "tool_call_id"):
        if message.get(key) is not None:
            kept[key] = _normalise_content(message[key]) if key == "content" else message[key]
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        # Call ids are random per request: only what was called, with what, identifies a prompt.
        kept["tool_calls"] = [
            {
                "name": (c.get("function") or {}).get("name"),
                "arguments": _canonical_json((c.get("function") or {}).get("arguments")),
            }
            for c in calls
            if isinstance(c, dict)
        ]
    if isinstance(message.get("function_call"), dict):
        kept["function_call"] = message["function_call"]
    return kept


def _canonical_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def prompt_key(request: dict[str, Any]) -> dict[str, Any]:
    """The parts of a request that make it the same prompt: messages and tools, normalised."""
    messages = request.get("messages")
    key: dict[str, Any] = {
        "messages": [_normalise_message(m) for m in messages] if isinstance(messages, list) else []
    }
    for field in ("tools", "functions"):
        if request.get(field):
            key[field] = request[field]
    return key


def prompt_hash(request: dict[str, Any]) -> str:
    """Stable across processes and versions of Python: SHA-256 of canonical JSON."""
    canonical = orjson.dumps(prompt_key(request), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()
