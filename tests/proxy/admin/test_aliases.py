"""The alias admin API and CLI: create, change, read, history with who and why, rollback in
one call, delete; bad input answers in OpenAI's shape and changes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine

from proxy import Settings, create_app
from proxy.cli._main import cli
from tests.routing_support import empty_alias_tables

ADMIN = {"authorization": "Bearer admin-secret"}
TARGETS = [
    {"model": "gpt-4o", "weight": 90, "role": "teacher"},
    {"model": "ft:gpt-4o-mini:acme::x1", "weight": 10, "role": "student"},
]


@pytest.fixture
def client(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    empty_alias_tables(engine)
    settings = Settings(
        database_url=database_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
    )
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def _create(client: TestClient[Litestar], **extra: Any) -> dict[str, Any]:
    body = {"name": "support-bot", "targets": TARGETS, "reason": "launch", **extra}
    answer = client.post("/admin/aliases", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_create_then_read_and_list(client: TestClient[Litestar]) -> None:
    created = _create(client, shadow_rate=0.05)
    assert (created["version"], created["changed_by"], created["shadow_rate"]) == (1, "admin", 0.05)
    shown = client.get("/admin/aliases/support-bot", headers=ADMIN).json()
    assert [(t["model"], t["weight"], t["upstream"]) for t in shown["targets"]] == [
        ("gpt-4o", 90, "default"),
        ("ft:gpt-4o-mini:acme::x1", 10, "default"),
    ]
    listed = client.get("/admin/aliases", headers=ADMIN).json()
    assert [a["name"] for a in listed] == ["support-bot"]


def test_creating_an_existing_alias_is_a_conflict(client: TestClient[Litestar]) -> None:
    _create(client)
    answer = client.post(
        "/admin/aliases", json={"name": "support-bot", "targets": TARGETS}, headers=ADMIN
    )
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "alias_exists"


def test_changes_record_the_actor_and_reason_and_roll_back_in_one_call(
    client: TestClient[Litestar],
) -> None:
    _create(client)
    full = [{"model": "ft:gpt-4o-mini:acme::x1", "weight": 1, "role": "student"}]
    changed = client.put(
        "/admin/aliases/support-bot",
        json={"targets": full, "reason": "gate passed", "action": "promote"},
        headers={**ADMIN, "X-Stillroom-Actor": "promotion-gate"},
    ).json()
    assert (changed["version"], changed["changed_by"]) == (2, "promotion-gate")
    back = client.post(
        "/admin/aliases/support-bot/rollback", json={"reason": "complaints"}, headers=ADMIN
    )
    assert back.status_code == 200
    assert back.json()["version"] == 1
    history = client.get("/admin/aliases/support-bot/history", headers=ADMIN).json()
    assert [(e["action"], e["actor"], e["reason"]) for e in history] == [
        ("rollback", "admin", "complaints"),
        ("promote", "promotion-gate", "gate passed"),
        ("create", "admin", "launch"),
    ]
    versions = client.get("/admin/aliases/support-bot/versions", headers=ADMIN).json()
    assert [v["version"] for v in versions] == [1, 2]


def test_bad_targets_are_refused_in_openai_shape_and_change_nothing(
    client: TestClient[Litestar],
) -> None:
    _create(client)
    bad = [{"model": "gpt-4o", "weight": 1, "upstream": "nowhere", "role": "teacher"}]
    answer = client.put("/admin/aliases/support-bot", json={"targets": bad}, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unknown_upstream"
    negative = [{"model": "gpt-4o", "weight": -1}]
    answer = client.put("/admin/aliases/support-bot", json={"targets": negative}, headers=ADMIN)
    assert answer.status_code == 400 and "error" in answer.json()
    assert client.get("/admin/aliases/support-bot", headers=ADMIN).json()["version"] == 1


def test_delete_makes_the_name_unknown_but_keeps_history(client: TestClient[Litestar]) -> None:
    _create(client)
    answer = client.delete("/admin/aliases/support-bot?reason=retired", headers=ADMIN)
    assert answer.json() == {"name": "support-bot", "deleted": True}
    missing = client.get("/admin/aliases/support-bot", headers=ADMIN)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "alias_not_found"
    history = client.get("/admin/aliases/support-bot/history", headers=ADMIN).json()
    assert history[0]["action"] == "delete" and history[0]["reason"] == "retired"


def test_the_alias_api_needs_the_admin_key(client: TestClient[Litestar]) -> None:
    assert client.get("/admin/aliases").status_code == 401


def _cli(config: Path, *args: str) -> tuple[int, str]:
    environment: dict[str, str | None] = {n: None for n in os.environ if n.startswith("STILLROOM_")}
    result = CliRunner().invoke(cli, ["--config", str(config), "aliases", *args], env=environment)
    return result.exit_code, result.output


def test_cli_sets_shows_lists_rolls_back_and_tells_history(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    empty_alias_tables(engine)
    config = tmp_path / "stillroom.toml"
    config.write_text(f'database_url = "{database_url}"\n')
    code, out = _cli(
        config,
        "set",
        "bot",
        "--teacher",
        "gpt-4o=90",
        "--student",
        "ft:gpt-4o-mini:acme::x1=10",
        "--reason",
        "canary",
        "--actor",
        "ann",
    )
    assert code == 0, out
    assert "version 1" in out and "ft:gpt-4o-mini:acme::x1@default student 10%" in out
    code, out = _cli(config, "set", "bot", "--student", "ft:gpt-4o-mini:acme::x1", "--promote")
    assert code == 0, out
    code, out = _cli(config, "show", "bot")
    assert "version:     2 (previous: 1)" in out
    code, out = _cli(config, "rollback", "bot", "--reason", "regressed", "--actor", "bob")
    assert code == 0 and "rolled back to version 1" in out
    code, out = _cli(config, "list")
    assert out.startswith("bot\tv1\t")
    code, out = _cli(config, "history", "bot")
    lines = out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["rollback", "promote", "create"]
    assert lines[0].split("\t")[3:] == ["bob", "regressed"]
    code, out = _cli(config, "set", "bot", "--teacher", "gpt-4o@nowhere")
    assert code == 1 and "Unknown upstream 'nowhere'" in out
    code, out = _cli(config, "show", "nobody")
    assert code == 1 and "No alias 'nobody'" in out
