"""The sandbox's ``POST /v1/responses``: the chat answer the same conversation gets, as a
Responses API object or as its stream of typed events.

The request is read as a chat conversation by the sandbox's own small reading (instructions,
message items, function calls and their outputs), so the answer is the one the sandbox's chat
completions give: deterministic, and the same whichever API asks.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.sandbox._chat import answer_message
from tests.sandbox._jobs import Sandbox


def _text(content: Any) -> Any:
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content


def chat_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if isinstance(request.get("instructions"), str) and request["instructions"]:
        messages.append({"role": "system", "content": request["instructions"]})
    items = request.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or "message"
        if kind == "message":
            role = "system" if item.get("role") == "developer" else item.get("role")
            messages.append({"role": role, "content": _text(item.get("content"))})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append(
                {"role": "tool", "tool_call_id": item.get("call_id"), "content": item.get("output")}
            )
    return messages


def _chat_tools(tools: Any) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("parameters")}}
        for t in tools or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]


def response(sandbox: Sandbox, request: dict[str, Any], number: int) -> dict[str, Any]:
    messages = chat_messages(request)
    chat = {
        "model": request.get("model"),
        "messages": messages,
        "tools": _chat_tools(request.get("tools")),
        "tool_choice": request.get("tool_choice"),
    }
    message = answer_message(sandbox, chat)
    output: list[dict[str, Any]] = []
    if message.get("content"):
        output.append(
            {
                "id": f"msg_sandbox{number:08d}",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": message["content"], "annotations": []}],
            }
        )
    for index, call in enumerate(message.get("tool_calls") or []):
        output.append(
            {
                "id": f"fc_sandbox{number:08d}_{index}",
                "type": "function_call",
                "status": "completed",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
            }
        )
    input_tokens = len(json.dumps(messages).split())
    output_tokens = len(json.dumps(output).split())
    return {
        "id": f"resp_sandbox{number:08d}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "model": request.get("model"),
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": request.get("previous_response_id"),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "metadata": request.get("metadata") or {},
    }


def stream_events(whole: dict[str, Any]) -> list[dict[str, Any]]:
    """The typed events a stream of ``whole`` is sent as, each with its sequence number."""
    start = {**whole, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": start},
        {"type": "response.in_progress", "response": start},
    ]
    for index, item in enumerate(whole["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            added = {**item, "status": "in_progress", "content": []}
            part = {"type": "output_text", "text": "", "annotations": []}
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": added}
            )
            events.append({"type": "response.content_part.added", **common, "part": part})
            for cut in range(0, len(text), 24):
                events.append(
                    {"type": "response.output_text.delta", **common, "delta": text[cut : cut + 24]}
                )
            events.append({"type": "response.output_text.done", **common, "text": text})
            events.append(
                {"type": "response.content_part.done", **common, "part": item["content"][0]}
            )
        else:
            added = {**item, "status": "in_progress", "arguments": ""}
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": added}
            )
            common = {"item_id": item["id"], "output_index": index}
            events.append(
                {
                    "type": "response.function_call_arguments.delta",
                    **common,
                    "delta": item["arguments"],
                }
            )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **common,
                    "arguments": item["arguments"],
                }
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": "response.completed", "response": whole})
    return [{**event, "sequence_number": n} for n, event in enumerate(events)]
