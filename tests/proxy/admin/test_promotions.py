"""The promotion admin API: promote a student (canary by the setting, a given share, or full at
once), list and read promotions, make a canary full or abort it; refusals in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine

from finetune import CanaryPolicy
from proxy import Settings, create_app
from tests.finetune.routing.lora_fake import FakeLoraFleet
from tests.finetune.routing.test_serving import job_folder
from tests.promotion_support import STUDENT, TEACHER, make_alias

ADMIN = {"authorization": "Bearer admin-secret"}


@pytest.fixture
def client(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    make_alias(engine)
    settings = Settings(
        database_url=database_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        canary=CanaryPolicy(canary_percent=25, full_after_seconds=86_400),
    )
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def _promote(client: TestClient[Litestar], **body: Any) -> dict[str, Any]:
    answer = client.post(
        "/admin/aliases/bot/promote",
        json={"model": STUDENT, "reason": "gate passed", **body},
        headers={**ADMIN, "X-Stillroom-Actor": "ann"},
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def _split(client: TestClient[Litestar]) -> list[tuple[str, float, str]]:
    alias = client.get("/admin/aliases/bot", headers=ADMIN).json()
    return [(t["model"], t["weight"], t["role"]) for t in alias["targets"]]


def test_promote_starts_a_canary_at_the_configured_share(client: TestClient[Litestar]) -> None:
    created = _promote(client)
    assert {k: created[k] for k in ("alias", "model", "upstream", "stage", "actor", "reason")} == {
        "alias": "bot",
        "model": STUDENT,
        "upstream": "default",
        "stage": "canary",
        "actor": "ann",
        "reason": "gate passed",
    }
    assert (created["canary_percent"], created["from_version"], created["canary_version"]) == (
        25,
        1,
        2,
    )
    assert created["policy"]["full_after_seconds"] == 86_400
    assert _split(client) == [(TEACHER, 75, "teacher"), (STUDENT, 25, "student")]
    history = client.get("/admin/aliases/bot/history", headers=ADMIN).json()
    assert (history[0]["action"], history[0]["actor"]) == ("promote", "ann")


def test_promote_takes_a_share_or_goes_full(client: TestClient[Litestar]) -> None:
    assert _promote(client, canary_percent=5)["canary_percent"] == 5
    assert _split(client) == [(TEACHER, 95, "teacher"), (STUDENT, 5, "student")]
    answer = client.post(
        "/admin/aliases/bot/promote", json={"model": "ft:other", "full": True}, headers=ADMIN
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "promotion_in_progress"


def test_full_at_once_serves_everything_and_keeps_the_teacher(
    client: TestClient[Litestar],
) -> None:
    created = _promote(client, full=True)
    assert (created["stage"], created["full_version"], created["canary_percent"]) == ("full", 2, 0)
    assert _split(client) == [(TEACHER, 0, "teacher"), (STUDENT, 100, "student")]


def test_list_and_read_promotions(client: TestClient[Litestar]) -> None:
    created = _promote(client)
    listed = client.get("/admin/promotions?alias=bot", headers=ADMIN).json()
    assert listed["object"] == "list"
    assert [p["id"] for p in listed["data"]] == [created["id"]]
    assert client.get("/admin/promotions?alias=other", headers=ADMIN).json()["data"] == []
    shown = client.get(f"/admin/promotions/{created['id']}", headers=ADMIN).json()
    assert (shown["id"], shown["stage"], shown["signals"]) == (created["id"], "canary", None)
    missing = client.get("/admin/promotions/prom_nothing", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "promotion_not_found"


def test_full_now_then_undo_it_in_one_call(client: TestClient[Litestar]) -> None:
    created = _promote(client)
    answer = client.post(
        f"/admin/promotions/{created['id']}/full",
        json={"reason": "looks fine"},
        headers={**ADMIN, "X-Stillroom-Actor": "bob"},
    )
    assert answer.status_code == 200, answer.text
    full = answer.json()
    assert (full["stage"], full["decided_by"], full["outcome"]) == (
        "full",
        "bob",
        "made full by bob: looks fine",
    )
    assert _split(client) == [(TEACHER, 0, "teacher"), (STUDENT, 100, "student")]
    undone = client.post(f"/admin/promotions/{created['id']}/abort", headers=ADMIN)
    assert undone.status_code == 200, undone.text
    assert undone.json()["stage"] == "aborted"
    assert _split(client) == [(TEACHER, 1, "teacher")]
    late = client.post(f"/admin/promotions/{created['id']}/full", headers=ADMIN)
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "promotion_decided"


def test_abort_returns_the_alias_to_the_teacher(client: TestClient[Litestar]) -> None:
    created = _promote(client)
    answer = client.post(f"/admin/promotions/{created['id']}/abort", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["stage"], answer.json()["decided_by"]) == ("aborted", "admin")
    assert _split(client) == [(TEACHER, 1, "teacher")]
    history = client.get("/admin/aliases/bot/history", headers=ADMIN).json()
    assert [(e["action"], e["to_version"]) for e in history] == [
        ("rollback", 1),
        ("promote", 2),
        ("create", 1),
    ]


def test_refusals_are_openai_shaped(client: TestClient[Litestar]) -> None:
    unknown = client.post("/admin/aliases/nobody/promote", json={"model": STUDENT}, headers=ADMIN)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "alias_not_found"
    teacher = client.post("/admin/aliases/bot/promote", json={"model": TEACHER}, headers=ADMIN)
    assert teacher.status_code == 400
    assert teacher.json()["error"] == {
        "message": f"'{TEACHER}' is the teacher of 'bot'; promote a different model.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "student_is_teacher",
    }
    upstream = client.post(
        "/admin/aliases/bot/promote", json={"model": STUDENT, "upstream": "far"}, headers=ADMIN
    )
    assert upstream.status_code == 400
    assert upstream.json()["error"]["code"] == "unknown_upstream"
    share = client.post(
        "/admin/aliases/bot/promote", json={"model": STUDENT, "canary_percent": 100}, headers=ADMIN
    )
    assert share.status_code == 400
    assert share.json()["error"]["param"] == "canary_percent"
    assert _split(client) == [(TEACHER, 1, "teacher")]


def test_the_promotion_api_needs_the_admin_key(client: TestClient[Litestar]) -> None:
    assert client.get("/admin/promotions").status_code == 401
    assert client.post("/admin/aliases/bot/promote", json={"model": STUDENT}).status_code == 401


def test_a_promotion_onto_a_replica_that_did_not_load_the_student_is_a_502(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    make_alias(engine)
    fleet = FakeLoraFleet(1)
    fleet.replicas["http://replica-1/v1"].refuse_loads = True
    job_folder(tmp_path / "jobs", "ftjob-1")
    settings = Settings(
        database_url=database_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        upstreams={"gpu": {"base_url": fleet.urls[0], "kind": "vllm"}},
        admin_key="admin-secret",
        training_backends={"local": {"kind": "local", "root": str(tmp_path / "jobs")}},
        spool_dir=tmp_path / "spool",
    )
    app = create_app(settings)
    # The HTTP seam to the replicas; the job root comes from the training backend's settings.
    app.state.services.serving.transport = fleet.transport()
    student = "ft:tiny:local:support:ftjob-1"
    with TestClient(app=app) as client:
        answer = client.post(
            "/admin/aliases/bot/promote",
            json={"model": student, "upstream": "gpu"},
            headers=ADMIN,
        )
        assert answer.status_code == 502
        error = answer.json()["error"]
        assert (error["code"], error["param"]) == ("student_not_served", "model")
        assert error["message"] == (
            f"1 of 1 replicas of upstream 'gpu' do not serve '{student}': http://replica-1/v1: "
            f"load_lora_adapter answered 400: Failed to load LoRA adapter '{student}': "
            "no such folder"
        )
        assert _split(client) == [(TEACHER, 1, "teacher")]
