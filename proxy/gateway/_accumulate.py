"""Rebuild the ``chat.completion`` a non-streaming call would have returned, from SSE bytes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

# "obfuscation" pads each chunk to hide its length: noise, not part of the answer.
_TOP_LEVEL_SKIP = {"choices", "object", "usage", "obfuscation"}
_CHOICE_KNOWN = {"index", "delta", "finish_reason", "logprobs"}
_DELTA_KNOWN = {"role", "content", "refusal", "tool_calls", "function_call"}


def iter_sse_data(body: bytes) -> Iterator[bytes]:
    """Yield each event's ``data`` payload; comments and other fields are skipped."""
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [
            line[5:].removeprefix(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
        ]
        if data:
            yield b"\n".join(data)


class _Choice:
    __slots__ = (
        "choice_extra",
        "content",
        "extra",
        "finish_reason",
        "function_call",
        "index",
        "logprobs_content",
        "logprobs_refusal",
        "refusal",
        "role",
        "saw_logprobs",
        "tool_calls",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.content: list[str] | None = None
        self.refusal: list[str] | None = None
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.function_call: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.saw_logprobs = False
        self.logprobs_content: list[Any] | None = None
        self.logprobs_refusal: list[Any] | None = None
        self.choice_extra: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}

    def feed(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("role"):
            self.role = delta["role"]
        if delta.get("content") is not None:
            self.content = (self.content or []) + [delta["content"]]
        if delta.get("refusal") is not None:
            self.refusal = (self.refusal or []) + [delta["refusal"]]
        for call in delta.get("tool_calls") or []:
            self._feed_tool_call(call)
        if delta.get("function_call"):
            fc = self.function_call or {"name": "", "arguments": ""}
            fc["name"] += delta["function_call"].get("name") or ""
            fc["arguments"] += delta["function_call"].get("arguments") or ""
            self.function_call = fc
        for key, value in delta.items():
            if key not in _DELTA_KNOWN and value is not None:
                self.extra[key] = value
        if choice.get("finish_reason") is not None:
            self.finish_reason = choice["finish_reason"]
        logprobs = choice.get("logprobs")
        if logprobs is not None:
            self.saw_logprobs = True
            if logprobs.get("content") is not None:
                self.logprobs_content = (self.logprobs_content or []) + logprobs["content"]
            if logprobs.get("refusal") is not None:
                self.logprobs_refusal = (self.logprobs_refusal or []) + logprobs["refusal"]
        for key, value in choice.items():
            if key not in _CHOICE_KNOWN and value is not None:
                self.choice_extra[key] = value

    def _feed_tool_call(self, call: dict[str, Any]) -> None:
        index = call.get("index", len(self.tool_calls))
        current = self.tool_calls.get(index)
        if current is None:
            current = {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            self.tool_calls[index] = current
        if call.get("id"):
            current["id"] = call["id"]
        if call.get("type"):
            current["type"] = call["type"]
        function = call.get("function") or {}
        name = function.get("name") or ""
        # OpenAI sends a tool's name once; some compatible servers repeat it in every delta.
        if name != current["function"]["name"]:
            current["function"]["name"] += name
        current["function"]["arguments"] += function.get("arguments") or ""

    def build(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.content) if self.content is not None else None,
            "refusal": "".join(self.refusal) if self.refusal is not None else None,
        }
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.function_call is not None:
            message["function_call"] = self.function_call
        message.update(self.extra)
        built: dict[str, Any] = {
            "index": self.index,
            "message": message,
            "finish_reason": self.finish_reason,
            "logprobs": None,
        }
        if self.saw_logprobs:
            built["logprobs"] = {"content": self.logprobs_content, "refusal": self.logprobs_refusal}
        built.update(self.choice_extra)
        return built


class StreamError(Exception):
    """The stream carried an ``error`` event instead of (or after) chunks."""

    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.error = error


def accumulate_chunks(chunks: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """Fold ``chat.completion.chunk`` objects into one ``chat.completion``; None if no chunk."""
    completion: dict[str, Any] = {}
    choices: dict[int, _Choice] = {}
    usage: Any = None
    seen = False
    for chunk in chunks:
        if "error" in chunk and "choices" not in chunk:
            raise StreamError(chunk["error"])
        seen = True
        for key, value in chunk.items():
            # Azure's first chunk has empty id/model: later chunks fill them in.
            if key not in _TOP_LEVEL_SKIP and value not in (None, "") and not completion.get(key):
                completion[key] = value
        for choice in chunk.get("choices") or []:
            index = choice.get("index", 0)
            choices.setdefault(index, _Choice(index)).feed(choice)
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
    if not seen:
        return None
    completion["object"] = "chat.completion"
    completion["choices"] = [choices[i].build() for i in sorted(choices)]
    completion["usage"] = usage
    return completion


def accumulate_sse(body: bytes) -> dict[str, Any] | None:
    """Parse an SSE body (possibly cut short) into a ``chat.completion``."""
    chunks = []
    for data in iter_sse_data(body):
        if data.strip() == b"[DONE]":
            break
        try:
            chunks.append(orjson.loads(data))
        except orjson.JSONDecodeError:
            # A stream cut mid-event leaves a partial last payload; keep what came whole.
            continue
    return accumulate_chunks(chunks)
