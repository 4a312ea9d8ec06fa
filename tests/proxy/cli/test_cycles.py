"""``stillroom cycles start/list/show/cancel`` against the configured store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from finetune import cycles
from proxy.cli._main import cli
from tests.promotion_support import make_alias


@pytest.fixture
def config(database_url: str, engine: Engine, tmp_path: Path) -> Path:
    make_alias(engine)
    path = tmp_path / "stillroom.toml"
    path.write_text(f'database_url = "{database_url}"\n\n[cycles.bot]\nmin_examples = 9\n')
    return path


def _run(config: Path, *args: str) -> tuple[int, str]:
    environment: dict[str, str | None] = {n: None for n in os.environ if n.startswith("STILLROOM_")}
    result = CliRunner().invoke(cli, ["--config", str(config), *args], env=environment)
    return result.exit_code, result.output


def test_start_list_show_and_cancel(config: Path, engine: Engine) -> None:
    code, output = _run(config, "cycles", "start", "bot", "--actor", "ann")
    assert code == 0, output
    [cycle] = cycles(engine)
    assert (cycle.alias, cycle.state, cycle.actor, cycle.policy["min_examples"]) == (
        "bot",
        "collecting",
        "ann",
        9,
    )
    assert output.startswith(f"{cycle.id}  bot  collecting manual")
    assert "started by:  ann" in output

    code, output = _run(config, "cycles", "list", "--state", "collecting")
    assert code == 0 and output.splitlines()[0].startswith(cycle.id)

    code, output = _run(config, "cycles", "cancel", cycle.id, "--reason", "not now")
    assert code == 0, output
    assert "reason:      cancelled by ann: not now" not in output
    assert "reason:      cancelled by cli: not now" in output
    code, output = _run(config, "cycles", "show", cycle.id)
    assert code == 0 and "  collecting  cancelled" in output


def test_refusals_exit_with_their_message(config: Path) -> None:
    code, output = _run(config, "cycles", "start", "nobody")
    assert code == 1 and "No alias 'nobody'" in output
    code, output = _run(config, "cycles", "show", "cyc_missing")
    assert code == 1 and "No cycle 'cyc_missing'" in output
