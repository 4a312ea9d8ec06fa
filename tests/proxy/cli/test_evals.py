"""``stillroom evals ...`` against the configured database and a real local fake upstream: run
a candidate with its base behind a progress bar, list, show the worst examples."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from finetune import list_evaluations
from proxy.cli._main import cli
from tests.finetune._eval_helpers import (
    JUDGE,
    FakeUpstream,
    clean_evaluations,  # noqa: F401  used as a fixture
    make_dataset,
    questions,
    said,
    serve_over_http,
)

pytestmark = pytest.mark.usefixtures("clean_evaluations")


def _judge(body: dict[str, Any]) -> dict[str, Any]:
    graded = body["messages"][1]["content"].split("## Answer to grade\n")[1]
    return said(f'{{"score": {4 if graded.startswith("a") else 1}, "reason": "why {graded}"}}')


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    for name in list(os.environ):
        if name.startswith("STILLROOM_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    upstream = FakeUpstream(
        answers={"student:q1": said("a1"), "student:q2": said("a2"), "base:q1": said("a1")},
        rubric=_judge,
    )
    upstream.answers["base:q2"] = said("dunno")
    server = serve_over_http(upstream)
    yield CliRunner(
        env={
            "STILLROOM_DATABASE_URL": database_url,
            "STILLROOM_UPSTREAM_BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/v1",
            "STILLROOM_UPSTREAM_API_KEY": "sk-upstream",
            "STILLROOM_JUDGE_MODEL": JUDGE,
        }
    )
    server.shutdown()
    server.server_close()


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_run_list_and_show(run: CliRunner, engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(2))
    result = run.invoke(
        cli, ["evals", "run", dataset_id, "student", "--base-model", "base", "--concurrency", "2"]
    )
    printed = _ok(result)
    assert "evaluating student and base" in result.stderr
    candidate, base = list_evaluations(engine)
    assert (candidate.model, candidate.state, base.model, base.state) == (
        "student",
        "succeeded",
        "base",
        "succeeded",
    )
    assert printed.splitlines()[0].startswith(f"{candidate.id}  succeeded  candidate  student")
    assert "rubric:      mean 4 over 2" in printed
    assert "rubric_mean      4 vs 2.5  delta 1.5" in printed

    listed = _ok(run.invoke(cli, ["evals", "list", "--dataset", dataset_id])).splitlines()
    assert [line.split()[0] for line in listed] == [candidate.id, base.id]

    shown = _ok(run.invoke(cli, ["evals", "show", base.id, "--worst", "1"]))
    assert "worst examples:" in shown
    worst = shown.split("worst examples:\n")[1].splitlines()
    assert len(worst) == 1
    assert "score=1" in worst[0]
    assert "'dunno'" in worst[0]


def test_unknown_dataset_or_evaluation_exits_with_the_message(run: CliRunner) -> None:
    result = run.invoke(cli, ["evals", "run", "ds_nope", "student"])
    assert result.exit_code == 1
    assert "No dataset 'ds_nope'" in result.output
    shown = run.invoke(cli, ["evals", "show", "eval_nope"])
    assert shown.exit_code == 1
    assert "No evaluation 'eval_nope'" in shown.output
