"""`stillroom validate FILE` and the dataset validate verb: a plain table or JSON, exit 1 while
blocking errors remain."""

from __future__ import annotations

import os
from pathlib import Path

import click
import orjson
from click.testing import CliRunner
from sqlalchemy import Engine

from finetune import ValidationOptions, validate_file
from proxy.cli._main import cli
from proxy.cli._validate import validate_dataset_command
from tests.proxy.admin.test_validate import build_dataset
from tests.replay._cassettes import RECORDINGS_DIR

DATA = RECORDINGS_DIR / "finetune-data"


def clean_environment() -> dict[str, str | None]:
    return {name: None for name in os.environ if name.startswith("STILLROOM_")}


def run(command: click.Command, *args: str, config: Path | None = None) -> tuple[int, str]:
    arguments = ["--config", str(config), *args] if config is not None else list(args)
    result = CliRunner().invoke(command, arguments, env=clean_environment())
    return result.exit_code, result.stdout


def test_a_passing_file_prints_its_table_and_exits_0() -> None:
    code, out = run(cli, "validate", str(DATA / "ruby_sarcastic_chat.jsonl"))
    assert code == 0
    assert out.splitlines()[0] == "verdict:   PASSED: 0 blocking error(s), 1 warning(s)"
    assert "file:      chat, 10 lines, 10 examples, 2,676 bytes" in out
    assert "tokens / example" in out
    assert "file  few_examples" in out


def test_a_failing_file_lists_its_lines_and_exits_1() -> None:
    path = DATA / "cookbook_toy_chat_fine_tuning.jsonl"
    code, out = run(cli, "validate", str(path), "--base-model", "gpt-3.5-turbo-0613")
    assert code == 1
    assert "FAILED: 1 blocking error(s), 3 warning(s)" in out
    issue_rows = [line.split() for line in out.splitlines() if line.startswith("    ")]
    rows = [row[:2] for row in issue_rows if row[0] == "file" or row[0].isdigit()]
    assert rows == [
        ["file", "too_few_examples"],
        ["3", "missing_system_message"],
        ["4", "missing_user_message"],
        ["5", "over_token_limit"],
    ]
    assert "4,306 tokens x 20 epochs (OpenAI default) = 86,120 training tokens" in out


def test_json_output_is_the_report_itself() -> None:
    path = DATA / "cookbook_drone_training_function_calling_first8.jsonl"
    code, out = run(cli, "validate", str(path), "--json", "--epochs", "3")
    assert code == 1
    expected = validate_file(path, ValidationOptions(epochs=3))
    assert orjson.loads(out) == orjson.loads(expected.model_dump_json())


def test_the_price_table_comes_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "stillroom.toml"
    config.write_text('[training_prices]\n"gpt-4o-mini-2024-07-18" = 10.0\n')
    code, out = run(cli, "validate", str(DATA / "ruby_sarcastic_chat.jsonl"), config=config)
    assert code == 0
    assert "at $10.00 per 1M training tokens" in out


def test_a_dataset_split_validates_from_the_configured_store(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    dataset_id = build_dataset(engine, "ruby_sarcastic_chat.jsonl", "sarcastic")
    config = tmp_path / "stillroom.toml"
    config.write_text(f'database_url = "{database_url}"\n')
    code, out = run(cli, "datasets", "validate", dataset_id, "--json", config=config)
    assert code == 0, out
    report = orjson.loads(out)
    assert (report["passed"], report["examples"]) == (True, 10)
    missing = CliRunner().invoke(
        validate_dataset_command, ["ds_nope"], obj={"config": config}, env=clean_environment()
    )
    assert missing.exit_code == 1
    assert "No dataset 'ds_nope'" in missing.output
