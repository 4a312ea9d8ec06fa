"""The normalised prompt: what makes two captures duplicates, and what fixes a split."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from typing import Any

import orjson


def normalise_text(text: str) -> str:
    """NFC, runs of white space as one space, none at either end. (``str.split`` splits at
    exactly the characters the regular expression ``\\s`` matches, and NFC leaves ASCII as it
    is: this is ``re.sub(r"\\s+", " ", unicodedata.normalize("NFC", text)).strip()`` at a
    fraction of its cost, which a build pays for every message.) Most texts are ASCII and
    already normal: ASCII's white space but the space is all unprintable, so printable text with
    no two spaces in a row and none at either end is returned as it is, without the split."""
    if text.isascii():
        if text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
            return text
    else:
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


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


def encoded_prompt_message(message: Any) -> bytes:
    """One message as ``prompt_hash`` encodes it."""
    return orjson.dumps(_normalise_message(message), option=orjson.OPT_SORT_KEYS)


def prefix_prompt_hashes(
    request: dict[str, Any], encoded: Sequence[bytes], ends: Sequence[int]
) -> list[str]:
    """``prompt_hash`` of the request cut to ``messages[:end]``, for each of ``ends`` (in
    ascending order), given each message already encoded (``encoded_prompt_message``).

    A conversation of n turns asks about each of its assistant turns: hashing every prefix
    from scratch costs n² normalisations. The canonical JSON of a prefix is its parts in
    sorted key order (``functions``, ``messages``, ``tools``), so the bytes hashed here are
    those ``prompt_hash`` hashes.
    """
    head = b"{"
    if request.get("functions"):
        head += b'"functions":' + orjson.dumps(request["functions"], option=orjson.OPT_SORT_KEYS)
        head += b","
    tail = b"]"
    if request.get("tools"):
        tail += b',"tools":' + orjson.dumps(request["tools"], option=orjson.OPT_SORT_KEYS)
    tail += b"}"
    running = hashlib.sha256(head + b'"messages":[')
    hashes: list[str] = []
    done = 0
    for end in ends:
        for index in range(done, end):
            running.update(encoded[index] if index == 0 else b"," + encoded[index])
        done = max(done, end)
        prefix = running.copy()
        prefix.update(tail)
        hashes.append(prefix.hexdigest())
    return hashes
