"""Migrations build the schema the models describe, and can be undone."""

from __future__ import annotations

from sqlalchemy import Engine, inspect

from storage import current_revision, head_revision, upgrade
from storage._migrate import downgrade


def test_store_is_at_head_with_both_tables(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"captures", "api_keys", "alembic_version"} <= tables


def test_upgrade_twice_is_harmless(engine: Engine) -> None:
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_downgrade_to_base_and_back(engine: Engine) -> None:
    downgrade(engine, "base")
    assert "captures" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "captures" in inspect(engine).get_table_names()
