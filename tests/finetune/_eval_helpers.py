"""A fake OpenAI-compatible upstream for evaluation tests, reached through the SDK's HTTP seam
(``httpx2.MockTransport``), and small datasets to evaluate on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
import openai
import orjson
import pytest
from sqlalchemy import Engine, text

from finetune import SplitRatios, create_dataset
from storage import CaptureFilter
from tests.finetune._dataset_helpers import answer, capture, store

JUDGE = "judge-model"
Reply = tuple[int, dict[str, str], Any]
"""status, headers, JSON body."""


def completion(message: dict[str, Any], *, prompt_tokens: int = 7) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1,
        "model": "fake",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 3, "total_tokens": 10},
    }


def said(content: str) -> dict[str, Any]:
    return completion({"role": "assistant", "content": content})


def rate_limited(retry_after: str) -> Reply:
    error = {"error": {"message": "slow down", "type": "requests", "param": None, "code": None}}
    return 429, {"retry-after": retry_after}, error


def last_user_text(body: dict[str, Any]) -> str:
    return str(next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user"))


@dataclass
class FakeUpstream:
    """Answers by who is asked: a model answers the last user message from ``answers``; the
    judge answers with ``rubric`` and ``pairwise``, each a function of the request body.

    ``queued`` replies (per user text) come first, e.g. 429s before the answer. It records
    every request with its arrival time, and the most requests ever in flight together.
    """

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    rubric: Callable[[dict[str, Any]], Any] = lambda _: said('{"score": 5, "reason": "same"}')
    pairwise: Callable[[dict[str, Any]], Any] = lambda _: said('{"winner": "tie", "reason": "-"}')
    queued: dict[str, list[Reply]] = field(default_factory=dict)
    delay: float = 0.0
    models: list[str] = field(default_factory=list)
    """What ``GET /v1/models`` lists, over HTTP (``serve_over_http``)."""
    requests: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def reply(self, body: dict[str, Any]) -> Reply:
        if body["model"] == JUDGE:
            system = body["messages"][0]["content"]
            verdict = self.rubric(body) if "Score from 1 to 5" in system else self.pairwise(body)
            return (200, {}, verdict) if isinstance(verdict, dict) else verdict
        key = last_user_text(body)
        if self.queued.get(key):
            return self.queued[key].pop(0)
        found = self.answers.get(f"{body['model']}:{key}") or self.answers.get(key)
        if found is None:
            return 404, {}, {"error": {"message": "no such model", "type": "x", "code": None}}
        return 200, {}, found

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content)
        self.requests.append((asyncio.get_running_loop().time(), body))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            status, headers, payload = self.reply(body)
        finally:
            self.in_flight -= 1
        return httpx2.Response(status, headers=headers, content=orjson.dumps(payload))

    def client(self) -> openai.AsyncOpenAI:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))
        return openai.AsyncOpenAI(
            base_url="http://upstream.test/v1", api_key="sk-test", http_client=http
        )

    def asked(self, model: str) -> list[dict[str, Any]]:
        return [body for _, body in self.requests if body["model"] == model]


def serve_over_http(upstream: FakeUpstream) -> ThreadingHTTPServer:
    """The fake upstream as a real local HTTP server, for code that builds its own client."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            listed = [{"id": name, "object": "model"} for name in upstream.models]
            found = self.path == "/v1/models"
            self._send(200 if found else 404, {}, {"object": "list", "data": listed})

        def do_POST(self) -> None:
            body = orjson.loads(self.rfile.read(int(self.headers["content-length"])))
            upstream.requests.append((0.0, body))
            self._send(*upstream.reply(body))

        def _send(self, status: int, headers: dict[str, str], payload: Any) -> None:
            data = orjson.dumps(payload)
            self.send_response(status)
            for name, value in {**headers, "content-type": "application/json"}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_dataset(engine: Engine, rows: list[dict[str, Any]]) -> str:
    """Every row in the test split of a new dataset; returns its id."""
    store(engine, rows)
    ratios = SplitRatios(train=0.0, validation=0.0, test=1.0)
    dataset = create_dataset(engine, "evalset", CaptureFilter(status=["approved"]), ratios=ratios)
    return dataset.id


def questions(count: int) -> list[dict[str, Any]]:
    """Captures 1..count: "q{n}" answered "a{n}"."""
    return [
        capture(n, [{"role": "user", "content": f"q{n}"}], answer(f"a{n}"))
        for n in range(1, count + 1)
    ]


@pytest.fixture
def clean_evaluations(engine: Engine) -> None:
    """The shared PostgreSQL database keeps rows between tests: start with no evaluations."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM evaluation_results"))
        connection.execute(text("DELETE FROM evaluations"))
