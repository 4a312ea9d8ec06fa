"""``stillroom jobs ...`` against the configured database and the sandbox upstream."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from finetune import list_jobs
from proxy.cli._main import cli
from tests.finetune._training_helpers import SANDBOX_KEY, clear_training, training_dataset
from tests.sandbox import SandboxConfig, running_sandbox


@pytest.fixture
def run(database_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    clear_training(engine)
    for name in list(os.environ):
        if name.startswith("STILLROOM_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    with running_sandbox(SandboxConfig(step_seconds=0.15)) as upstream:
        yield CliRunner(
            env={
                "STILLROOM_DATABASE_URL": database_url,
                "STILLROOM_UPSTREAM_BASE_URL": upstream,
                "STILLROOM_UPSTREAM_API_KEY": SANDBOX_KEY,
            }
        )


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def test_launch_waits_with_a_progress_bar_then_shows_the_job(
    run: CliRunner, engine: Engine
) -> None:
    dataset_id = training_dataset(engine)
    command = ["jobs", "launch", dataset_id, "--base-model", "gpt-4o-mini-2024-07-18"]
    result = run.invoke(
        cli, [*command, "--suffix", "cli", "--epochs", "2", "--wait", "--poll-seconds", "0.1"]
    )
    shown = _ok(result)
    [job] = list_jobs(engine)
    assert job.state == "succeeded" and job.spec["hyperparameters"]["n_epochs"] == 2
    # Off a terminal, click's bar prints its label at each change instead of redrawing.
    assert result.stderr.split()[-1] == "succeeded" and "running" in result.stderr
    assert shown.splitlines()[0].startswith(f"{job.id}  succeeded")
    assert "ft:gpt-4o-mini-2024-07-18:sandbox:cli:" in shown
    assert "step      2" in shown and "train_loss=0.72" in shown
    assert "The job has successfully completed" in shown

    again = _ok(run.invoke(cli, [*command, "--suffix", "cli", "--epochs", "2"]))
    assert again.splitlines()[0].startswith(f"{job.id}  succeeded")
    assert _ok(run.invoke(cli, ["jobs", "list"])).startswith(f"{job.id}  succeeded")
    assert _ok(run.invoke(cli, ["jobs", "show", job.id])).startswith(f"{job.id}  succeeded")
    assert _ok(run.invoke(cli, ["jobs", "sync", job.id])).startswith(f"{job.id}  succeeded")


def test_cancel_and_sync_of_open_jobs(run: CliRunner, engine: Engine) -> None:
    dataset_id = training_dataset(engine)
    command = ["jobs", "launch", dataset_id, "--base-model", "gpt-4o-mini", "--epochs", "50"]
    _ok(run.invoke(cli, command))
    [job] = list_jobs(engine)
    assert job.state in ("validating_files", "running")
    assert _ok(run.invoke(cli, ["jobs", "sync"])).startswith(f"{job.id}  ")
    assert "cancelled" in _ok(run.invoke(cli, ["jobs", "cancel", job.id]))


def test_refusals_exit_with_the_message(run: CliRunner, engine: Engine) -> None:
    small = training_dataset(engine, train=3)
    result = run.invoke(cli, ["jobs", "launch", small, "--base-model", "gpt-4o-mini"])
    assert result.exit_code == 1 and "failed validation" in result.output
    missing = run.invoke(cli, ["jobs", "show", "trj_missing"])
    assert missing.exit_code == 1 and "no training job trj_missing" in missing.output
    assert list_jobs(engine) == []
