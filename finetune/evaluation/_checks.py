"""Deterministic checks of an answer against the teacher's: no judge, the same verdict every time.

Only the checks that apply to an example are reported, so a pass rate is "of those it applied
to": a JSON check where JSON was asked, tool checks where the teacher called tools or tools were
offered, and always exact match and a text similarity figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from difflib import SequenceMatcher
from typing import Any

import orjson

from finetune.datasets._prompt import normalise_text

PASS_FAIL_CHECKS = (
    "json_valid",
    "json_required_keys",
    "tool_names",
    "tool_arguments",
    "no_tool_call",
    "exact_match",
)
"""The checks that pass or fail; ``similarity`` is a figure from 0 to 1."""


def tool_calls_of(message: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The function calls of an answer, legacy ``function_call`` included."""
    if not message:
        return []
    calls = [
        call["function"]
        for call in message.get("tool_calls") or []
        if isinstance(call, dict) and isinstance(call.get("function"), dict)
    ]
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append(legacy)
    return calls


def text_of(message: Mapping[str, Any] | None) -> str:
    """What an answer says, as one string: its text, then each call as name(arguments)."""
    if not message:
        return ""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    parts = [content] if isinstance(content, str) and content else []
    if isinstance(message.get("refusal"), str):
        parts.append(message["refusal"])
    parts += [f"{call.get('name')}({call.get('arguments')})" for call in tool_calls_of(message)]
    return "\n".join(parts)


def _parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, None


def _json_checks(response_format: Any, answer_text: str) -> dict[str, bool]:
    if not isinstance(response_format, dict):
        return {}
    kind = response_format.get("type")
    if kind not in ("json_object", "json_schema"):
        return {}
    valid, value = _parse_json(answer_text)
    found = {"json_valid": valid and (kind == "json_schema" or isinstance(value, dict))}
    schema = (response_format.get("json_schema") or {}).get("schema")
    required = schema.get("required") if isinstance(schema, dict) else None
    if isinstance(required, list) and required:
        found["json_required_keys"] = isinstance(value, dict) and all(
            key in value for key in required
        )
    return found


def _arguments_are_objects(calls: list[dict[str, Any]]) -> bool:
    for call in calls:
        arguments = call.get("arguments")
        valid, value = _parse_json(arguments) if isinstance(arguments, str) else (False, None)
        if not valid or not isinstance(value, dict):
            return False
    return True


def _tool_checks(
    request: Mapping[str, Any], teacher: Mapping[str, Any], candidate: Mapping[str, Any] | None
) -> dict[str, bool]:
    expected, given = tool_calls_of(teacher), tool_calls_of(candidate)
    if expected:
        return {
            "tool_names": sorted(str(c.get("name")) for c in given)
            == sorted(str(c.get("name")) for c in expected),
            "tool_arguments": bool(given) and _arguments_are_objects(given),
        }
    if request.get("tools") or request.get("functions"):
        return {"no_tool_call": not given}
    return {}


def run_checks(
    request: Mapping[str, Any], teacher: Mapping[str, Any], candidate: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every check that applies to this example: name -> passed (or, for ``similarity``, the
    ratio of matching characters of the two normalised texts, 0 to 1).

    ``request`` is what the model was asked (its ``response_format``, ``tools``);
    ``candidate`` is None when the model gave no answer, which fails every check.
    """
    answer_text = text_of(candidate)
    teacher_text = text_of(teacher)
    content = (candidate or {}).get("content")
    found: dict[str, Any] = _json_checks(
        request.get("response_format"), content if isinstance(content, str) else ""
    )
    found.update(_tool_checks(request, teacher, candidate))
    ours, theirs = normalise_text(answer_text), normalise_text(teacher_text)
    found["exact_match"] = candidate is not None and ours == theirs
    similarity = SequenceMatcher(None, ours.casefold(), theirs.casefold(), autojunk=False).ratio()
    found["similarity"] = round(similarity, 4) if candidate is not None else 0.0
    return found
