"""LLM judges: a 1-5 rubric score of an answer against the teacher's, and a pairwise comparison
shown in random order.

A judge never crashes an evaluation: a failed call or a verdict that cannot be read becomes a
verdict with an ``error`` and no score, recorded beside the example.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from finetune.evaluation._checks import text_of

Complete = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Sends a chat-completion body upstream (with retries) and returns the completion."""

Position = Literal["A", "B"]
Outcome = Literal["win", "tie", "loss"]

_SECTION_CHARS = 24_000
"""Longest text of one section shown to a judge: enough for real answers, bounded cost."""

RUBRIC_SYSTEM = """You grade an AI assistant's answer against a reference answer written by \
a stronger model for the same conversation.
Score from 1 to 5:
5 - as good as the reference or better: correct, complete, same intent (equivalent tool calls).
4 - correct, with minor omissions or wording problems.
3 - partly correct, or incomplete in a way the user would notice.
2 - mostly wrong or unhelpful, with some relevant content.
1 - wrong, off-topic, harmful, or no answer.
Judge substance, not style or length.
Reply with JSON only: {"score": <1-5>, "reason": "<one sentence>"}"""

PAIRWISE_SYSTEM = """You compare two AI assistant answers, A and B, to the same conversation.
Decide which answer serves the user better: correctness first, then completeness, then \
clarity. The order in which they are shown means nothing. Answer "tie" when neither is better.
Reply with JSON only: {"winner": "A" | "B" | "tie", "reason": "<one sentence>"}"""

RUBRIC_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "rubric_verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "score": {"type": "integer", "enum": [1, 2, 3, 4, 5]},
                "reason": {"type": "string"},
            },
            "required": ["score", "reason"],
            "additionalProperties": False,
        },
    },
}

PAIRWISE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "pairwise_verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "winner": {"type": "string", "enum": ["A", "B", "tie"]},
                "reason": {"type": "string"},
            },
            "required": ["winner", "reason"],
            "additionalProperties": False,
        },
    },
}


class CallFailed(Exception):
    """An upstream call gave no completion, retries included; the message says why."""


class BadVerdict(ValueError):
    """The judge answered, but not with a verdict we can read."""


@dataclass(frozen=True, slots=True)
class RubricVerdict:
    score: int | None
    reason: str | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class PairwiseVerdict:
    candidate_position: Position
    outcome: Outcome | None
    reason: str | None
    error: str | None = None


def _clip(text: str) -> str:
    if len(text) <= _SECTION_CHARS:
        return text
    return text[:_SECTION_CHARS] + f"\n[... {len(text) - _SECTION_CHARS} characters cut]"


def render_conversation(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n\n".join(
        f"[{message.get('role', '?')}]\n{_clip(text_of(message)) or '(empty)'}"
        for message in messages
    )


def _answer(message: Mapping[str, Any] | None) -> str:
    return _clip(text_of(message)) or "(no answer)"


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


def _verdict_object(completion: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object a judge answered with; tolerant of code fences and chatter around it."""
    choices = completion.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or not content.strip():
        raise BadVerdict("the judge gave no text")
    text = _FENCE.sub("", content.strip())
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise BadVerdict(f"the judge's verdict is not JSON: {content[:200]!r}")
    try:
        value = orjson.loads(text[start : end + 1])
    except orjson.JSONDecodeError:
        raise BadVerdict(f"the judge's verdict is not JSON: {content[:200]!r}") from None
    if not isinstance(value, dict):
        raise BadVerdict("the judge's verdict is not a JSON object")
    return value


def _reason(verdict: Mapping[str, Any]) -> str | None:
    reason = verdict.get("reason")
    return reason if isinstance(reason, str) else None


def parse_rubric(completion: Mapping[str, Any]) -> RubricVerdict:
    """Read ``{"score": 1-5, "reason": ...}``; raises BadVerdict otherwise."""
    verdict = _verdict_object(completion)
    raw = verdict.get("score")
    score: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        score = raw
    elif isinstance(raw, float) and raw.is_integer():
        score = int(raw)
    elif isinstance(raw, str) and raw.strip().isdigit():
        score = int(raw.strip())
    if score is None or not 1 <= score <= 5:
        raise BadVerdict(f"the judge's score is not 1 to 5: {raw!r}")
    return RubricVerdict(score=score, reason=_reason(verdict))


def parse_pairwise(completion: Mapping[str, Any], candidate_position: Position) -> PairwiseVerdict:
    """Read ``{"winner": "A" | "B" | "tie", ...}`` and map it back to the candidate's outcome."""
    verdict = _verdict_object(completion)
    winner = verdict.get("winner")
    winner = winner.strip().upper() if isinstance(winner, str) else winner
    outcome: Outcome
    if winner == "TIE":
        outcome = "tie"
    elif winner in ("A", "B"):
        outcome = "win" if winner == candidate_position else "loss"
    else:
        raise BadVerdict(f"the judge's winner is not A, B or tie: {verdict.get('winner')!r}")
    return PairwiseVerdict(candidate_position, outcome, _reason(verdict))


def rubric_request(
    judge_model: str,
    prompt: Sequence[Mapping[str, Any]],
    teacher: Mapping[str, Any],
    candidate: Mapping[str, Any] | None,
) -> dict[str, Any]:
    user = (
        f"## Conversation\n{render_conversation(prompt)}\n\n"
        f"## Reference answer\n{_answer(teacher)}\n\n"
        f"## Answer to grade\n{_answer(candidate)}"
    )
    return {
        "model": judge_model,
        "messages": [
            {"role": "system", "content": RUBRIC_SYSTEM},
            {"role": "user", "content": user},
        ],
        "response_format": RUBRIC_FORMAT,
        "temperature": 0,
    }


def pairwise_request(
    judge_model: str,
    prompt: Sequence[Mapping[str, Any]],
    teacher: Mapping[str, Any],
    candidate: Mapping[str, Any] | None,
    candidate_position: Position,
) -> dict[str, Any]:
    first, second = (candidate, teacher) if candidate_position == "A" else (teacher, candidate)
    user = (
        f"## Conversation\n{render_conversation(prompt)}\n\n"
        f"## Answer A\n{_answer(first)}\n\n"
        f"## Answer B\n{_answer(second)}"
    )
    return {
        "model": judge_model,
        "messages": [
            {"role": "system", "content": PAIRWISE_SYSTEM},
            {"role": "user", "content": user},
        ],
        "response_format": PAIRWISE_FORMAT,
        "temperature": 0,
    }


async def judge_rubric(
    complete: Complete,
    judge_model: str,
    prompt: Sequence[Mapping[str, Any]],
    teacher: Mapping[str, Any],
    candidate: Mapping[str, Any] | None,
) -> RubricVerdict:
    try:
        completion = await complete(rubric_request(judge_model, prompt, teacher, candidate))
        return parse_rubric(completion)
    except (CallFailed, BadVerdict) as exc:
        return RubricVerdict(score=None, reason=None, error=f"rubric: {exc}")


async def judge_pairwise(
    complete: Complete,
    judge_model: str,
    prompt: Sequence[Mapping[str, Any]],
    teacher: Mapping[str, Any],
    candidate: Mapping[str, Any] | None,
    candidate_position: Position,
) -> PairwiseVerdict:
    body = pairwise_request(judge_model, prompt, teacher, candidate, candidate_position)
    try:
        return parse_pairwise(await complete(body), candidate_position)
    except (CallFailed, BadVerdict) as exc:
        return PairwiseVerdict(candidate_position, None, None, error=f"pairwise: {exc}")
