"""Serve a Responses API client from an upstream that speaks only chat completions.

The request goes as the chat completion it amounts to (``finetune.request_as_chat``, the
``previous_response_id`` thread expanded from the store); the answer comes back as the
``response`` object, or the stream of typed Responses events, that the client asked for.
Translation is the one thing that has to happen on the request's way: the client reads the
translated bytes as they are made.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from finetune import request_as_chat

_CHAT_FIELDS = ("messages", "tools", "parallel_tool_calls", "temperature", "top_p", "user")


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{time.time_ns():016x}{os.urandom(8).hex()}"


def chat_request(
    payload: dict[str, Any], model: str, history: list[dict[str, Any]]
) -> dict[str, Any]:
    """The chat completions request for a Responses ``payload`` sent to ``model``."""
    translated = request_as_chat(payload, history)
    chat: dict[str, Any] = {k: translated[k] for k in _CHAT_FIELDS if k in translated}
    chat["model"] = model
    if isinstance(payload.get("max_output_tokens"), int):
        chat["max_completion_tokens"] = payload["max_output_tokens"]
    choice = payload.get("tool_choice")
    if isinstance(choice, str):
        chat["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    text = payload.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        chat["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    if payload.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    return {
        "input_tokens": usage.get("prompt_tokens") or 0,
        "input_tokens_details": {
            "cached_tokens": (prompt or {}).get("cached_tokens") or 0
            if isinstance(prompt, dict)
            else 0
        },
        "output_tokens": usage.get("completion_tokens") or 0,
        "output_tokens_details": {
            "reasoning_tokens": (completion or {}).get("reasoning_tokens") or 0
            if isinstance(completion, dict)
            else 0
        },
        "total_tokens": usage.get("total_tokens") or 0,
    }


def _shell(payload: dict[str, Any], response_id: str, model: str, created: int) -> dict[str, Any]:
    """The response object's fields that come from the request."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": payload.get("parallel_tool_calls", True),
        "previous_response_id": payload.get("previous_response_id"),
        "reasoning": payload.get("reasoning"),
        "store": payload.get("store", True),
        "temperature": payload.get("temperature"),
        "text": payload.get("text") or {"format": {"type": "text"}},
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p"),
        "truncation": payload.get("truncation", "disabled"),
        "usage": None,
        "user": payload.get("user"),
        "metadata": payload.get("metadata") or {},
    }


def _finish(response: dict[str, Any], finish_reason: Any) -> None:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}
    else:
        response["status"] = "completed"


def _message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    function = call.get("function") or {}
    return {
        "id": new_item_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call.get("id") or new_item_id("call"),
        "name": function.get("name") or "",
        "arguments": function.get("arguments") or "",
    }


def response_from_completion(
    completion: dict[str, Any], payload: dict[str, Any], response_id: str
) -> dict[str, Any]:
    """The ``response`` object a non-streamed ``chat.completion`` amounts to."""
    created = completion.get("created")
    model = completion.get("model") or payload.get("model") or ""
    response = _shell(payload, response_id, str(model), created if isinstance(created, int) else 0)
    choices = completion.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if isinstance(message.get("content"), str) and message["content"]:
        output.append(_message_item(new_item_id("msg"), message["content"]))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            output.append(_call_item(call))
    response["output"] = output
    response["usage"] = _usage(completion.get("usage"))
    _finish(response, choice.get("finish_reason"))
    return response


class StreamTranslator:
    """Chat completion chunks in, Responses API events out, as they arrive."""

    def __init__(self, payload: dict[str, Any], response_id: str) -> None:
        self._payload = payload
        self._response = _shell(payload, response_id, str(payload.get("model") or ""), 0)
        self._buffer = b""
        self._sequence = 0
        self._started = False
        self._indices = 0
        self._text: list[str] | None = None
        self._message_id = new_item_id("msg")
        self._message_index = -1
        self._calls: dict[int, tuple[int, dict[str, Any]]] = {}
        self._finish_reason: Any = None
        self._usage: Any = None
        self.completed = False

    def feed(self, data: bytes) -> bytes:
        """The Responses events for the chat SSE bytes ``data`` (any cut of the stream)."""
        self._buffer += data.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        while (end := self._buffer.find(b"\n\n")) != -1:
            event, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append(self._chunk(line[5:].strip()))
        return b"".join(out)

    def _emit(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"

    def _start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._response["model"] = chunk["model"]
        if isinstance(chunk.get("created"), int):
            self._response["created_at"] = chunk["created"]
        return self._emit("response.created", response=self._response) + self._emit(
            "response.in_progress", response=self._response
        )

    def _chunk(self, data: bytes) -> bytes:
        if data == b"[DONE]":
            return self.finish()
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        out = b"" if self._started else self._start(chunk)
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out += self._text_delta(delta["content"])
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    out += self._call_delta(call)
            if choice.get("finish_reason") is not None:
                self._finish_reason = choice["finish_reason"]
        return out

    def _text_delta(self, text: str) -> bytes:
        out = b""
        if self._text is None:
            self._text = []
            self._message_index = self._indices
            self._indices += 1
            item = _message_item(self._message_id, "", status="in_progress")
            item["content"] = []
            out += self._emit(
                "response.output_item.added", output_index=self._message_index, item=item
            )
            out += self._emit(
                "response.content_part.added",
                item_id=self._message_id,
                output_index=self._message_index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        self._text.append(text)
        return out + self._emit(
            "response.output_text.delta",
            item_id=self._message_id,
            output_index=self._message_index,
            content_index=0,
            delta=text,
        )

    def _call_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        position = call.get("index", len(self._calls))
        function = call.get("function") or {}
        if position not in self._calls:
            item = _call_item(
                {"id": call.get("id"), "function": {"name": function.get("name")}},
                status="in_progress",
            )
            self._calls[position] = (self._indices, item)
            out += self._emit("response.output_item.added", output_index=self._indices, item=item)
            self._indices += 1
        index, item = self._calls[position]
        arguments = function.get("arguments") or ""
        if arguments:
            item["arguments"] += arguments
            out += self._emit(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=index,
                delta=arguments,
            )
        return out

    def finish(self) -> bytes:
        """The closing events: every item done, then the terminal event with the response."""
        if self.completed:
            return b""
        self.completed = True
        out = b"" if self._started else self._start({})
        items: dict[int, dict[str, Any]] = {}
        if self._text is not None:
            text = "".join(self._text)
            part = {"type": "output_text", "text": text, "annotations": []}
            common = {"item_id": self._message_id, "output_index": self._message_index}
            out += self._emit("response.output_text.done", **common, content_index=0, text=text)
            out += self._emit("response.content_part.done", **common, content_index=0, part=part)
            items[self._message_index] = _message_item(self._message_id, text)
        for index, item in self._calls.values():
            out += self._emit(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=item["arguments"],
            )
            items[index] = {**item, "status": "completed"}
        for index in sorted(items):
            out += self._emit("response.output_item.done", output_index=index, item=items[index])
        self._response["output"] = [items[i] for i in sorted(items)]
        self._response["usage"] = _usage(self._usage)
        _finish(self._response, self._finish_reason)
        kind = (
            "response.completed"
            if self._response["status"] == "completed"
            else ("response.incomplete")
        )
        return out + self._emit(kind, response=self._response)
