"""A Responses API turn with the conversation ``previous_response_id`` points at.

A Responses client sends only the new input of a turn and names the previous response; the
model sees that response's input and output before it. Expanded from the store, the turn
reads as the chat request a chat client would have sent, every earlier turn included, so it
threads with the datasets' turn-by-turn logic: the longest turn stands for the conversation.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from finetune.datasets._responses import answer_as_message, items_as_messages, request_as_chat
from storage import get_capture_by_completion_id

MAX_THREAD_DEPTH = 200
"""How far back a thread is followed; a longer one keeps its newest turns."""


def history_of(previous_id: Any, *, session: Session) -> list[dict[str, Any]]:
    """The conversation up to and including the response ``previous_id``, as chat messages
    (without system messages: each turn's ``instructions`` are its own)."""
    turns: list[list[dict[str, Any]]] = []
    seen: set[str] = set()
    while isinstance(previous_id, str) and previous_id not in seen and len(seen) < MAX_THREAD_DEPTH:
        seen.add(previous_id)
        capture = get_capture_by_completion_id(previous_id, session=session, api="responses")
        if capture is None:
            break
        answer = answer_as_message(capture.response)
        turn = [m for m in items_as_messages(capture.request.get("input")) if m["role"] != "system"]
        if answer is not None and (answer.get("content") or answer.get("tool_calls")):
            turn.append({k: v for k, v in answer.items() if v is not None})
        turns.append(turn)
        previous_id = capture.request.get("previous_response_id")
    return [message for turn in reversed(turns) for message in turn]


def thread_request(request: dict[str, Any], *, session: Session) -> dict[str, Any]:
    """The chat request of a Responses turn, its ``previous_response_id`` thread expanded."""
    history = history_of(request.get("previous_response_id"), session=session)
    return request_as_chat(request, history)
