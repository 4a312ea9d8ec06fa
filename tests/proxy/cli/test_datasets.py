"""``stillroom datasets ...`` against the configured database: the same services as the admin
API, printed plainly, with JSONL written to a file or stdout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from finetune import list_datasets
from proxy.cli._main import cli
from tests.finetune._dataset_helpers import answer, capture, question, recorded_rows, store


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(os.environ):
        if name.startswith("STILLROOM_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    return CliRunner(env={"STILLROOM_DATABASE_URL": database_url})


def _ok(result: Result) -> str:
    """What went to stdout (progress bars go to stderr)."""
    assert result.exit_code == 0, result.output
    return result.stdout


def test_create_show_list_export_and_delete(run: CliRunner, engine: Engine, tmp_path: Path) -> None:
    store(engine, recorded_rows())
    result = run.invoke(cli, ["datasets", "create", "recorded", "--split", "0.5,0.25,0.25"])
    created = _ok(result)
    assert "building recorded" in result.stderr
    (dataset,) = list_datasets(engine)
    assert created.splitlines()[0].startswith(f"{dataset.id}  recorded v1")
    assert "threaded:    4 earlier turns folded into longer ones" in created
    assert "skipped:     refusal=3" in created
    assert dataset.split == {"train": 0.5, "validation": 0.25, "test": 0.25}
    assert dataset.lineage["created_by"] == "cli"
    assert _ok(run.invoke(cli, ["datasets", "list"])).startswith(f"{dataset.id}  recorded v1")
    shown = json.loads(_ok(run.invoke(cli, ["datasets", "show", dataset.id, "--json"])))
    assert shown["counts"] == dataset.counts

    target = tmp_path / "train.jsonl"
    _ok(run.invoke(cli, ["datasets", "export", dataset.id, "--split", "train", "-o", str(target)]))
    lines = target.read_text().splitlines()
    assert len(lines) == dataset.counts["train"]
    printed = _ok(run.invoke(cli, ["datasets", "export", dataset.id, "--split", "train"]))
    assert printed.splitlines() == lines

    _ok(run.invoke(cli, ["datasets", "delete", dataset.id, "--yes"]))
    assert list_datasets(engine) == []


def test_create_takes_filter_options_and_a_duplicate_policy(run: CliRunner, engine: Engine) -> None:
    ask = [{"role": "user", "content": "Reset my password"}]
    store(
        engine,
        [
            capture(1, ask, answer("rated"), rating=5, metadata_={"team": "a"}),
            capture(2, ask, answer("latest"), metadata_={"team": "a"}),
            question(3) | {"metadata_": {"team": "b"}},
        ],
    )
    output = _ok(
        run.invoke(
            cli,
            ["datasets", "create", "team-a", "--metadata", "team=a", "--dedupe", "best_rated"],
        )
    )
    assert "duplicates:  1 left out" in output
    (dataset,) = list_datasets(engine)
    assert dataset.filter == {"status": ["approved"], "metadata": {"team": "a"}}
    exported = _ok(run.invoke(cli, ["datasets", "export", dataset.id]))
    assert json.loads(exported)["messages"][-1] == answer("rated")
    groups = _ok(run.invoke(cli, ["datasets", "duplicates", "--status", "approved"]))
    assert groups.splitlines()[0] == "1 prompts appear more than once"


def test_diff_prints_added_and_removed(run: CliRunner, engine: Engine) -> None:
    store(engine, [question(1), question(2)])
    _ok(run.invoke(cli, ["datasets", "create", "grow"]))
    store(engine, [question(3)])
    _ok(run.invoke(cli, ["datasets", "create", "grow"]))
    second, first = list_datasets(engine)
    output = _ok(run.invoke(cli, ["datasets", "diff", first.id, second.id]))
    summary, added = output.splitlines()
    assert summary == "added 1  removed 0  changed 0  unchanged 2"
    assert added.startswith(f"+ {question(3)['id']}")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["datasets", "create", "x", "--split", "0.8,0.1,0.2"], "add up to 1"),
        (["datasets", "create", "bad name!"], "dataset name"),
        (["datasets", "show", "ds_missing"], "No dataset 'ds_missing'."),
        (["datasets", "export", "ds_missing"], "No dataset 'ds_missing'."),
        (["datasets", "create", "x", "--created-after", "yesterday"], "created_after"),
    ],
)
def test_bad_input_exits_with_the_reason_and_changes_nothing(
    run: CliRunner, engine: Engine, arguments: list[str], message: str
) -> None:
    store(engine, [question(1)])
    result = run.invoke(cli, arguments)
    assert result.exit_code != 0
    assert message in result.output
    assert list_datasets(engine) == []
