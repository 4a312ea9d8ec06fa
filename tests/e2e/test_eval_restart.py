"""``kill -9`` mid-evaluation: a real ``stillroom serve`` is killed while it evaluates against a
slow upstream, a new one is started on the same database, and the evaluation resumes where
the stored results end and finishes with exactly one result per test example."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine, text

from storage import make_engine
from tests.finetune._eval_helpers import JUDGE, FakeUpstream, make_dataset, questions, said
from tests.support import ADMIN, ADMIN_KEY, ServerProcess, running_server, wait_for

EXAMPLES = 12
DELAY_SECONDS = 0.1
"""Per upstream call; with one call in flight an example takes three (answer, two verdicts)."""


class _SlowUpstream:
    """``FakeUpstream``'s answers over HTTP, each after a pause, so a run lasts long enough to
    be killed in the middle; remembers which questions the model was asked."""

    def __init__(self) -> None:
        self.fake = FakeUpstream(
            answers={f"student:q{n}": said(f"a{n}") for n in range(1, EXAMPLES + 1)}
        )
        self.asked: list[str] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["content-length"])))
                if body["model"] == "student":
                    with upstream._lock:
                        upstream.asked.append(body["messages"][-1]["content"])
                time.sleep(DELAY_SECONDS)
                status, _, payload = upstream.fake.reply(body)
                data = orjson.dumps(payload)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def questions_asked(self) -> list[str]:
        with self._lock:
            return list(self.asked)


@pytest.fixture
def upstream() -> Iterator[_SlowUpstream]:
    slow = _SlowUpstream()
    yield slow
    slow.server.shutdown()
    slow.server.server_close()


@pytest.fixture
def engine(server_database_url: str) -> Iterator[Engine]:
    engine = make_engine(server_database_url)
    yield engine
    engine.dispose()


def _evaluation(server: ServerProcess, evaluation_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/admin/evals/{evaluation_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def _result_positions(engine: Engine, evaluation_id: str) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT position FROM evaluation_results WHERE evaluation_id = :id"),
            {"id": evaluation_id},
        ).all()
    return sorted(row[0] for row in rows)


def test_a_killed_evaluation_resumes_after_restart_with_one_result_per_example(
    server_database_url: str, engine: Engine, upstream: _SlowUpstream, tmp_path: Path
) -> None:
    def serve() -> AbstractContextManager[ServerProcess]:
        return running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=tmp_path,
            env={
                "STILLROOM_ADMIN_KEY": ADMIN_KEY,
                "STILLROOM_UPSTREAM_API_KEY": "sk-" + "upstream",
                "STILLROOM_JUDGE_MODEL": JUDGE,
                "STILLROOM_EVAL_POLL_SECONDS": "0.2",
                # Short, so the restarted server may take over soon after the killed one.
                "STILLROOM_EVAL_LEASE_SECONDS": "2",
            },
        )

    with serve() as first:
        dataset_id = make_dataset(engine, questions(EXAMPLES))
        started = httpx.post(
            f"{first.base_url}/admin/evals",
            json={"dataset_id": dataset_id, "model": "student", "concurrency": 1},
            headers=ADMIN,
        )
        assert started.status_code == 202, started.text
        evaluation_id = started.json()["data"][0]["id"]
        wait_for(lambda: _evaluation(first, evaluation_id)["progress"] >= 2, timeout=30)
        first.process.kill()
        first.process.wait(10)

    stored_at_kill = _result_positions(engine, evaluation_id)
    asked_before = len(upstream.questions_asked())
    assert 2 <= len(stored_at_kill) < EXAMPLES

    with serve() as second:
        wait_for(
            lambda: _evaluation(second, evaluation_id)["state"] in ("succeeded", "failed"),
            timeout=60,
        )
        finished = _evaluation(second, evaluation_id)

    assert finished["state"] == "succeeded", finished["error"]
    assert (finished["progress"], finished["total"], finished["attempts"]) == (
        EXAMPLES,
        EXAMPLES,
        2,
    )
    assert finished["summary"]["examples"] == EXAMPLES
    positions = _result_positions(engine, evaluation_id)
    assert len(positions) == len(set(positions)) == EXAMPLES
    # Resumed, not restarted: the second server asked only for the examples not yet stored.
    assert len(upstream.questions_asked()[asked_before:]) == EXAMPLES - len(stored_at_kill)
