"""Export lines into what the trainers take: the model's own chat template renders each
conversation; loss falls on assistant tokens only, and not on a ``weight: 0`` assistant turn.

No heavy import here: the tokenizer is passed in (any Hugging Face fast tokenizer).
"""

from __future__ import annotations

from typing import Any

import orjson

IGNORE = -100
"""The label of a token that carries no loss."""


class TemplateError(ValueError):
    """The chat template renders a conversation's prefix differently from the whole."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _arguments(value: Any) -> Any:
    """OpenAI sends tool-call arguments as JSON text; chat templates expect an object."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def clean_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as chat templates expect it: text content, tool-call arguments as objects,
    no ``weight``."""
    role = message.get("role")
    cleaned: dict[str, Any] = {"role": role}
    calls = message.get("tool_calls")
    if message.get("content") is not None or not calls:
        cleaned["content"] = _text(message.get("content"))
    if calls:
        cleaned["tool_calls"] = [
            {
                **call,
                "function": {
                    **call.get("function", {}),
                    "arguments": _arguments(call.get("function", {}).get("arguments")),
                },
            }
            for call in calls
            if isinstance(call, dict)
        ]
    for key in ("tool_call_id", "name"):
        if key in message:
            cleaned[key] = message[key]
    return cleaned


def _trained(message: Any) -> bool:
    return (
        isinstance(message, dict)
        and message.get("role") == "assistant"
        and message.get("weight", 1) != 0
    )


def encode_sft(
    tokenizer: Any, example: dict[str, Any], max_length: int
) -> dict[str, list[int]] | None:
    """``input_ids`` and ``labels`` of one SFT line, or None when no assistant token is left to
    learn from (all weighted 0, or truncated away). Raises ``TemplateError`` when the template
    is not prefix-stable (its rendering of a conversation's start differs from the whole's)."""
    originals = example.get("messages") or []
    messages = [clean_message(m) for m in originals if isinstance(m, dict)]
    tools = example.get("tools") or None

    def render(part: list[dict[str, Any]], *, prompt: bool = False) -> str:
        if not part:
            return ""
        text = tokenizer.apply_chat_template(
            part, tools=tools, tokenize=False, add_generation_prompt=prompt
        )
        return str(text)

    full = render(messages)
    spans: list[tuple[int, int]] = []
    for index, original in enumerate(originals):
        if not _trained(original):
            continue
        before = render(messages[:index], prompt=True)
        through = render(messages[: index + 1])
        if not (full.startswith(through) and through.startswith(before)):
            raise TemplateError(
                "the chat template renders a conversation's start differently from the whole "
                "conversation, so assistant turns cannot be told apart"
            )
        spans.append((len(before), len(through)))
    if not spans:
        return None
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(encoded["input_ids"])[:max_length]
    offsets = list(encoded["offset_mapping"])[:max_length]
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE
        for token, (begin, _) in zip(ids, offsets, strict=True)
    ]
    if all(label == IGNORE for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def dpo_row(example: dict[str, Any]) -> dict[str, Any] | None:
    """A preference line as DPO's conversational ``prompt`` / ``chosen`` / ``rejected``."""
    source = example.get("input") or {}
    prompt = [clean_message(m) for m in source.get("messages") or [] if isinstance(m, dict)]
    chosen = [clean_message(m) for m in example.get("preferred_output") or []]
    rejected = [clean_message(m) for m in example.get("non_preferred_output") or []]
    if not prompt or not chosen or not rejected:
        return None
    tools = source.get("tools")
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "tools": orjson.dumps(tools).decode() if tools else None,
    }
