"""The sandbox's chat completions: deterministic answers derived from model and prompt.

Any model that is not a sandbox ``ft:`` model answers with words picked by a hash of (model,
prompt), so the same question always gets the same answer and two models answer differently.
A sandbox ``ft:`` model answers exactly as its training data did on prompts it was trained on
(it has learnt the teacher), and like its base model elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from tests.sandbox._jobs import ORGANISATION, Sandbox, last_user_text

_WORDS = [
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "iris",
    "juniper",
    "kestrel",
    "lumen",
    "marble",
    "nectar",
    "onyx",
    "pepper",
    "quartz",
    "russet",
    "saffron",
    "tundra",
    "umber",
    "velvet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
]


def answer_text(model: str, messages: list[Any]) -> str:
    digest = hashlib.sha256(f"{model}\n{json.dumps(messages, sort_keys=True)}".encode()).digest()
    words = " ".join(_WORDS[byte % len(_WORDS)] for byte in digest[:8])
    question = last_user_text(messages)[:80]
    return f"[{model}] On '{question}': {words}."


def _wants_json(request: dict[str, Any]) -> bool:
    response_format = request.get("response_format") or {}
    return isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    )


def _tool_call(request: dict[str, Any], model: str, messages: list[Any]) -> dict[str, Any] | None:
    """Each offered tool is called once, in order (a hand-off is a tool too); once every one
    has been called, the model answers."""
    tools = request.get("tools") or []
    if not tools or request.get("tool_choice") == "none":
        return None
    called = {
        (call.get("function") or {}).get("name")
        for message in messages
        if isinstance(message, dict) and message.get("role") == "assistant"
        for call in message.get("tool_calls") or []
        if isinstance(call, dict)
    }
    names = [tool.get("function", {}).get("name", "tool") for tool in tools]
    name = next((n for n in names if n not in called), None)
    if name is None:
        return None
    arguments = json.dumps({"query": last_user_text(messages)})
    call_id = "call_" + hashlib.sha256(f"{model}{name}{arguments}".encode()).hexdigest()[:20]
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _share(text: str) -> float:
    """A stable point in [0, 1) for ``text``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _section(text: str, title: str) -> str:
    start = text.find(f"## {title}\n")
    if start < 0:
        return ""
    body = text[start + len(title) + 4 :]
    end = body.find("\n\n## ")
    return body if end < 0 else body[:end]


def judge_verdict(messages: list[Any]) -> dict[str, Any] | None:
    """The sandbox judge, for stillroom's rubric and pairwise prompts: the same answer as the
    reference scores 5 (or ties); a different one scores 2, and of two different answers it
    cannot tell the better, so a hash of the pair picks the winner."""
    system = messages[0].get("content") if messages and isinstance(messages[0], dict) else None
    if not isinstance(system, str) or len(messages) < 2:
        return None
    user = str(messages[1].get("content") or "")
    if system.startswith("You grade"):
        same = _section(user, "Reference answer") == _section(user, "Answer to grade")
        score = 5 if same else 2
        return {"score": score, "reason": "SANDBOX judge: " + ("same" if same else "differs")}
    if system.startswith("You compare"):
        first, second = _section(user, "Answer A"), _section(user, "Answer B")
        winner = "tie" if first == second else ("A" if _share(first + second) < 0.5 else "B")
        return {"winner": winner, "reason": "SANDBOX judge: a coin for different answers"}
    return None


def answer_message(sandbox: Sandbox, request: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the sandbox gives ``request`` (raises for unknown ft: models)."""
    model, messages = str(request.get("model")), list(request.get("messages") or [])
    verdict = judge_verdict(messages)
    if verdict is not None:
        return {"role": "assistant", "content": json.dumps(verdict)}
    if model.startswith("ft:") and f":{ORGANISATION}:" in model:
        learnt = sandbox.trained_answer(model, messages)
        if learnt is not None:
            return {key: value for key, value in learnt.items() if key != "weight"}
        teacher = sandbox.learnt_teacher(model)
        skilled = _share(json.dumps(messages, sort_keys=True)) < sandbox.config.student_skill
        model = teacher if teacher is not None and skilled else sandbox.base_model_of(model)
    elif model.startswith("ft:"):
        sandbox.trained_answer(model, messages)  # raises model_not_found
    call = _tool_call(request, model, messages)
    if call is not None:
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    text = answer_text(model, messages)
    if _wants_json(request):
        text = json.dumps({"answer": text})
    return {"role": "assistant", "content": text}


def _count(value: Any) -> int:
    return len(json.dumps(value).split())


def completion(sandbox: Sandbox, request: dict[str, Any], number: int) -> dict[str, Any]:
    message = answer_message(sandbox, request)
    prompt_tokens = _count(request.get("messages"))
    completion_tokens = _count(message)
    return {
        "id": f"chatcmpl-sandbox{number:08d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model"),
        "system_fingerprint": "fp_sandbox",
        "choices": [
            {
                "index": 0,
                "message": {"refusal": None, **message},
                "logprobs": None,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def stream_chunks(whole: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """The chunks a stream of ``whole`` is sent as: role, content in pieces, finish, usage."""
    base = {key: whole[key] for key in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    choice, message = whole["choices"][0], whole["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return body if not include_usage else {**body, "usage": None}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if message.get("tool_calls"):
        calls = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        chunks.append(chunk({"tool_calls": calls}))
    else:
        text = message["content"]
        for start in range(0, len(text), 24):
            chunks.append(chunk({"content": text[start : start + 24]}))
    chunks.append(chunk({}, choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": whole["usage"]})
    return chunks
