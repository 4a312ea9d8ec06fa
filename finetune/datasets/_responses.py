"""A Responses API exchange seen as the chat completion it amounts to.

Curation, datasets and export speak chat: ``messages`` and a ``chat.completion``. A Responses
request says the same with other words - ``instructions`` and ``input`` items - so it is read
through these pure functions:

- ``instructions`` -> a system message first;
- ``message`` input items -> messages of their role (``developer`` -> ``system``), text parts
  joined into the message's content, images kept as ``image_url`` parts;
- ``function_call`` items -> an assistant message's ``tool_calls`` (consecutive calls, and a
  call right after the assistant's text, share one assistant message);
- ``function_call_output`` items -> ``tool`` messages;
- function tools -> chat tools; other tools (web search, file search...) have no chat form;
- the response's output: text -> the assistant's content, function calls -> its tool calls.

Reasoning items are left out: they are the model's own scratch work, often encrypted, and the
chat fine-tuning format has no place for them.
"""

from __future__ import annotations

from typing import Any

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text")


def _text_of(content: Any) -> str | list[dict[str, Any]] | None:
    """A message's content in chat form: one string when it is all text, else parts."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts: list[str] = []
    parts: list[dict[str, Any]] = []
    only_text = True
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            only_text = False
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
    if only_text:
        return "".join(texts) if texts else None
    return parts


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item.get("call_id") or item.get("id"),
        "type": "function",
        "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
    }


def _output_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        text = _text_of(output)
        return text if isinstance(text, str) else ""
    return "" if output is None else str(output)


def items_as_messages(items: Any) -> list[dict[str, Any]]:
    """Responses input (a string or a list of items) as chat messages."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    if not isinstance(items, list):
        return messages
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is not None:
                messages.append({"role": role, "content": _text_of(item.get("content"))})
        elif kind == "function_call":
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(_tool_call(item))
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": []})
                messages[-1]["tool_calls"].append(_tool_call(item))
        elif kind == "function_call_output":
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": _output_text(item.get("output")),
                }
            )
    return messages


def tools_as_chat(tools: Any) -> list[dict[str, Any]]:
    """Function tools in chat form; the built-in tools have none and are left out."""
    chat: list[dict[str, Any]] = []
    for tool in tools if isinstance(tools, list) else []:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            continue
        function: dict[str, Any] = {"name": tool.get("name")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        chat.append({"type": "function", "function": function})
    return chat


def request_as_chat(
    request: dict[str, Any], history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The chat completions request a Responses request amounts to.

    ``history`` is the conversation before this turn (what ``previous_response_id`` points at),
    as chat messages, without its system message: this turn's ``instructions`` replace the
    earlier ones, as the Responses API does."""
    messages: list[dict[str, Any]] = []
    instructions = request.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):
        messages.extend(items_as_messages(instructions))
    messages.extend(m for m in history or [] if m.get("role") != "system")
    messages.extend(items_as_messages(request.get("input")))
    chat: dict[str, Any] = {"messages": messages}
    for key in ("model", "user", "metadata", "store", "temperature", "top_p", "safety_identifier"):
        if request.get(key) is not None:
            chat[key] = request[key]
    tools = tools_as_chat(request.get("tools"))
    if tools:
        chat["tools"] = tools
        if isinstance(request.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = request["parallel_tool_calls"]
    return chat


def answer_as_message(response: Any) -> dict[str, Any] | None:
    """The assistant message a response's output amounts to; None when it has no output."""
    output = response.get("output") if isinstance(response, dict) else None
    if not isinstance(output, list):
        return None
    texts: list[str] = []
    refusals: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
                    refusals.append(part["refusal"])
        elif item.get("type") == "function_call":
            calls.append(_tool_call(item))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": "".join(refusals) if refusals else None,
    }
    if calls:
        message["tool_calls"] = calls
    return message


def finish_reason_of(response: Any) -> str | None:
    """The chat ``finish_reason`` a response's status amounts to."""
    if not isinstance(response, dict):
        return None
    status = response.get("status")
    if status == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    if status != "completed":
        return None
    output = response.get("output")
    calls = isinstance(output, list) and any(
        isinstance(item, dict) and item.get("type") == "function_call" for item in output
    )
    return "tool_calls" if calls else "stop"


def usage_as_chat(usage: Any) -> dict[str, Any] | None:
    """Responses usage (input/output tokens) under the chat names, details kept."""
    if not isinstance(usage, dict):
        return None
    chat: dict[str, Any] = {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
    }
    if isinstance(usage.get("input_tokens_details"), dict):
        chat["prompt_tokens_details"] = usage["input_tokens_details"]
    if isinstance(usage.get("output_tokens_details"), dict):
        chat["completion_tokens_details"] = usage["output_tokens_details"]
    return chat


def response_as_completion(response: Any) -> dict[str, Any] | None:
    """The ``chat.completion`` a response amounts to; None when it has no output."""
    message = answer_as_message(response)
    if message is None or not isinstance(response, dict):
        return None
    return {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": response.get("created_at"),
        "model": response.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason_of(response)}],
        "usage": usage_as_chat(response.get("usage")),
    }


def is_responses_exchange(request: Any, response: Any) -> bool:
    """Whether a capture's bodies are a Responses API exchange rather than a chat completion."""
    if isinstance(response, dict) and response.get("object") == "response":
        return True
    return isinstance(request, dict) and "input" in request and "messages" not in request
