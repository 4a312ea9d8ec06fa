"""The text a capture is searched by: what people wrote and what the model answered.

Searching the JSON bodies themselves read every row until a page filled, so a rare word
scanned most of the table. Each capture instead carries ``search_text``, written with the row
and indexed for substring search: a trigram GIN index on PostgreSQL (``pg_trgm``), an FTS5
table with the trigram tokenizer on SQLite (migration 0011). Both answer ``LIKE '%word%'``
from the index once the word has three characters or more.

The text is stored case-folded (``fold``, migration 0015) and searched for the folded words, so
PostgreSQL compares bytes (``LIKE``) where ``ILIKE`` lowercased every row it read: at a million
captures, rechecking the rows of a word in 0.4 % of them took six times longer with ``ILIKE``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

MAX_SEARCH_CHARS = 100_000
"""Longer conversations are searched by their first this-many characters."""

# Structure, not text: ids, roles, types and enum-like values nobody searches for.
_SKIPPED_KEYS = frozenset(
    {
        "id",
        "object",
        "role",
        "type",
        "model",
        "index",
        "finish_reason",
        "status",
        "call_id",
        "tool_call_id",
        "logprobs",
        "usage",
        "system_fingerprint",
        "service_tier",
        "created",
        "created_at",
        "detail",
        "image_url",
        "file_data",
        "input_audio",
    }
)
# Where the conversation lives: chat completions, and the Responses API.
_REQUEST_KEYS = ("messages", "instructions", "input")
_RESPONSE_KEYS = ("choices", "output")


def fold(text: str) -> str:
    """``text`` as search stores and compares it: case-folded (Unicode's caseless matching)."""
    return text.casefold()


def search_text(request: Mapping[str, Any] | None, response: Mapping[str, Any] | None) -> str:
    """The conversation's words, folded, one line per piece, capped at ``MAX_SEARCH_CHARS``."""
    parts: list[str] = []
    size = 0
    for piece in _pieces(request, response):
        # PostgreSQL text cannot hold NUL.
        part = fold(piece.replace("\x00", ""))
        parts.append(part)
        size += len(part) + 1
        if size >= MAX_SEARCH_CHARS:
            break
    return "\n".join(parts)[:MAX_SEARCH_CHARS]


def _pieces(request: Mapping[str, Any] | None, response: Mapping[str, Any] | None) -> Iterator[str]:
    for body, keys in ((request, _REQUEST_KEYS), (response, _RESPONSE_KEYS)):
        if isinstance(body, Mapping):
            for key in keys:
                yield from _strings(body.get(key))


def _strings(value: Any) -> Iterator[str]:
    # Parsed JSON holds dicts, lists and strings: exact type tests first, the abstract ones
    # (a slow isinstance against an ABC) only for anything else.
    kind = type(value)
    if kind is str:
        if value:
            yield value
    elif kind is list:
        for inner in value:
            if type(inner) is str:
                if inner:
                    yield inner
            else:
                yield from _strings(inner)
    elif kind is dict or isinstance(value, Mapping):
        for key, inner in value.items():
            if key in _SKIPPED_KEYS:
                continue
            if type(inner) is str:
                if inner:
                    yield inner
            else:
                yield from _strings(inner)
    elif isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, list):
        for inner in value:
            yield from _strings(inner)
