"""Traffic and history for the console tests: real chat completions through an alias with the
openai SDK, then a dataset, a finished training job and an evaluation over the admin API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.support import ServerProcess, wait_for

ALIAS = "support-bot"
TEACHER = "gpt-4o-2024-08-06"
BASE_MODEL = "gpt-4o-mini-2024-07-18"
SETUP_PROMPTS = 20
BULK_PROMPTS = 12
HOSTILE_TEXT = (
    "Markup check <img src=x onerror=\"document.title='owned'\"><script>alert(1)</script>"
)

WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass(frozen=True)
class Seeded:
    setup_dataset_id: str
    job_id: str
    fine_tuned_model: str
    evaluation_id: str
    captures: int
    """How many captures the traffic made."""


class Admin:
    """The admin API of one running server, for setting up and checking what the page did."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self._http = httpx.Client(
            base_url=server.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30
        )

    def get(self, path: str, **params: Any) -> Any:
        answer = self._http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def post(self, path: str, body: dict[str, Any], status: int = 200) -> Any:
        answer = self._http.post(path, json=body)
        assert answer.status_code == status, answer.text
        return answer.json()

    def put(self, path: str, body: dict[str, Any]) -> Any:
        answer = self._http.put(path, json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def close(self) -> None:
        self._http.close()


def _review_conversations() -> list[tuple[list[ChatCompletionMessageParam], dict[str, Any]]]:
    """Four exchanges to review, oldest first: system prompt, tool call, tool result, params."""
    return [
        (
            [
                {"role": "system", "content": "You are a terse support agent for Acme."},
                {"role": "user", "content": "Review question 1: how do I reset my password?"},
            ],
            {},
        ),
        (
            [{"role": "user", "content": "Review question 2: what is the weather in Paris?"}],
            {"tools": [WEATHER_TOOL]},
        ),
        (
            [
                {"role": "user", "content": "Review question 3: and in Lyon, in celsius?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_lyon",
                            "type": "function",
                            "function": {
                                "name": "get_weather",
                                "arguments": '{"city": "Lyon", "unit": "celsius"}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_lyon", "content": '{"temp_c": 21}'},
            ],
            {"tools": [WEATHER_TOOL]},
        ),
        (
            [{"role": "user", "content": "Review question 4: summarise our refund policy."}],
            {"temperature": 0.2, "max_tokens": 300, "metadata": {"team": "billing"}, "store": True},
        ),
    ]


def send_traffic(server: ServerProcess) -> int:
    """Chat completions through the alias, one at a time so their order is known."""
    client = openai.OpenAI(base_url=server.v1, api_key="sk-" + "ui-client", max_retries=0)
    sent = 0

    def ask(messages: list[ChatCompletionMessageParam], **extra: Any) -> None:
        nonlocal sent
        client.chat.completions.create(model=ALIAS, messages=messages, **extra)
        sent += 1

    for n in range(1, SETUP_PROMPTS + 1):
        ask([{"role": "user", "content": f"Setup question {n}: name a colour and a number."}])
    for n in range(1, BULK_PROMPTS + 1):
        ask([{"role": "user", "content": f"Bulk question {n}: say something kind."}])
    ask([{"role": "user", "content": HOSTILE_TEXT}])
    for messages, extra in _review_conversations():
        ask(messages, **extra)
    return sent


def seed(server: ServerProcess, admin: Admin) -> Seeded:
    admin.put(
        f"/admin/aliases/{ALIAS}",
        {"targets": [{"model": TEACHER, "weight": 1, "role": "teacher"}], "reason": "launch"},
    )
    sent = send_traffic(server)
    wait_for(lambda: admin.get("/admin/stats")["captures"] == sent, timeout=20)
    dataset = admin.post(
        "/admin/datasets",
        {
            "name": "setup",
            "filter": {"search": "Setup question"},
            "split": {"train": 0.7, "validation": 0.0, "test": 0.3},
        },
        status=201,
    )
    job = admin.post(
        "/admin/jobs",
        {"dataset_id": dataset["id"], "base_model": BASE_MODEL, "suffix": "console"},
        status=201,
    )

    def trained() -> bool:
        return bool(admin.get(f"/admin/jobs/{job['id']}")["state"] == "succeeded")

    wait_for(trained, timeout=30, interval=0.2)
    detail = admin.get(f"/admin/jobs/{job['id']}")
    started = admin.post(
        "/admin/evals",
        {
            "dataset_id": dataset["id"],
            "model": detail["fine_tuned_model"],
            "base_model": BASE_MODEL,
        },
        status=202,
    )
    evaluation_id = started["data"][0]["id"]

    def evaluated() -> bool:
        states = {e["state"] for e in admin.get("/admin/evals")["data"]}
        return states <= {"succeeded", "failed"}

    wait_for(evaluated, timeout=30, interval=0.2)
    return Seeded(
        setup_dataset_id=dataset["id"],
        job_id=job["id"],
        fine_tuned_model=detail["fine_tuned_model"],
        evaluation_id=evaluation_id,
        captures=sent,
    )
