"""`stillroom rules list` and `stillroom rules run [--dry-run]` against the configured store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from proxy.cli._main import cli
from tests.finetune.curation.test_rules import seed, state

RULES_TOML = """
[[rules]]
name = "reject-errors"
when = { error = true }
action = "reject"

[[rules]]
name = "approve-positive"
when = { feedback = ["positive"] }
action = "approve"

[[rules]]
name = "tag-billing"
when = { regex = "(?i)invoice", regex_in = "request" }
action = "tag"
tag = "billing"
"""


@pytest.fixture
def config(database_url: str, engine: Engine, tmp_path: Path) -> Path:
    seed(engine)
    path = tmp_path / "stillroom.toml"
    path.write_text(f'database_url = "{database_url}"\n{RULES_TOML}')
    return path


def clean_environment() -> dict[str, str | None]:
    """The config file alone decides: no STILLROOM_* variable of the caller's wins over it."""
    return {name: None for name in os.environ if name.startswith("STILLROOM_")}


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["--config", str(config), "rules", *args], env=clean_environment()
    )
    return result.exit_code, result.output


def test_rules_list_shows_each_rule_its_action_and_conditions(config: Path) -> None:
    code, output = run(config, "list")
    assert code == 0
    assert output.splitlines() == [
        "reject-errors     reject        error=true",
        "approve-positive  approve       feedback=positive",
        "tag-billing       tag:billing   regex=(?i)invoice regex_in=request",
    ]


def test_a_dry_run_prints_the_counts_the_real_run_then_applies(
    config: Path, engine: Engine
) -> None:
    before = state(engine)
    code, dry = run(config, "run", "--dry-run")
    assert code == 0
    assert state(engine) == before
    assert "reject-errors     reject        2" in dry
    assert "9 captures evaluated; 4 would change: 1 approved, 2 rejected, 1 tagged" in dry
    code, real = run(config, "run")
    assert code == 0
    assert "9 captures evaluated; 4 changed: 1 approved, 2 rejected, 1 tagged" in real
    assert sum(before[key] != value for key, value in state(engine).items()) == 4


def test_a_filtered_run_with_include_reviewed(config: Path, engine: Engine) -> None:
    code, output = run(config, "run", "--filter", "feedback=positive", "--include-reviewed")
    assert code == 0
    assert "2 captures evaluated; 2 changed: 2 approved, 0 rejected, 0 tagged" in output
    assert state(engine)["cap_0006"] == ("approved", [])


def test_a_bad_filter_is_refused_and_changes_nothing(config: Path, engine: Engine) -> None:
    before = state(engine)
    code, output = run(config, "run", "--filter", "colour=red")
    assert code == 2
    assert "Unknown filter parameter 'colour'" in output
    code, output = run(config, "run", "--filter", "error")
    assert code == 2
    assert "expected NAME=VALUE" in output
    assert state(engine) == before


def test_a_bad_rule_stops_any_command_naming_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[rules]]\nname = "no-tag"\naction = "tag"\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "serve"], env=clean_environment())
    assert result.exit_code == 1
    assert "rule 'no-tag': tag: a tag rule needs the tag it adds" in result.output
