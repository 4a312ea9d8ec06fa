"""One capture read once for a build: its example, the keys that thread it with the other turns
of its conversation, and the prompt hash before each of its assistant turns.

A build asks three things of every message: its cleaned form for the example
(``clean_message``), its normalised form for the thread keys (``normalise_turn``), and, before
an assistant turn, its normalised form for the prompt hash. Asked one question at a time, each
prefix of a conversation was normalised again for each of its assistant turns: n² work for n
turns. Here each message is read once, in one pass, and the prefixes' hashes are carried
forward; the keys are the same bytes.

Most messages are a role and a text. For those the three forms are known without the general
road: the cleaned message is the two fields, and the two normalised forms encode to the same
bytes, which repeat across captures (a system prompt on every capture, a conversation resent
with each of its turns) and are kept in a cache the build holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from finetune.datasets._prompt import encoded_prompt_message, prefix_prompt_hashes, prompt_hash
from finetune.datasets._threading import EXAMPLE_FIELDS, clean_message, normalise_turn


class Candidate(NamedTuple):
    """A capture a build reads: its id and stored prompt hash."""

    id: str
    prompt_hash: str | None


TurnCache = dict[tuple[str, str], bytes]
"""(role, text) -> the encoded normalised turn of a message that is only those two."""

TURN_CACHE_SIZE = 50_000
"""Entries a build's cache holds before it is emptied and filled again."""


@dataclass(slots=True)
class Reading:
    example: dict[str, Any]
    """The request's messages cleaned, the final answer appended, the tool fields."""
    whole: bytes
    """Key of the whole exchange, messages and answer: when it is another capture's turn key,
    this capture is an earlier turn of that one's conversation. Tools are left out: clients
    do not always send them again with every turn."""
    turns: dict[int, bytes]
    """Assistant turn index -> key of the conversation up to and including that turn."""
    prompts: list[tuple[int, str]]
    """Assistant turn index -> prompt hash of the messages before it: a capture of that
    prompt whose answer is the turn shows the teacher wrote it."""
    split_key: str
    """The hash that fixes the example's split: of the opening prompt, before the first
    assistant turn, so a conversation stays on its side as it grows."""


def _encoded_turn(message: Any) -> bytes:
    return orjson.dumps(normalise_turn(message), option=orjson.OPT_SORT_KEYS)


def _cache_turn(role: str, content: str, cache: TurnCache) -> bytes:
    if len(cache) >= TURN_CACHE_SIZE:
        cache.clear()
    encoded = cache[(role, content)] = _encoded_turn({"role": role, "content": content})
    return encoded


def read_capture(
    request: dict[str, Any],
    answer: dict[str, Any],
    final: dict[str, Any] | None,
    fallback: str | None,
    cache: TurnCache,
) -> Reading:
    """What a build needs of one capture whose ``request`` has a list of messages.

    ``answer`` is what the teacher said (or the edit standing in for it), which threads the
    capture; ``final`` the edit that replaces it in the example; ``fallback`` the capture's
    stored prompt hash, the split key of a request without assistant turns.
    """
    messages = request["messages"]
    cleaned: list[Any] = []
    turn_bytes: list[bytes] = []
    prompt_bytes: list[bytes] = []
    assistant: list[int] = []
    for index, message in enumerate(messages):
        role = content = None
        if type(message) is dict:
            role = message.get("role")
            if len(message) == 2:
                content = message.get("content")
        if type(role) is str and type(content) is str:
            cleaned.append({"role": role, "content": content})
            encoded = cache.get((role, content))
            if encoded is None:
                encoded = _cache_turn(role, content, cache)
            turn_bytes.append(encoded)
            # The prompt's normal form of a non-empty text is the turn's; an empty one it keeps.
            prompt_bytes.append(encoded if content else encoded_prompt_message(message))
        else:
            cleaned.append(clean_message(message))
            turn_bytes.append(_encoded_turn(message))
            prompt_bytes.append(b"")
        if role == "assistant":
            assistant.append(index)
    if assistant:
        for index in range(assistant[-1]):
            if not prompt_bytes[index]:
                prompt_bytes[index] = encoded_prompt_message(messages[index])
    role, content = answer.get("role"), answer.get("content")
    if len(answer) == 2 and type(role) is str and type(content) is str:
        last = cache.get((role, content)) or _cache_turn(role, content, cache)
    else:
        last = _encoded_turn(answer)
    # The key of a list of turns is the SHA-256 of its canonical JSON, "[" + the turns joined
    # by "," + "]"; a prefix's key is a running hash with the "]" added to a copy.
    whole = hashlib.sha256(b"[" + b",".join([*turn_bytes, last]) + b"]").digest()
    turns: dict[int, bytes] = {}
    running = hashlib.sha256(b"[")
    done = 0
    for end in assistant:
        for index in range(done, end + 1):
            running.update(turn_bytes[index] if index == 0 else b"," + turn_bytes[index])
        done = end + 1
        prefix = running.copy()
        prefix.update(b"]")
        turns[end] = prefix.digest()
    hashes = prefix_prompt_hashes(request, prompt_bytes, assistant) if assistant else []
    if assistant:
        split = hashes[0]
    elif fallback is not None:
        split = fallback
    else:
        split = prompt_hash(request)
    example: dict[str, Any] = {"messages": [*cleaned, final or answer]}
    for field in EXAMPLE_FIELDS:
        if request.get(field) is not None:
            example[field] = request[field]
    return Reading(
        example=example,
        whole=whole,
        turns=turns,
        prompts=list(zip(assistant, hashes, strict=True)),
        split_key=split,
    )
