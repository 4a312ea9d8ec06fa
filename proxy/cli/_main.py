"""The ``stillroom`` command: serve, migrate, and the admin verbs."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from litestar import Litestar

from proxy._logging import configure_logging
from proxy._settings import Settings, SettingsError, load_settings
from proxy._workers import shared_metrics_dir, worker_count
from proxy.cli._aliases import aliases
from proxy.cli._captures import captures
from proxy.cli._cycles import cycles_group
from proxy.cli._datasets import datasets
from proxy.cli._evals import evals
from proxy.cli._overview import overview
from proxy.cli._promotions import aliases_promote, promotions
from proxy.cli._rules import rules
from proxy.cli._spool import spool
from proxy.cli._training import jobs
from proxy.cli._validate import validate
from storage import (
    create_api_key,
    current_revision,
    database_unreachable,
    head_revision,
    list_api_keys,
    make_engine,
    revoke_api_key,
    session_scope,
    upgrade,
)

_CONFIG_ENV = "STILLROOM_CONFIG_FILE"
_WORKER_HEALTHCHECK_SECONDS = 30
log = logging.getLogger("stillroom")


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    config: Path | None = ctx.obj.get("config")
    try:
        return load_settings(config, **{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=_CONFIG_ENV,
    help="TOML file of settings (environment variables win over it).",
)
@click.pass_context
def cli(ctx: click.Context, config: Path | None) -> None:
    """stillroom: capture chat completions, distil them into a cheaper model."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@click.option("--host", default=None, help="Interface to bind [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [default: 8000].")
@click.option(
    "--workers",
    default=None,
    metavar="N|auto",
    help="Worker processes on the one port; auto: one per CPU [default: 1].",
)
@click.option("--migrate/--no-migrate", default=True, show_default=True, help="Migrate first.")
@click.pass_context
def serve(
    ctx: click.Context, host: str | None, port: int | None, workers: str | None, migrate: bool
) -> None:
    """Run the proxy, admin API and capture writer."""
    import uvicorn

    settings = _settings(ctx, host=host, port=port, workers=workers, migrate=migrate)
    configure_logging(settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    try:
        if migrate:
            upgrade(engine)
        elif current_revision(engine) != head_revision():
            raise click.ClickException("the database is not migrated: run `stillroom migrate`")
    except click.ClickException:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises, say it plainly
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        if not database_unreachable(exc):
            raise click.ClickException(f"cannot use the database: {first_line}") from None
        # Forwarding and the spool need no database: serve now, migrate when it answers.
        log.warning(
            "the database is unavailable (%s): serving anyway; captures are spooled until it "
            "answers%s",
            first_line,
            " and is migrated" if migrate else "",
        )
    finally:
        engine.dispose()
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
    }
    # uvicorn re-raises SIGTERM once it has shut down cleanly; land it on a clean exit.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    count = worker_count(settings.workers)
    if count == 1:
        from proxy._app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    # Workers are separate processes: each parses the same settings again.
    os.environ["STILLROOM_HOST"] = settings.host
    os.environ["STILLROOM_PORT"] = str(settings.port)
    os.environ["STILLROOM_MIGRATE"] = "true" if migrate else "false"
    if ctx.obj.get("config") is not None:
        os.environ[_CONFIG_ENV] = str(ctx.obj["config"])
    log.info("serving with %d worker processes", count)
    with shared_metrics_dir():
        uvicorn.run(
            "proxy.cli._main:app_from_environment",
            factory=True,
            workers=count,
            # A worker answers the supervisor only once it has imported the app, which takes
            # seconds on a busy machine; uvicorn's 5 s made it kill and restart such workers.
            timeout_worker_healthcheck=_WORKER_HEALTHCHECK_SECONDS,
            **common,
        )


def _exit_cleanly(_signum: int, _frame: object) -> None:
    sys.exit(0)


def app_from_environment() -> Litestar:
    """Factory for worker processes."""
    from proxy._app import create_app

    config = os.environ.get(_CONFIG_ENV)
    settings = load_settings(Path(config) if config else None)
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


@cli.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Bring the database schema up to date."""
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
        click.echo(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()


@cli.group()
def keys() -> None:
    """Stillroom API keys (stored hashed; the secret is shown once)."""


@keys.command("create")
@click.argument("name")
@click.pass_context
def keys_create(ctx: click.Context, name: str) -> None:
    """Create a key and print its secret."""
    engine = make_engine(_settings(ctx).database_url)
    try:
        with session_scope(engine) as session:
            key, secret = create_api_key(name, session=session)
    finally:
        engine.dispose()
    click.echo(f"id:     {key.id}\nname:   {key.name}\nsecret: {secret}")
    click.echo("Keep the secret now: stillroom stores only its hash.", err=True)


@keys.command("list")
@click.pass_context
def keys_list(ctx: click.Context) -> None:
    """List keys (never their secrets)."""
    engine = make_engine(_settings(ctx).database_url)
    try:
        with session_scope(engine) as session:
            rows = list_api_keys(session=session)
    finally:
        engine.dispose()
    for key in rows:
        state = "revoked" if key.revoked_at else "active"
        click.echo(f"{key.id}\t{key.prefix}…\t{state}\t{key.created_at:%Y-%m-%d %H:%M}\t{key.name}")


@keys.command("revoke")
@click.argument("key_id")
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key (callers using it get 401 within 30 s)."""
    engine = make_engine(_settings(ctx).database_url)
    try:
        with session_scope(engine) as session:
            key = revoke_api_key(key_id, session=session)
    finally:
        engine.dispose()
    if key is None:
        raise click.ClickException(f"no key {key_id}")
    click.echo(f"revoked {key.id}")


cli.add_command(rules)
cli.add_command(captures)
cli.add_command(validate)
cli.add_command(datasets)
cli.add_command(evals)
cli.add_command(aliases)
aliases.add_command(aliases_promote)
cli.add_command(promotions)
cli.add_command(jobs)
cli.add_command(cycles_group)
cli.add_command(overview)
cli.add_command(spool)


def main() -> None:
    cli(prog_name="stillroom")


if __name__ == "__main__":
    main()
