"""/admin/rules: the configured rules, and a run over stored captures whose dry run counts
what the real run changes; settings refuse a bad rule by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from proxy import Settings, SettingsError, create_app, load_settings
from tests.finetune.curation.test_rules import EXAMPLE_RULES, seed, state, status_of

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def client(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[TestClient[Any]]:
    seed(engine)
    settings = load_settings(
        database_url=database_url,
        admin_key="admin-secret",
        spool_dir=tmp_path / "spool",
        upstream_base_url="http://127.0.0.1:9/v1",
        rules=[rule.model_dump(exclude_none=True) for rule in EXAMPLE_RULES],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_rules_are_listed_in_order_with_the_conditions_they_set(client: TestClient[Any]) -> None:
    response = client.get("/admin/rules", headers=ADMIN)
    assert response.status_code == 200
    listed = response.json()
    assert [r["name"] for r in listed] == [r.name for r in EXAMPLE_RULES]
    assert listed[0] == {
        "name": "reject-errors",
        "action": "reject",
        "tag": None,
        "when": {"error": True},
    }
    assert listed[-1] == {
        "name": "tag-billing",
        "action": "tag",
        "tag": "billing",
        "when": {"regex": "(?i)invoice"},
    }


def test_a_dry_run_changes_nothing_and_counts_what_the_run_then_changes(
    client: TestClient[Any], engine: Engine
) -> None:
    before = state(engine)
    dry = client.post("/admin/rules/run", json={"filter": {}, "dry_run": True}, headers=ADMIN)
    assert dry.status_code == 200
    assert state(engine) == before
    real = client.post("/admin/rules/run", json={"filter": {}}, headers=ADMIN)
    assert real.status_code == 200
    assert real.json() == {**dry.json(), "dry_run": False}
    assert real.json()["changed"] == 7
    changed = [key for key, value in state(engine).items() if before[key] != value]
    assert len(changed) == 7


def test_a_filtered_run_touches_only_what_the_filter_selects(
    client: TestClient[Any], engine: Engine
) -> None:
    body = {"filter": {"feedback": ["positive"]}, "include_reviewed": True}
    report = client.post("/admin/rules/run", json=body, headers=ADMIN).json()
    assert (report["evaluated"], report["approved"], report["changed"]) == (2, 2, 2)
    assert (status_of(engine, "cap_0006"), status_of(engine, "cap_0001")) == ("approved", "pending")


@pytest.mark.parametrize(
    "body",
    [
        {"filter": {"status": ["maybe"]}},
        {"filter": {"colour": "red"}},
        {"filter": {}, "dryrun": True},
        {"filter": {"min_total_tokens": -1}},
    ],
)
def test_a_bad_request_is_refused_in_openai_shape_and_changes_nothing(
    client: TestClient[Any], engine: Engine, body: dict[str, Any]
) -> None:
    before = state(engine)
    response = client.post("/admin/rules/run", json=body, headers=ADMIN)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert state(engine) == before


def test_rules_routes_need_the_admin_key(client: TestClient[Any]) -> None:
    assert client.get("/admin/rules").status_code == 401
    wrong = client.post("/admin/rules/run", json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_admin_key"


def test_the_rules_routes_are_in_the_admin_docs(client: TestClient[Any]) -> None:
    paths = client.get("/admin/docs/openapi.json", headers=ADMIN).json()["paths"]
    assert {"/admin/rules", "/admin/rules/run"} <= set(paths)


def test_settings_refuse_a_bad_rule_with_a_message_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text(
        "[[rules]]\n"
        'name = "reject-errors"\n'
        "when = { error = true }\n"
        'action = "reject"\n\n'
        "[[rules]]\n"
        'name = "reject-secrets"\n'
        'when = { regex = "password[" }\n'
        'action = "reject"\n'
    )
    with pytest.raises(SettingsError, match=r"rule 'reject-secrets': when\.regex: invalid regular"):
        load_settings(config)
    config.write_text(
        '[[rules]]\nname = "typo"\nwhen = { finish = ["length"] }\naction = "reject"\n'
    )
    with pytest.raises(SettingsError, match=r"rule 'typo': when\.finish: Extra inputs"):
        load_settings(config)


def test_rules_and_redaction_load_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text(
        "[[rules]]\n"
        'name = "tag-long"\n'
        'when = { finish_reason = ["length"], min_completion_tokens = 1000 }\n'
        'action = "tag"\n'
        'tag = "long"\n\n'
        "[redaction]\n"
        'apply_at = "both"\n'
        'patterns = [{ name = "customer", pattern = "CUST-\\\\d+", replacement = "[CUSTOMER]" }]\n'
    )
    settings: Settings = load_settings(config)
    assert [(r.name, r.action, r.tag) for r in settings.rules] == [("tag-long", "tag", "long")]
    assert settings.rules[0].when.min_completion_tokens == 1000
    assert settings.redaction.at_storage and settings.redaction.at_export
    assert settings.redaction.patterns[0].pattern.pattern == r"CUST-\d+"
