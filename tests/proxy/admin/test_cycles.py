"""The cycles admin API: start by hand, one open per alias, list with filters, read, cancel;
refusals in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine

from finetune import CyclePolicy
from proxy import Settings, create_app
from tests.promotion_support import make_alias
from tests.support import openai_error, wait_for

ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture
def client(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    make_alias(engine)
    settings = Settings(
        database_url=database_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        cycles={"bot": CyclePolicy(min_examples=7, auto=False)},
        cycle_poll_seconds=0.1,
    )
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def test_a_cycle_started_by_hand_waits_for_examples_under_its_policy(
    client: TestClient[Litestar],
) -> None:
    answer = client.post(
        "/admin/cycles", json={"alias": "bot"}, headers={**ADMIN, "X-Stillroom-Actor": "ann"}
    )
    assert answer.status_code == 201, answer.text
    cycle = answer.json()
    assert (cycle["alias"], cycle["state"], cycle["trigger"], cycle["actor"]) == (
        "bot",
        "collecting",
        "manual",
        "ann",
    )
    assert cycle["policy"]["min_examples"] == 7
    assert [s["step"] for s in cycle["steps"]] == ["collecting"]

    def detail() -> str | None:
        found = client.get(f"/admin/cycles/{cycle['id']}", headers=ADMIN).json()
        step: str | None = found["steps"][-1].get("detail")
        return step

    wait_for(lambda: detail() == "waiting: 0 of 7 approved examples", timeout=10)


def test_a_second_cycle_of_the_alias_is_a_conflict_until_the_first_is_cancelled(
    client: TestClient[Litestar],
) -> None:
    first = client.post("/admin/cycles", json={"alias": "bot"}, headers=ADMIN).json()
    refused = client.post("/admin/cycles", json={"alias": "bot"}, headers=ADMIN)
    assert openai_error(refused, 409)["code"] == "cycle_open"
    cancelled = client.post(
        f"/admin/cycles/{first['id']}/cancel", json={"reason": "wrong data"}, headers=ADMIN
    )
    assert cancelled.status_code == 200
    assert (cancelled.json()["state"], cancelled.json()["reason"]) == (
        "cancelled",
        "cancelled by admin: wrong data",
    )
    again = client.post(f"/admin/cycles/{first['id']}/cancel", headers=ADMIN)
    assert openai_error(again, 409)["code"] == "cycle_ended"
    second = client.post("/admin/cycles", json={"alias": "bot"}, headers=ADMIN)
    assert second.status_code == 201

    listed = client.get("/admin/cycles", params={"state": "cancelled"}, headers=ADMIN).json()
    assert [c["id"] for c in listed["data"]] == [first["id"]]
    every = client.get("/admin/cycles", params={"alias": "bot"}, headers=ADMIN).json()
    assert [c["id"] for c in every["data"]] == [second.json()["id"], first["id"]]


def test_refusals_are_openai_shaped(client: TestClient[Litestar]) -> None:
    unknown_alias = client.post("/admin/cycles", json={"alias": "nobody"}, headers=ADMIN)
    assert openai_error(unknown_alias, 404)["code"] == "alias_not_found"
    unknown_cycle = client.get("/admin/cycles/cyc_missing", headers=ADMIN)
    assert openai_error(unknown_cycle, 404)["param"] == "cycle_id"
    bad_state = client.get("/admin/cycles", params={"state": "sleeping"}, headers=ADMIN)
    assert openai_error(bad_state, 400)["type"] == "invalid_request_error"
    assert client.get("/admin/cycles").status_code in (401, 403)
