"""``stillroom aliases promote`` and ``stillroom promotions list/show/full/abort`` against the
configured store: a canary by the configured share or a given one, full at once, decisions by
hand, refusals as plain messages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from finetune import get_alias_view, list_promotions
from proxy.cli._main import cli
from storage import session_scope
from tests.promotion_support import STUDENT, TEACHER, make_alias


@pytest.fixture
def config(database_url: str, engine: Engine, tmp_path: Path) -> Path:
    make_alias(engine)
    path = tmp_path / "stillroom.toml"
    path.write_text(
        f'database_url = "{database_url}"\n\n'
        "[canary]\ncanary_percent = 20\nfull_after_requests = 500\n"
    )
    return path


def _run(config: Path, *args: str) -> tuple[int, str]:
    environment: dict[str, str | None] = {n: None for n in os.environ if n.startswith("STILLROOM_")}
    result = CliRunner().invoke(cli, ["--config", str(config), *args], env=environment)
    return result.exit_code, result.output


def _split(engine: Engine) -> list[tuple[str, float, str]]:
    with session_scope(engine) as session:
        view = get_alias_view("bot", session=session)
    return [(t.model, t.weight, t.role) for t in view.targets]


def test_promote_starts_a_canary_at_the_configured_share(config: Path, engine: Engine) -> None:
    code, out = _run(config, "aliases", "promote", "bot", "--model", STUDENT, "--actor", "ann")
    assert code == 0, out
    [promotion] = list_promotions(engine)
    assert out == (
        f"{promotion.id}: canary, {STUDENT} serves 20% of bot; full after 500 student "
        "requests or 3600 s without a regression\n"
    )
    assert (promotion.actor, promotion.stage) == ("ann", "canary")
    assert _split(engine) == [(TEACHER, 80, "teacher"), (STUDENT, 20, "student")]


def test_promote_with_a_share_then_list_show_and_abort(config: Path, engine: Engine) -> None:
    code, out = _run(config, "aliases", "promote", "bot", "--model", STUDENT, "--canary", "5")
    assert code == 0, out
    [promotion] = list_promotions(engine)
    code, out = _run(config, "promotions", "list", "--alias", "bot")
    assert code == 0, out
    assert out.split("\t")[:4] == [promotion.id, "bot", f"{STUDENT}@default", "canary 5%"]
    code, out = _run(config, "promotions", "show", promotion.id)
    assert code == 0, out
    assert "stage:     canary (canary 5%)\n" in out
    assert "versions:  from v1, canary v2, full -\n" in out
    code, out = _run(config, "promotions", "abort", promotion.id, "--reason", "too slow")
    assert code == 0, out
    assert out.startswith(f"{promotion.id}: aborted: aborted by cli:")
    assert out.endswith(": too slow\n")
    assert _split(engine) == [(TEACHER, 1, "teacher")]


def test_full_now_and_full_at_once(config: Path, engine: Engine) -> None:
    _run(config, "aliases", "promote", "bot", "--model", STUDENT)
    [canary] = list_promotions(engine)
    code, out = _run(config, "promotions", "full", canary.id, "--actor", "bob")
    assert code == 0, out
    assert out == f"{canary.id}: full: made full by bob\n"
    assert _split(engine) == [(TEACHER, 0, "teacher"), (STUDENT, 100, "student")]
    code, out = _run(config, "aliases", "promote", "bot", "--model", "ft:next", "--full")
    assert code == 0, out
    assert out.endswith("ft:next now serves all of bot\n")
    assert _split(engine) == [(TEACHER, 0, "teacher"), ("ft:next", 100, "student")]


def test_refusals_exit_with_their_message(config: Path, engine: Engine) -> None:
    code, out = _run(config, "aliases", "promote", "nobody", "--model", STUDENT)
    assert (code, out) == (1, "Error: No alias 'nobody'.\n")
    code, out = _run(config, "promotions", "full", "prom_missing")
    assert (code, out) == (1, "Error: No promotion 'prom_missing'.\n")
    code, out = _run(
        config, "aliases", "promote", "bot", "--model", STUDENT, "--canary", "5", "--full"
    )
    assert code == 2
    assert "give --canary or --full, not both" in out
    assert list_promotions(engine) == []
