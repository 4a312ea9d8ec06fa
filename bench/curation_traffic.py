"""Conversations for the curation benchmark: what clients sent and what the upstream answered.

A conversation is a list of ``Turn``s that share a model, a key and metadata; every turn becomes
one capture. Shares of the captures: about 65 % single questions, 20 % multi-turn chats, 15 %
tool flows, and 2 % of single questions fail upstream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from bench.curation_corpus import FOLLOW_UPS, Corpus, Turn, completion, prompt_size, random_id

ERROR_SHARE = 0.03
"""Of single questions, so that about 2 % of all captures are errors."""


@dataclass(frozen=True, slots=True)
class Conversation:
    requested_model: str
    alias: str | None
    served_model: str
    api_key_id: str
    stream: bool
    turns: list[Turn]


class Traffic:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.corpus = Corpus(rng)
        self.keys = [f"key_{random_id(rng, 12).lower()}" for _ in range(20)]

    def conversation(self, created: int) -> Conversation:
        """The next conversation, begun at Unix time ``created``."""
        rng = self.rng
        roll = rng.random()
        kind = "single" if roll < 0.82 else "chat" if roll < 0.905 else "tools"
        requested, alias, served = self.corpus.endpoint()
        thread = None if kind == "single" else "th_" + random_id(rng, 16).lower()
        metadata = self.corpus.metadata(thread)
        base: dict[str, Any] = {"model": requested}
        if metadata:
            base["metadata"] = metadata
        if rng.random() < 0.3:
            base["user"] = f"user_{rng.randint(1, 50_000)}"
        if rng.random() < 0.5:
            base["temperature"] = rng.choice((0, 0.2, 0.7, 1))
        stream = rng.random() < 0.45
        if stream:
            base["stream"] = True
            if rng.random() < 0.7:
                base["stream_options"] = {"include_usage": True}
        system = self.corpus.system(metadata.get("team"))
        if kind == "single":
            turns = [self._single(base, system, served, created)]
        elif kind == "chat":
            turns = self._chat(base, system, served, created)
        else:
            turns = self._tools(base, system, served, created)
        key = rng.choice(self.keys)
        return Conversation(requested, alias, served, key, stream, turns)

    def _usage(self, base: dict[str, Any]) -> bool:
        return not base.get("stream") or "stream_options" in base

    def _single(self, base: dict[str, Any], system: str, served: str, created: int) -> Turn:
        rng = self.rng
        question, frequent_system = self.corpus.question()
        system = frequent_system or system
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        request = {**base, "messages": messages}
        if rng.random() < ERROR_SHARE:
            return _error(rng, request, served)
        roll = rng.random()
        if roll < 0.06:
            request["max_tokens"] = 256
            content, finish = self.corpus.answer(long=True), "length"
        elif roll < 0.063:
            content, finish = "", "content_filter"
        else:
            content, finish = self.corpus.answer(), "stop"
        message = {"role": "assistant", "content": content}
        response = completion(
            rng, served, created, message, finish, prompt_size(messages), self._usage(base)
        )
        return Turn(0.0, request, response, single=True)

    def _chat(self, base: dict[str, Any], system: str, served: str, created: int) -> list[Turn]:
        rng = self.rng
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
        # Threads never open with a frequent question: each conversation is its own example.
        question = self.corpus.fresh_question()
        turns = []
        offset = 0.0
        for index in range(rng.randint(2, 4)):
            asked = question if index == 0 else rng.choice(FOLLOW_UPS)
            messages = [*messages, {"role": "user", "content": asked}]
            content = self.corpus.answer()
            message = {"role": "assistant", "content": content}
            response = completion(
                rng, served, created, message, "stop", prompt_size(messages), self._usage(base)
            )
            turns.append(Turn(offset, {**base, "messages": messages}, response))
            messages = [*messages, message]
            offset += rng.uniform(15, 120)
        return turns

    def _tools(self, base: dict[str, Any], system: str, served: str, created: int) -> list[Turn]:
        rng = self.rng
        tools = rng.choice(self.corpus.toolsets)
        # Threads never open with a frequent question: each conversation is its own example.
        question = self.corpus.fresh_question()
        opening = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        request = {**base, "messages": opening, "tools": tools}
        if rng.random() < 0.3:
            request["parallel_tool_calls"] = True
        picked = rng.sample(tools, 2 if rng.random() < 0.1 else 1)
        calls = [
            {
                "id": "call_" + random_id(rng, 24),
                "type": "function",
                "function": {
                    "name": tool["function"]["name"],
                    "arguments": orjson.dumps(
                        {"id": str(rng.randint(1000, 99999)), "limit": rng.randint(1, 20)}
                    ).decode(),
                },
            }
            for tool in picked
        ]
        asked: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": calls}
        first = completion(
            rng, served, created, asked, "tool_calls", prompt_size(opening), self._usage(base)
        )
        results = [
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": orjson.dumps({"status": "ok", "detail": self.corpus.detail()}).decode(),
            }
            for call in calls
        ]
        followed: list[dict[str, Any]] = [*opening, asked, *results]
        message = {"role": "assistant", "content": self.corpus.answer()}
        second = completion(
            rng, served, created, message, "stop", prompt_size(followed), self._usage(base)
        )
        return [
            Turn(0.0, request, first),
            Turn(rng.uniform(1, 6), {**request, "messages": followed}, second),
        ]


def _error(rng: random.Random, request: dict[str, Any], served: str) -> Turn:
    roll = rng.random()
    if roll < 0.1:
        return Turn(0.0, request, None, error_kind="timeout")
    if roll < 0.6:
        status, code, text = (
            429,
            "rate_limit_exceeded",
            f"Rate limit reached for {served} on tokens per min (TPM): Limit 200000, "
            f"Used 199{rng.randint(100, 999)}, Requested {rng.randint(500, 3000)}. "
            "Please try again in 1.2s.",
        )
    elif roll < 0.8:
        status, code, text = (
            400,
            "context_length_exceeded",
            "This model's maximum context length is 128000 tokens. However, your messages "
            f"resulted in {rng.randint(128_001, 150_000)} tokens. Please reduce the length "
            "of the messages.",
        )
    else:
        status, code, text = (
            500,
            None,
            "The server had an error while processing your request. Sorry about that!",
        )
    kind = "invalid_request_error" if status == 400 else "requests" if status == 429 else "server"
    body = {"error": {"message": text, "type": kind, "param": None, "code": code}}
    return Turn(0.0, request, None, error_status=status, error_body=body)
