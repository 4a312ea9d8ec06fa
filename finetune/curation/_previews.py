"""What a row of the capture list shows of the conversation: the last thing the user said, the
start of the answer or the tools it called, and whether an edit replaced it.

Read for one page of captures at a time: the request's messages and the first choice's message
(a Responses capture's input and output, read as chat), never whole bodies, plus the newest edit of those captures that have one.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from finetune.datasets._responses import answer_as_message, request_as_chat
from storage import conversation_ends, latest_edit_messages

PREVIEW_CHARS = 200
"""How much of a message a row shows; the rest is a click away."""


@dataclass(frozen=True, slots=True)
class CapturePreview:
    edited: bool
    """An edit replaced the upstream's answer."""
    last_user_text: str | None
    """The last user message, whitespace folded, cut at ``PREVIEW_CHARS``."""
    answer_text: str | None
    """The start of the current answer (the newest edit, else the original)."""
    answer_tools: list[str]
    """Names of the tools the current answer called, in order."""

    def fields(self) -> dict[str, Any]:
        return {
            "edited": self.edited,
            "last_user_text": self.last_user_text,
            "answer_text": self.answer_text,
            "answer_tools": list(self.answer_tools),
        }


def capture_previews(
    capture_ids: Collection[str], *, session: Session
) -> dict[str, CapturePreview]:
    """The preview of each capture in ``capture_ids`` that exists."""
    ends = conversation_ends(capture_ids, session=session)
    edits = latest_edit_messages(list(ends), session=session)
    previews = {}
    for capture_id, (messages, original) in ends.items():
        if isinstance(messages, Mapping):
            # A Responses capture: its input and output read as chat.
            messages = request_as_chat(dict(messages)).get("messages")
            original = answer_as_message(original)
        answer = edits.get(capture_id, original)
        previews[capture_id] = preview(messages, answer, edited=capture_id in edits)
    return previews


def preview(messages: Any, answer: Any, *, edited: bool) -> CapturePreview:
    """A preview from a request's ``messages`` and the assistant message that answers them."""
    answer = answer if isinstance(answer, Mapping) else {}
    return CapturePreview(
        edited=edited,
        last_user_text=_last_user_text(messages),
        answer_text=_shortened(_text(answer.get("content"))),
        answer_tools=_tool_names(answer),
    )


def _last_user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _shortened(_text(message.get("content")))
    return None


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    pieces: list[str] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        if isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif isinstance(part.get("type"), str):
            pieces.append(f"[{part['type']}]")
    return " ".join(pieces)


def _shortened(text: str) -> str | None:
    folded = " ".join(text.split())
    if not folded:
        return None
    if len(folded) <= PREVIEW_CHARS:
        return folded
    return folded[: PREVIEW_CHARS - 1].rstrip() + "…"


def _tool_names(answer: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    calls = answer.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, Mapping) else None
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.append(function["name"])
    legacy = answer.get("function_call")
    if isinstance(legacy, Mapping) and isinstance(legacy.get("name"), str):
        names.append(legacy["name"])
    return names
