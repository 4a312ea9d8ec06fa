"""How a capture becomes a chat fine-tuning example, and how turn-by-turn captures thread.

A client holding a conversation sends all of it again with every turn, so each turn is captured
as a request that contains the previous ones. The longest capture stands for the conversation;
an assistant turn in it that no earlier capture answered (a few-shot example, a reply another
model or a person wrote) is kept as context with ``weight: 0``, so the student does not learn it.
"""

from __future__ import annotations

from typing import Any

import orjson

from finetune.datasets._prompt import normalise_text
from finetune.datasets._responses import response_as_completion

EXAMPLE_FIELDS = ("tools", "parallel_tool_calls", "functions")
"""Request fields a chat fine-tuning example carries beside its messages."""


def clean_tool_call(call: Any) -> Any:
    if not isinstance(call, dict):
        return call
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    cleaned: dict[str, Any] = {"id": call.get("id"), "type": call.get("type") or "function"}
    cleaned["function"] = {"name": function.get("name"), "arguments": function.get("arguments")}
    return cleaned


def _calls_a_tool(message: dict[str, Any]) -> bool:
    if isinstance(message.get("function_call"), dict):
        return True
    calls = message.get("tool_calls")
    return isinstance(calls, list) and bool(calls)


def clean_message(message: Any) -> Any:
    """The fields a fine-tuning message of its role may hold: response-only extras (refusal,
    annotations, audio) and empty values are dropped, and so is a tool message's ``name``,
    which the chat format does not take.

    An assistant turn that calls a tool and says nothing has no ``content``, whether it came
    as ``null`` (a non-streamed answer) or as ``""`` (a stream that opened with an empty text
    delta, captured as it was sent, or a client sending such a turn back): the same
    conversation exports the same bytes."""
    if not isinstance(message, dict):
        return message
    role = message.get("role")
    cleaned: dict[str, Any] = {"role": role}
    content = message.get("content")
    said_nothing = content in ("", []) and role == "assistant" and _calls_a_tool(message)
    if content is not None and not said_nothing:
        cleaned["content"] = content
    if role == "tool":
        if message.get("tool_call_id") is not None:
            cleaned["tool_call_id"] = message["tool_call_id"]
        return cleaned
    if message.get("name") is not None:
        cleaned["name"] = message["name"]
    if role != "assistant":
        return cleaned
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        cleaned["tool_calls"] = [clean_tool_call(call) for call in calls]
    function_call = message.get("function_call")
    if isinstance(function_call, dict):
        cleaned["function_call"] = {
            "name": function_call.get("name"),
            "arguments": function_call.get("arguments"),
        }
    return cleaned


def without_empty_turns(request: dict[str, Any]) -> dict[str, Any]:
    """The request without assistant turns that say nothing (no content, no call): some
    clients send one beside the turn that carries the call, and no format takes it."""
    messages = request["messages"]
    kept = [
        message
        for message in messages
        if not isinstance(message, dict)
        or message.get("role") != "assistant"
        or message.get("content") not in (None, "", [])
        or message.get("tool_calls")
        or message.get("function_call")
    ]
    return request if len(kept) == len(messages) else {**request, "messages": kept}


def answer_message(response: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the assistant message of the first choice, None) or (None, why it is no answer).

    A Responses API answer counts as the chat completion it amounts to."""
    if isinstance(response, dict) and response.get("object") == "response":
        response = response_as_completion(response)
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or not choices:
        return None, "no_answer"
    if len(choices) == 1:
        first = choices[0] if isinstance(choices[0], dict) else None
    else:
        first = min(
            (c for c in choices if isinstance(c, dict)),
            key=lambda c: c["index"] if isinstance(c.get("index"), int) else 0,
            default=None,
        )
    message = first.get("message") if first is not None else None
    if not isinstance(message, dict):
        return None, "no_answer"
    cleaned = clean_message({**message, "role": "assistant"})
    said = cleaned.get("content") not in (None, "") or "tool_calls" in cleaned
    if not said and "function_call" not in cleaned:
        return None, "refusal" if message.get("refusal") else "no_answer"
    return cleaned, None


def _canonical_arguments(arguments: Any) -> Any:
    # Clients re-serialise arguments when they send a turn back ({"a":1} vs {"a": 1}).
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
    return arguments


def _normalise_content(content: Any) -> Any:
    if isinstance(content, str):
        return normalise_text(content)
    if isinstance(content, list):
        return [
            normalise_text(part["text"])
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def normalise_turn(message: Any) -> Any:
    """What makes two turns the same turn: ids, nulls and spacing aside."""
    if not isinstance(message, dict):
        return message
    content = message.get("content")
    if len(message) == 2 and type(content) is str and "role" in message:
        # Most turns are a role and a text: the general road below, in one step.
        if content:
            return {"role": message["role"], "content": normalise_text(content)}
        return {"role": message["role"]}
    kept: dict[str, Any] = {"role": message.get("role")}
    if content not in (None, "", []):
        kept["content"] = _normalise_content(message["content"])
    for key in ("name", "tool_call_id"):
        if message.get(key):
            kept[key] = message[key]
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        kept["tool_calls"] = [
            [
                (c.get("function") or {}).get("name"),
                _canonical_arguments((c.get("function") or {}).get("arguments")),
            ]
            for c in calls
            if isinstance(c, dict)
        ]
    function_call = message.get("function_call")
    if isinstance(function_call, dict):
        kept["function_call"] = [
            function_call.get("name"),
            _canonical_arguments(function_call.get("arguments")),
        ]
    return kept


def mark_untaught(example: dict[str, Any], indices: list[int]) -> None:
    """Keep these assistant turns as context only (OpenAI's ``weight: 0``)."""
    for index in indices:
        example["messages"][index]["weight"] = 0
