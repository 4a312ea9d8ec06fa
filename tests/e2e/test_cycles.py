"""A whole distillation cycle through real `stillroom serve` processes on one store, with the
server killed (SIGKILL) at each step it is seen in and started again: the cycle still ends
with one dataset, one training job, one evaluation pair and one promotion, and the alias is
then answered by the student while shadow traffic is still captured."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.sandbox import SandboxConfig, running_sandbox
from tests.support import ADMIN, ADMIN_KEY, ServerProcess, running_server, wait_for

TEACHER = "gpt-4o-2024-08-06"
ALIAS = "support"
CLIENT_KEY = "sk-" + "client-of-the-sandbox"

CONFIG = """
cycle_poll_seconds = 0.2
cycle_lease_seconds = 1.5
eval_poll_seconds = 0.2
training_poll_seconds = 0.5

[gate]
min_examples = 5

[canary]
canary_percent = 30
full_after_requests = 8
full_after_seconds = 3600
min_requests_to_judge = 8
shadow_rate_after = 1.0

[cycles.support]
min_new_examples = 1000
min_examples = 20
split = [0.6, 0.1, 0.3]

[cycles.support.training]
base_model = "gpt-4o-mini"
suffix = "support"
"""


class Fleet:
    """One server at a time on the same store, killed and started again at will."""

    def __init__(self, database_url: str, upstream: str, workdir: Path) -> None:
        self.database_url, self.upstream, self.workdir = database_url, upstream, workdir
        self.stack = ExitStack()
        self.server: ServerProcess | None = None
        (workdir / "stillroom.toml").write_text(CONFIG)

    def start(self) -> ServerProcess:
        self.server = self.stack.enter_context(
            running_server(
                database_url=self.database_url,
                upstream_base_url=self.upstream,
                workdir=self.workdir,
                env={
                    "STILLROOM_ADMIN_KEY": ADMIN_KEY,
                    "STILLROOM_UPSTREAM_API_KEY": CLIENT_KEY,
                    "STILLROOM_LOG_LEVEL": "INFO",
                    "STILLROOM_ROUTE_REFRESH_SECONDS": "0.2",
                },
                config=self.workdir / "stillroom.toml",
            )
        )
        return self.server

    def kill(self) -> None:
        assert self.server is not None
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait(10)

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        assert self.server is not None
        response = httpx.request(
            method, self.server.base_url + path, headers=ADMIN, timeout=30, **kwargs
        )
        assert response.status_code < 300, response.text
        return response.json()

    def ask(self, count: int, first: int) -> list[str]:
        """``count`` questions through the alias; returns the models that answered."""
        assert self.server is not None
        client = openai.OpenAI(base_url=self.server.v1, api_key=CLIENT_KEY, max_retries=0)
        served = []
        for n in range(first, first + count):
            answer = client.chat.completions.create(
                model=ALIAS, messages=[{"role": "user", "content": f"What is {n} squared?"}]
            )
            served.append(answer.model)
        return served


@pytest.fixture
def fleet(server_database_url: str, tmp_path: Path) -> Iterator[Fleet]:
    # The judge takes its time, so the evaluating step lasts long enough to be seen and killed.
    sandbox = SandboxConfig(step_seconds=1.0, epochs=2, judge_seconds=0.5)
    with running_sandbox(sandbox) as upstream:
        found = Fleet(server_database_url, upstream, tmp_path)
        with found.stack:
            yield found


def cycle_of(fleet: Fleet) -> dict[str, Any]:
    cycles: list[dict[str, Any]] = fleet.admin("GET", "/admin/cycles", params={"alias": ALIAS})[
        "data"
    ]
    assert len(cycles) == 1, cycles
    return cycles[0]


def test_a_cycle_survives_being_killed_at_every_step(fleet: Fleet) -> None:
    fleet.start()
    fleet.admin(
        "POST",
        "/admin/aliases",
        json={"name": ALIAS, "targets": [{"model": TEACHER, "weight": 100, "role": "teacher"}]},
    )
    fleet.ask(12, first=1)
    approve = {"filter": {"alias": [ALIAS]}, "action": "approve"}
    wait_for(lambda: fleet.admin("GET", "/admin/stats")["captures"] >= 12, timeout=10)
    fleet.admin("POST", "/admin/captures/bulk", json=approve)
    started = fleet.admin("POST", "/admin/cycles", json={"alias": ALIAS})
    assert started["state"] == "collecting" and started["trigger"] == "manual"

    killed_at: list[str] = []
    more_asked = False
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        cycle = cycle_of(fleet)
        state = cycle["state"]
        if state in ("done", "failed", "cancelled"):
            break
        if state == "collecting" and "collecting" in killed_at and not more_asked:
            # Enough examples now: the cycle may go on.
            fleet.ask(30, first=13)
            wait_for(lambda: fleet.admin("GET", "/admin/stats")["captures"] >= 42, timeout=10)
            fleet.admin("POST", "/admin/captures/bulk", json=approve)
            more_asked = True
        if state == "promoting" and cycle["promotion_id"] is not None:
            # The canary needs student traffic to go full.
            fleet.ask(10, first=100 + len(killed_at) * 10)
        if state not in killed_at and (state != "promoting" or cycle["promotion_id"]):
            if state == "collecting" and "waiting" not in (cycle["steps"][-1].get("detail") or ""):
                time.sleep(0.1)
                continue
            killed_at.append(state)
            fleet.kill()
            fleet.start()
            continue
        time.sleep(0.2)

    cycle = cycle_of(fleet)
    assert cycle["state"] == "done", cycle
    assert {"collecting", "training", "evaluating", "promoting"} <= set(killed_at), killed_at
    assert [s["step"] for s in cycle["steps"]] == [
        "collecting",
        "exporting",
        "training",
        "evaluating",
        "promoting",
    ]
    student = cycle["student_model"]
    assert student.startswith("ft:gpt-4o-mini:sandbox:support:")

    datasets = fleet.admin("GET", "/admin/datasets")["data"]
    assert [d["id"] for d in datasets] == [cycle["dataset_id"]]
    test_examples = datasets[0]["counts"]["test"]
    jobs = fleet.admin("GET", "/admin/jobs")["data"]
    assert [(j["id"], j["fine_tuned_model"]) for j in jobs] == [(cycle["training_job_id"], student)]
    sandbox = openai.OpenAI(base_url=fleet.upstream, api_key=CLIENT_KEY)
    assert len(sandbox.fine_tuning.jobs.list().data) == 1

    evaluations = fleet.admin("GET", "/admin/evals")["data"]
    assert sorted(e["id"] for e in evaluations) == sorted(
        [cycle["evaluation_id"], cycle["base_evaluation_id"]]
    )
    for evaluation in evaluations:
        results = fleet.admin(
            "GET", f"/admin/evals/{evaluation['id']}/results", params={"limit": 500}
        )
        assert evaluation["state"] == "succeeded" and results["total"] == test_examples

    promotions = fleet.admin("GET", "/admin/promotions", params={"alias": ALIAS})["data"]
    assert [(p["id"], p["stage"]) for p in promotions] == [(cycle["promotion_id"], "full")]
    alias = fleet.admin("GET", f"/admin/aliases/{ALIAS}")
    assert {(t["model"], t["role"], t["weight"]) for t in alias["targets"]} == {
        (student, "student", 100),
        (TEACHER, "teacher", 0),
    }

    # The promotion went full in the database; each process follows at its next route poll.
    time.sleep(1.0)
    before = fleet.admin("GET", "/admin/stats")["captures"]
    assert fleet.ask(3, first=500) == [student] * 3
    # Each answer from the student is captured, and so is the teacher's shadow answer.
    wait_for(lambda: fleet.admin("GET", "/admin/stats")["captures"] == before + 6, timeout=10)
    shadows = fleet.admin("GET", "/admin/captures", params={"tags": "shadow", "limit": 10})
    assert {c["served_model"] for c in shadows["data"]} == {TEACHER}
