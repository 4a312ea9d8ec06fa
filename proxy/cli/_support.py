"""What every CLI verb needs: the settings it was given and an engine on their store."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import Engine

from proxy._settings import Settings, SettingsError, load_settings
from storage import make_engine


def cli_settings(ctx: click.Context) -> Settings:
    """Settings from ``stillroom --config`` and the environment; a bad one exits naming it."""
    config: Path | None = (ctx.find_root().obj or {}).get("config")
    try:
        return load_settings(config)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def cli_engine(settings: Settings, refusals: tuple[type[Exception], ...] = ()) -> Iterator[Engine]:
    """The store from the settings; a refusal of the kinds given exits with its message."""
    engine = make_engine(settings.database_url)
    try:
        yield engine
    except refusals as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from None
    finally:
        engine.dispose()


def cli_actor(given: str | None) -> str:
    """Who runs a CLI verb, for the record: ``--actor``, else ``cli:<login name>``."""
    if given:
        return given
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
