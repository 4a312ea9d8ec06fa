"""The training admin API over HTTP against the sandbox upstream: launch once, follow to the
``ft:`` model, cancel, and OpenAI-shaped refusals that change nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from proxy import Settings, create_app
from proxy.admin._training import backend_config
from tests.finetune._training_helpers import SANDBOX_KEY, clear_training, training_dataset
from tests.sandbox import SandboxConfig, running_sandbox
from tests.support import ADMIN, admin_settings, openai_error

Client = TestClient[Any]
BASE = "gpt-4o-mini-2024-07-18"


def _settings(database_url: str, upstream: str, tmp_path: Path) -> Settings:
    return admin_settings(
        database_url,
        tmp_path,
        upstream_base_url=upstream,
        upstream_api_key=SANDBOX_KEY,
    )


@pytest.fixture
def client(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[Client]:
    clear_training(engine)
    with (
        running_sandbox(SandboxConfig(step_seconds=0.2)) as upstream,
        TestClient(app=create_app(_settings(database_url, upstream, tmp_path))) as test_client,
    ):
        yield test_client


_error = openai_error


def _launch(client: Client, **body: Any) -> Any:
    return client.post("/admin/jobs", json={"base_model": BASE, **body}, headers=ADMIN)


def test_launch_follow_and_read_a_job(client: Client, engine: Engine) -> None:
    dataset_id = training_dataset(engine)
    launched = _launch(client, dataset_id=dataset_id, suffix="support")
    assert launched.status_code == 201, launched.text
    job = launched.json()
    assert job["state"] == "validating_files" and job["backend"] == "openai"
    assert job["spec"]["hyperparameters"] == {
        "n_epochs": "auto",
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
    }
    again = _launch(client, dataset_id=dataset_id, suffix="support")
    assert again.json()["id"] == job["id"]
    listed = client.get("/admin/jobs", params={"dataset_id": dataset_id}, headers=ADMIN).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]

    deadline = time.monotonic() + 10
    while True:
        synced = client.post(f"/admin/jobs/{job['id']}/sync", headers=ADMIN).json()
        if synced["state"] == "succeeded" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert synced["fine_tuned_model"].startswith(f"ft:{BASE}:sandbox:support:")
    for state, found in (("succeeded", [job["id"]]), ("failed", [])):
        listed = client.get("/admin/jobs", params={"state": state}, headers=ADMIN).json()
        assert [j["id"] for j in listed["data"]] == found
    detail = client.get(f"/admin/jobs/{job['id']}", headers=ADMIN).json()
    assert detail["events"][-1]["message"] == "The job has successfully completed"
    assert [c["step"] for c in detail["checkpoints"]] == [1, 2, 3]
    assert detail["checkpoints"][0]["metrics"]["train_loss"] == 1.2
    assert client.post(f"/admin/jobs/{job['id']}/cancel", headers=ADMIN).json()["state"] == (
        "succeeded"
    )


def test_cancel_a_running_job(client: Client, engine: Engine) -> None:
    body = {"dataset_id": training_dataset(engine), "hyperparameters": {"n_epochs": 50}}
    job = _launch(client, **body).json()
    cancelled = client.post(f"/admin/jobs/{job['id']}/cancel", headers=ADMIN)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


def test_refusals_are_openai_shaped_and_change_nothing(client: Client, engine: Engine) -> None:
    assert _error(_launch(client, dataset_id="ds_missing"), 404)["message"]
    refused = _error(_launch(client, dataset_id=training_dataset(engine, train=3)), 400)
    assert refused["code"] == "validation_failed"
    assert "failed validation" in refused["message"]
    assert _error(_launch(client, dataset_id="ds_x", backend="nowhere"), 400)["param"] == (
        "backend"
    )
    _error(_launch(client, dataset_id="ds_x", method="ppo"), 400)
    _error(client.get("/admin/jobs/trj_missing", headers=ADMIN), 404)
    _error(client.post("/admin/jobs/trj_missing/cancel", headers=ADMIN), 404)
    _error(client.get("/admin/jobs", params={"limit": 0}, headers=ADMIN), 400)
    assert client.get("/admin/jobs").status_code in (401, 403)
    assert client.get("/admin/jobs", headers=ADMIN).json()["data"] == []


def test_closed_fine_tuning_is_a_plain_400(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    clear_training(engine)
    dataset_id = training_dataset(engine)
    with (
        running_sandbox(SandboxConfig(refuse_fine_tuning=True)) as upstream,
        TestClient(app=create_app(_settings(database_url, upstream, tmp_path))) as client,
    ):
        error = _error(_launch(client, dataset_id=dataset_id), 400)
        assert error["code"] == "fine_tuning_closed"
        assert "self-serve fine-tuning is closed to this organisation" in error["message"]
        [job] = client.get("/admin/jobs", headers=ADMIN).json()["data"]
        assert job["state"] == "failed" and job["error"]["code"] == "fine_tuning_closed"


def test_the_openai_backend_defaults_to_the_upstream(tmp_path: Path) -> None:
    settings = _settings("sqlite:///x.db", "http://127.0.0.1:1/v1", tmp_path)
    config = backend_config(settings)
    assert config.kind == "openai" and config.base_url == "http://127.0.0.1:1/v1"
    assert config.api_key is not None and config.api_key.get_secret_value() == SANDBOX_KEY
