"""The overview over HTTP and on the command line: the shape the console draws, its figures
from the stored captures, the ``model_prices`` setting, the admin key, and a refused window in
OpenAI's error shape."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import Engine

from finetune import set_alias
from proxy import create_app
from proxy.cli._main import cli
from storage import session_scope
from tests.curation_rows import capture_row, store
from tests.routing_support import config
from tests.support import ADMIN, ADMIN_KEY, admin_settings, openai_error

TEACHER = "gpt-4o-2024-08-06"
STUDENT = "ft:gpt-4o-mini-2024-07-18:acme:support:x1"
GROUP = {"requests", "prompt_tokens", "completion_tokens", "cost_usd"}


def _traffic(engine: Engine) -> None:
    """support-bot: 1 teacher and 3 student answers (one failed), 1 shadow; all 30 min ago."""
    with session_scope(engine) as session:
        set_alias(
            "support-bot",
            config((TEACHER, 1, "teacher"), (STUDENT, 3, "student")),
            actor="test",
            reason=None,
            session=session,
        )
    at = datetime.now(UTC) - timedelta(minutes=30)

    def row(n: int, model: str, **extra: Any) -> dict[str, Any]:
        tokens = {"prompt_tokens": 2_000, "completion_tokens": 500}
        values: dict[str, Any] = {
            "created_at": at,
            "alias": "support-bot",
            "served_model": model,
            **tokens,
        }
        return capture_row(n, **(values | extra))

    store(
        engine,
        [
            row(1, TEACHER, review_status="approved"),
            row(2, STUDENT),
            row(3, STUDENT),
            row(4, STUDENT, status_code=500, prompt_tokens=None, completion_tokens=None),
            row(5, TEACHER, tags=["shadow"]),
        ],
    )


@pytest.fixture
def client(database_url: str, engine: Engine, tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    _traffic(engine)
    with TestClient(app=create_app(admin_settings(database_url, tmp_path))) as test_client:
        yield test_client


def test_the_overview_has_the_consoles_shape_and_the_stored_figures(
    client: TestClient[Litestar],
) -> None:
    answer = client.get("/admin/overview", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {
        "since",
        "until",
        "bucket_seconds",
        "traffic",
        "aliases",
        "models",
        "totals",
    }
    assert body["bucket_seconds"] == 3600
    assert len(body["traffic"]) in (24, 25)
    assert set(body["traffic"][0]) == {"start", "requests", "errors", "captured", "approved"}
    busy = [p for p in body["traffic"] if p["requests"]]
    assert [(p["requests"], p["errors"], p["captured"], p["approved"]) for p in busy] == [
        (4, 1, 4, 1)
    ]
    (bot,) = body["aliases"]
    assert {"alias", "requests", "teacher", "student", "shadow", "cost_usd"} <= set(bot)
    assert {"teacher_only_cost_usd", "saving_usd", "student_share"} <= set(bot)
    assert set(bot["teacher"]) == set(bot["student"]) == set(bot["shadow"]) == GROUP
    # gpt-4o $2.50/$10.00 per 1M: 2,000 + 500 tokens cost $0.01; the student $0.0012.
    assert bot["teacher"] == {
        "requests": 1,
        "prompt_tokens": 2_000,
        "completion_tokens": 500,
        "cost_usd": 0.01,
    }
    assert (bot["student"]["requests"], bot["student"]["prompt_tokens"]) == (3, 4_000)
    assert bot["student"]["cost_usd"] == pytest.approx(0.0024)
    assert bot["shadow"]["cost_usd"] == pytest.approx(0.01)
    assert bot["cost_usd"] == pytest.approx(0.0224)
    assert bot["teacher_only_cost_usd"] == pytest.approx(0.03)
    assert bot["saving_usd"] == pytest.approx(0.03 - 0.0224)
    assert (bot["requests"], bot["student_share"]) == (4, 0.75)
    models = {m["model"]: m for m in body["models"]}
    assert set(models[TEACHER]) == {
        "model",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "priced",
    }
    assert (models[TEACHER]["requests"], models[TEACHER]["priced"]) == (2, True)
    assert body["totals"] == {
        "requests": 4,
        "errors": 1,
        "captures": 5,
        "approved": 1,
        "pending": 4,
        "rejected": 0,
        "cost_usd": pytest.approx(0.0224),
        "saving_usd": pytest.approx(0.0076),
    }


def test_a_long_window_is_charted_by_the_day(client: TestClient[Litestar]) -> None:
    body = client.get("/admin/overview", params={"hours": 720}, headers=ADMIN).json()
    assert body["bucket_seconds"] == 86_400
    assert len(body["traffic"]) in (30, 31)
    assert body["totals"]["requests"] == 4


def test_configured_prices_replace_the_list_prices(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    _traffic(engine)
    settings = admin_settings(
        database_url, tmp_path, model_prices={"gpt-4o": {"input": 1.0, "output": 2.0}}
    )
    with TestClient(app=create_app(settings)) as test_client:
        body = test_client.get("/admin/overview", headers=ADMIN).json()
    (bot,) = body["aliases"]
    assert bot["teacher"]["cost_usd"] == pytest.approx(0.002 + 0.001)


def test_the_overview_needs_the_admin_key(client: TestClient[Litestar]) -> None:
    error = openai_error(client.get("/admin/overview"), 401)
    assert error["code"] == "invalid_admin_key"
    wrong = {"authorization": "Bearer not-" + ADMIN_KEY}
    openai_error(client.get("/admin/overview", headers=wrong), 401)


@pytest.mark.parametrize("hours", ["0", "2161", "-5", "soon"])
def test_a_window_out_of_range_is_refused_in_openai_shape(
    client: TestClient[Litestar], hours: str
) -> None:
    error = openai_error(client.get("/admin/overview", params={"hours": hours}, headers=ADMIN), 400)
    assert (error["type"], error["param"]) == ("invalid_request_error", "hours")


def test_the_cli_prints_the_overview_as_a_table(
    database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("STILLROOM_"):
            monkeypatch.delenv(name)
    _traffic(engine)
    runner = CliRunner(env={"STILLROOM_DATABASE_URL": database_url})
    result = runner.invoke(cli, ["overview", "--hours", "24"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("last 24 h:") and lines[0].endswith("by hour")
    assert "requests 4  errors 1 (25.0%)  captured 4 (100.0%)" in lines
    assert "cost $0.02  saving $0.01" in lines
    (bot,) = [line for line in lines if line.startswith("support-bot")]
    assert bot.split() == [
        "support-bot",
        "4",
        "75.0%",
        "$0.01",
        "$0.00",
        "$0.01",
        "$0.02",
        "$0.03",
        "$0.01",
    ]
    refused = runner.invoke(cli, ["overview", "--hours", "0"])
    assert refused.exit_code == 2
