"""The evaluations admin API over HTTP, against a real local fake upstream: start a candidate
with its base, follow it to the end, read the summary, comparison and results worst first;
refusals are OpenAI-shaped and create nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from proxy import create_app
from storage import count_captures, session_scope
from tests.finetune._eval_helpers import (
    JUDGE,
    FakeUpstream,
    clean_evaluations,  # noqa: F401  used as a fixture
    make_dataset,
    questions,
    said,
    serve_over_http,
)
from tests.support import ADMIN, admin_settings, openai_error, wait_for

Client = TestClient[Any]

pytestmark = pytest.mark.usefixtures("clean_evaluations")


def _judge(body: dict[str, Any]) -> dict[str, Any]:
    graded = body["messages"][1]["content"].split("## Answer to grade\n")[1]
    return said(f'{{"score": {5 if graded.startswith("a") else 1}, "reason": "r"}}')


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(
        answers={
            **{f"student:q{n}": said(f"a{n}") for n in (1, 2, 3)},
            "base:q1": said("a1"),
            "base:q2": said("?"),
            "base:q3": said("?"),
        },
        rubric=_judge,
    )
    server = serve_over_http(fake)
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(
    database_url: str, tmp_path: Path, upstream: tuple[FakeUpstream, str]
) -> Iterator[Client]:
    settings = admin_settings(
        database_url,
        tmp_path,
        upstream_base_url=upstream[1],
        upstream_api_key="sk-upstream",
        judge_model=JUDGE,
    )
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


_error = openai_error


def _finished(client: Client, evaluation_id: str) -> dict[str, Any]:
    def done() -> bool:
        state = client.get(f"/admin/evals/{evaluation_id}", headers=ADMIN).json()["state"]
        return state in ("succeeded", "failed")

    wait_for(done, timeout=20)
    found: dict[str, Any] = client.get(f"/admin/evals/{evaluation_id}", headers=ADMIN).json()
    return found


def test_start_follow_and_read_an_evaluation_with_its_base(
    client: Client, engine: Engine, upstream: tuple[FakeUpstream, str]
) -> None:
    dataset_id = make_dataset(engine, questions(3))
    body = {"dataset_id": dataset_id, "model": "student", "base_model": "base", "seed": 3}
    started = client.post("/admin/evals", json=body, headers=ADMIN)
    assert started.status_code == 202, started.text
    candidate, base = started.json()["data"]
    assert (candidate["role"], base["role"]) == ("candidate", "base")
    assert candidate["base_evaluation_id"] == base["id"]
    assert candidate["judge_model"] == JUDGE
    assert candidate["config"]["seed"] == 3

    assert _finished(client, base["id"])["state"] == "succeeded"
    detail = _finished(client, candidate["id"])
    assert detail["state"] == "succeeded"
    # The app's evaluation worker ran it, once, and its progress shows every example done.
    assert (detail["progress"], detail["total"], detail["attempts"]) == (3, 3, 1)
    assert detail["summary"]["rubric"]["mean"] == 5.0
    assert detail["comparison"]["rubric_mean"] == {
        "candidate": 5.0,
        "base": 2.3333,
        "delta": 2.6667,
    }
    assert len(detail["worst"]) == 3
    # Evaluation calls went to the upstream with its own key, never through the proxy.
    fake = upstream[0]
    assert {b["model"] for _, b in fake.requests} == {"student", "base", JUDGE}
    with session_scope(engine) as session:
        # Only the dataset's own three captures: evaluation traffic was not captured.
        assert count_captures(session=session) == 3

    page = client.get(
        f"/admin/evals/{base['id']}/results", params={"limit": 2}, headers=ADMIN
    ).json()
    assert page["total"] == 3
    assert [r["rubric_score"] for r in page["data"]] == [1, 1]
    assert [r["candidate_answer"]["content"] for r in page["data"]] == ["?", "?"]
    assert page["data"][0]["teacher_answer"] == {"role": "assistant", "content": "a2"}
    rest = client.get(
        f"/admin/evals/{base['id']}/results", params={"offset": 2}, headers=ADMIN
    ).json()
    assert [r["rubric_score"] for r in rest["data"]] == [5]

    listed = client.get("/admin/evals", params={"dataset_id": dataset_id}, headers=ADMIN).json()
    assert [e["id"] for e in listed["data"]] == [candidate["id"], base["id"]]


def test_refusals_are_openai_shaped_and_create_nothing(client: Client, engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(1))
    missing = client.post(
        "/admin/evals", json={"dataset_id": "ds_nope", "model": "student"}, headers=ADMIN
    )
    assert _error(missing, 404)["param"] == "dataset_id"
    bad = client.post(
        "/admin/evals",
        json={"dataset_id": dataset_id, "model": "student", "concurrency": 0},
        headers=ADMIN,
    )
    assert _error(bad, 400)["param"] == "concurrency"
    _error(client.get("/admin/evals/eval_nope", headers=ADMIN), 404)
    _error(client.get("/admin/evals/eval_nope/results", headers=ADMIN), 404)
    assert client.get("/admin/evals").status_code in (401, 403)
    assert client.get("/admin/evals", headers=ADMIN).json()["data"] == []


def test_a_student_on_its_own_upstream_is_evaluated_there_by_the_name_it_knows(
    database_url: str, engine: Engine, tmp_path: Path, upstream: tuple[FakeUpstream, str]
) -> None:
    """A merged student on ``transformers serve``: asked by its folder's path on its upstream,
    judged on the default one; an unknown upstream is refused."""
    judge, judge_url = upstream
    student = "ft:tiny:local:support:ftjob-1"
    merged = tmp_path / "jobs" / "ftjob-1" / "merged"
    merged.mkdir(parents=True)
    (merged / "config.json").write_text("{}")
    laptop = FakeUpstream(
        answers={f"{merged}:q{n}": said(f"a{n}") for n in (1, 2, 3)}, models=[str(merged)]
    )
    server = serve_over_http(laptop)
    settings = admin_settings(
        database_url,
        tmp_path,
        upstream_base_url=judge_url,
        upstream_api_key="sk-upstream",
        judge_model=JUDGE,
        upstreams={
            "laptop": {
                "base_url": f"http://127.0.0.1:{server.server_address[1]}/v1",
                "kind": "transformers",
            }
        },
        training_backends={"local": {"kind": "local", "root": str(tmp_path / "jobs")}},
    )
    app = create_app(settings)
    dataset_id = make_dataset(engine, questions(3))
    try:
        with TestClient(app=app) as client:
            unknown = client.post(
                "/admin/evals",
                json={"dataset_id": dataset_id, "model": student, "upstream": "elsewhere"},
                headers=ADMIN,
            )
            assert _error(unknown, 400)["code"] == "unknown_upstream"
            started = client.post(
                "/admin/evals",
                json={"dataset_id": dataset_id, "model": student, "upstream": "laptop"},
                headers=ADMIN,
            )
            assert started.status_code == 202, started.text
            (evaluation,) = started.json()["data"]
            finished = _finished(client, evaluation["id"])
    finally:
        server.shutdown()
        server.server_close()
    assert (finished["state"], finished["model"]) == ("succeeded", student)
    assert len(laptop.asked(str(merged))) == 3
    assert judge.asked(student) == []
    assert len(judge.asked(JUDGE)) == 6
