"""Shared pieces of the routing tests: empty alias tables, and alias configs in one line."""

from __future__ import annotations

from sqlalchemy import Engine, text

from finetune import AliasConfig, TargetSpec


def empty_alias_tables(engine: Engine) -> None:
    """The PostgreSQL test database is shared by the session; these tables start empty."""
    with engine.begin() as connection:
        for table in ("alias_events", "alias_versions", "aliases"):
            connection.execute(text(f"DELETE FROM {table}"))


def config(*targets: tuple[str, float, str], shadow_rate: float = 0.0) -> AliasConfig:
    """``config(("gpt-4o", 90, "teacher"), ("ft:small", 10, "student"))`` on ``default``."""
    return AliasConfig(
        targets=[TargetSpec(model=m, weight=w, role=r) for m, w, r in targets],
        shadow_rate=shadow_rate,
    )
