"""``stillroom spool``: dead letters are listed, stored again by retry, removed by drop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from proxy.cli._main import cli
from proxy.gateway import DEAD_LETTER
from proxy.gateway._capture import build_row
from proxy.gateway._dead_letter import append_dead_letter
from storage import get_capture, session_scope
from tests.proxy.gateway.test_sink import exchange


@pytest.fixture
def run(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in list(os.environ):
        if name.startswith(("STILLROOM_", "OPENAI_")):
            monkeypatch.delenv(name)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    return CliRunner(
        env={"STILLROOM_DATABASE_URL": database_url, "STILLROOM_SPOOL_DIR": str(spool_dir)}
    )


def test_dead_letters_are_listed_retried_and_dropped(
    run: CliRunner, engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    row = build_row(exchange(7))
    append_dead_letter(spool_dir, {"id": row["id"], "reason": "Refused: x", "at": "t", "row": row})
    append_dead_letter(
        spool_dir, {"id": None, "reason": "JSONDecodeError: y", "at": "t", "raw": "{"}
    )

    listed = run.invoke(cli, ["spool", "list"])
    assert listed.exit_code == 0, listed.output
    assert f"dead\t{row['id']}\tt\tretryable\tRefused: x" in listed.output
    assert "dead\t-\tt\traw only\tJSONDecodeError: y" in listed.output

    retried = run.invoke(cli, ["spool", "retry"])
    assert retried.exit_code == 0, retried.output
    assert "stored 1, kept 1" in retried.output
    with session_scope(engine) as session:
        capture = get_capture(row["id"], session=session)
        assert capture is not None and capture.response is not None

    dropped = run.invoke(cli, ["spool", "drop", "--all"])
    assert dropped.exit_code == 0, dropped.output
    assert "dropped 1, kept 0" in dropped.output
    assert not (spool_dir / DEAD_LETTER).exists()
