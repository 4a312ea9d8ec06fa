"""The datasets admin API over HTTP: build, list, read, duplicates, diff, streamed export,
delete, and OpenAI-shaped refusals that change nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from finetune import RedactionConfig
from proxy import create_app
from storage import make_engine, read_examples_page, session_scope
from tests.finetune._dataset_helpers import answer, capture, question, recorded_rows, store
from tests.support import ADMIN, ServerProcess, admin_settings, openai_error, running_server

Client = TestClient[Any]


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[Client]:
    settings = admin_settings(
        database_url,
        tmp_path,
        rules=[{"name": "reject-errors", "when": {"error": True}, "action": "reject"}],
    )
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


_error = openai_error


def _create(client: Client, **body: Any) -> dict[str, Any]:
    response = client.post("/admin/datasets", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_create_list_get_and_delete(client: Client, engine: Engine) -> None:
    store(engine, [question(n) for n in range(1, 11)])
    created = _create(client, name="support", split={"train": 0.6, "validation": 0.2, "test": 0.2})
    assert (created["name"], created["version"]) == ("support", 1)
    assert created["counts"]["total"] == 10
    assert created["filter"] == {"status": ["approved"]}
    assert created["split"] == {"train": 0.6, "validation": 0.2, "test": 0.2}
    assert created["lineage"]["rules"][0]["name"] == "reject-errors"
    assert created["lineage"]["redaction"]["apply_at"] == "off"
    again = _create(
        client, name="support", filter={"status": ["approved"], "search": "What is 1 squared"}
    )
    assert (again["version"], again["counts"]["total"]) == (2, 1)
    listed = client.get("/admin/datasets", headers=ADMIN).json()
    assert [d["id"] for d in listed["data"]] == [again["id"], created["id"]]
    one = client.get(f"/admin/datasets/{created['id']}", headers=ADMIN).json()
    assert one == created
    gone = client.delete(f"/admin/datasets/{created['id']}", headers=ADMIN)
    assert gone.json() == {"id": created["id"], "deleted": True}
    _error(client.get(f"/admin/datasets/{created['id']}", headers=ADMIN), 404)


def test_export_streams_jsonl_per_split_and_format(client: Client, engine: Engine) -> None:
    store(engine, recorded_rows())
    created = _create(client, name="recorded")
    url = f"/admin/datasets/{created['id']}/export"
    response = client.get(url, params={"split": "train", "format": "sft"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    assert response.headers["content-disposition"] == (
        'attachment; filename="recorded-v1-train-sft.jsonl"'
    )
    lines = [json.loads(line) for line in response.text.splitlines()]
    with session_scope(engine) as session:
        train = read_examples_page(created["id"], "train", session=session)
    assert lines == [row.example for row in train]
    everything = client.get(url, headers=ADMIN).text.splitlines()
    assert len(everything) == created["counts"]["total"]
    assert client.get(url, params={"format": "dpo"}, headers=ADMIN).text == ""


def test_duplicates_and_diff(client: Client, engine: Engine) -> None:
    ask = [{"role": "user", "content": "Reset my password"}]
    store(engine, [capture(1, ask, answer("a")), capture(2, ask, answer("b")), question(3)])
    groups = client.get(
        "/admin/datasets/duplicates", params={"status": "approved"}, headers=ADMIN
    ).json()
    assert groups["total_groups"] == 1
    assert [(g["size"], g["capture_ids"]) for g in groups["data"]] == [
        (2, [f"cap_{2:020d}", f"cap_{1:020d}"])
    ]
    first = _create(client, name="grow")
    store(engine, [question(4)])
    second = _create(client, name="grow")
    diff = client.get(f"/admin/datasets/{first['id']}/diff/{second['id']}", headers=ADMIN)
    body = diff.json()
    assert (body["added"], body["removed"], body["changed"], body["unchanged"]) == (1, 0, 0, 2)
    assert body["added_examples"][0]["capture_id"] == f"cap_{4:020d}"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "x", "split": {"train": 0.8, "validation": 0.1, "test": 0.2}}, "split"),
        ({"name": "bad name!"}, "name"),
        ({"name": "x", "dedupe": "random"}, "dedupe"),
        ({"name": "x", "filter": {"colour": "red"}}, "filter.colour"),
        ({"name": "x", "filter": {"status": ["maybe"]}}, "filter.status.0"),
    ],
)
def test_a_bad_create_is_a_400_and_builds_nothing(
    client: Client, engine: Engine, body: dict[str, Any], param: str
) -> None:
    store(engine, [question(1)])
    error = _error(client.post("/admin/datasets", json=body, headers=ADMIN), 400)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert client.get("/admin/datasets", headers=ADMIN).json()["data"] == []


@pytest.mark.parametrize(
    ("path", "status", "param"),
    [
        ("/admin/datasets/{id}/export?split=holdout", 400, "split"),
        ("/admin/datasets/{id}/export?format=csv", 400, "format"),
        ("/admin/datasets/ds_missing/export", 404, "id"),
        ("/admin/datasets/ds_missing", 404, "id"),
        ("/admin/datasets/{id}/diff/ds_missing", 404, "id"),
        ("/admin/datasets/duplicates?colour=red", 400, "colour"),
        ("/admin/datasets/duplicates?policy=random", 400, "policy"),
        ("/admin/datasets/duplicates?limit=9999", 400, "limit"),
    ],
)
def test_unknown_ids_and_bad_parameters_are_refused(
    client: Client, engine: Engine, path: str, status: int, param: str
) -> None:
    store(engine, [question(1)])
    created = _create(client, name="one")
    error = _error(client.get(path.format(id=created["id"]), headers=ADMIN), status)
    assert error["param"] == param
    _error(client.delete("/admin/datasets/ds_missing", headers=ADMIN), 404)
    assert [d["id"] for d in client.get("/admin/datasets", headers=ADMIN).json()["data"]] == [
        created["id"]
    ]


def test_the_datasets_api_needs_the_admin_key_and_is_documented(client: Client) -> None:
    _error(client.get("/admin/datasets"), 401)
    paths = client.get("/admin/docs/openapi.json", headers=ADMIN).json()["paths"]
    assert {
        "/admin/datasets",
        "/admin/datasets/duplicates",
        "/admin/datasets/{dataset_id}",
        "/admin/datasets/{dataset_id}/export",
        "/admin/datasets/{a}/diff/{b}",
    } <= set(paths)


@pytest.fixture(scope="module")
def server(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    redaction = RedactionConfig(apply_at="export").model_dump_json()
    with running_server(
        database_url=server_database_url,
        upstream_base_url="http://127.0.0.1:9/v1",
        workdir=tmp_path_factory.mktemp("datasets-server"),
        env={"STILLROOM_ADMIN_KEY": "admin-test-key", "STILLROOM_REDACTION": redaction},
    ) as process:
        yield process


def test_a_running_server_streams_a_redacted_download(
    server: ServerProcess, server_database_url: str
) -> None:
    engine = make_engine(server_database_url)
    try:
        mail = "Reply to ann@example.com"
        rows = [question(n) for n in range(1, 300)]
        rows.append(capture(300, [{"role": "user", "content": mail}], answer("Sure.")))
        store(engine, rows)
    finally:
        engine.dispose()
    created = httpx.post(
        server.base_url + "/admin/datasets", json={"name": "streamed"}, headers=ADMIN, timeout=30
    ).json()
    url = f"{server.base_url}/admin/datasets/{created['id']}/export"
    with httpx.stream("GET", url, headers=ADMIN, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert len(lines) == 300
    users = [example["messages"][0]["content"] for example in lines]
    assert "Reply to [EMAIL]" in users
    assert not any("ann@example.com" in text for text in users)
