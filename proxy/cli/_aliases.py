"""``stillroom aliases``: list, show, set, history, rollback and delete, straight on the store.

A target is written ``MODEL[@UPSTREAM][=WEIGHT]`` (upstream ``default``, weight 1), e.g.
``stillroom aliases set support-bot --teacher gpt-4o=90 --student ft:gpt-4o-mini:acme::x=10``.
Running replicas pick a change up within a second or so (``route_refresh_seconds``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click
from sqlmodel import Session

from finetune import (
    AliasConfig,
    AliasError,
    AliasView,
    Role,
    TargetSpec,
    alias_history,
    delete_alias,
    get_alias_view,
    list_alias_views,
    rollback_alias,
    set_alias,
)
from proxy._settings import Settings
from proxy.cli._support import cli_actor, cli_settings
from storage import make_engine, session_scope

T = TypeVar("T")


_settings = cli_settings


def _run(ctx: click.Context, work: Callable[[Session, Settings], T]) -> T:
    settings = _settings(ctx)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            return work(session, settings)
    except AliasError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()


def parse_target(text: str, role: Role) -> TargetSpec:
    """``MODEL[@UPSTREAM][=WEIGHT]``; model names may hold ``:`` and ``/``, never ``@``/``=``."""
    spec, _, weight = text.rpartition("=") if "=" in text else (text, "", "1")
    model, _, upstream = spec.partition("@")
    try:
        return TargetSpec(
            model=model,
            upstream=upstream or "default",
            weight=float(weight),
            role=role,
        )
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from None


def _describe(view: AliasView) -> str:
    total = sum(t.weight for t in view.targets) or 1
    return ", ".join(
        f"{t.model}@{t.upstream} {t.role} {100 * t.weight / total:.0f}%" for t in view.targets
    )


@click.group()
def aliases() -> None:
    """Model aliases: weighted teacher/student targets, versions, history, rollback."""


@aliases.command("list")
@click.pass_context
def aliases_list(ctx: click.Context) -> None:
    """Every alias, its current version and traffic split."""
    views = _run(ctx, lambda session, _: list_alias_views(session=session))
    if not views:
        click.echo("no aliases")
    for view in views:
        shadow = f"\tshadow {view.shadow_rate:.0%}" if view.shadow_rate else ""
        click.echo(f"{view.name}\tv{view.version}\t{_describe(view)}{shadow}")


@aliases.command("show")
@click.argument("name")
@click.pass_context
def aliases_show(ctx: click.Context, name: str) -> None:
    """One alias's current version and targets."""
    view = _run(ctx, lambda session, _: get_alias_view(name, session=session))
    click.echo(f"alias:       {view.name}")
    click.echo(f"version:     {view.version} (previous: {view.previous_version or '-'})")
    click.echo(f"shadow rate: {view.shadow_rate}")
    click.echo(f"changed by:  {view.changed_by} at {view.updated_at:%Y-%m-%d %H:%M:%S}")
    click.echo(f"reason:      {view.reason or '-'}")
    click.echo("targets:")
    for t in view.targets:
        click.echo(f"  {t.role:<8}{t.weight:>10g}  {t.model}@{t.upstream}")


@aliases.command("set")
@click.argument("name")
@click.option("--teacher", "teacher", default=None, help="MODEL[@UPSTREAM][=WEIGHT]")
@click.option("--student", "students", multiple=True, help="MODEL[@UPSTREAM][=WEIGHT]; repeat.")
@click.option("--shadow-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--reason", default=None, help="Why: kept in the alias's history.")
@click.option("--actor", default=None, help="Who [default: cli:$USER].")
@click.option("--promote", is_flag=True, help="Record the change as a promotion.")
@click.pass_context
def aliases_set(
    ctx: click.Context,
    name: str,
    teacher: str | None,
    students: tuple[str, ...],
    shadow_rate: float,
    reason: str | None,
    actor: str | None,
    promote: bool,
) -> None:
    """Write a new version of NAME (created if new) and make it current."""
    targets = [parse_target(teacher, "teacher")] if teacher else []
    targets += [parse_target(text, "student") for text in students]
    if not targets:
        raise click.UsageError("give --teacher and/or --student")
    try:
        config = AliasConfig(targets=targets, shadow_rate=shadow_rate)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    view = _run(
        ctx,
        lambda session, settings: set_alias(
            name,
            config,
            actor=cli_actor(actor),
            reason=reason,
            action="promote" if promote else "update",
            known_upstreams=["default", *settings.upstreams],
            session=session,
        ),
    )
    click.echo(f"{view.name} is now version {view.version}: {_describe(view)}")


@aliases.command("history")
@click.argument("name")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_context
def aliases_history(ctx: click.Context, name: str, limit: int) -> None:
    """Who changed NAME, when, how and why (newest first)."""
    events = _run(ctx, lambda session, _: alias_history(name, session=session, limit=limit))
    for e in events:
        change = f"v{e.from_version or '-'} -> v{e.to_version or '-'}"
        click.echo(
            f"{e.created_at:%Y-%m-%d %H:%M:%S}\t{e.action}\t{change}\t{e.actor}\t{e.reason or ''}"
        )


@aliases.command("rollback")
@click.argument("name")
@click.option("--to-version", type=click.IntRange(min=1), default=None)
@click.option("--reason", default=None)
@click.option("--actor", default=None, help="Who [default: cli:$USER].")
@click.pass_context
def aliases_rollback(
    ctx: click.Context, name: str, to_version: int | None, reason: str | None, actor: str | None
) -> None:
    """Return NAME to the version current before its last change (or --to-version)."""
    view = _run(
        ctx,
        lambda session, _: rollback_alias(
            name, actor=cli_actor(actor), reason=reason, to_version=to_version, session=session
        ),
    )
    click.echo(f"{view.name} rolled back to version {view.version}: {_describe(view)}")


@aliases.command("delete")
@click.argument("name")
@click.option("--reason", default=None)
@click.option("--actor", default=None, help="Who [default: cli:$USER].")
@click.pass_context
def aliases_delete(ctx: click.Context, name: str, reason: str | None, actor: str | None) -> None:
    """Remove NAME: it passes through as a plain model name again; its history stays."""
    _run(
        ctx,
        lambda session, _: delete_alias(
            name, actor=cli_actor(actor), reason=reason, session=session
        ),
    )
    click.echo(f"deleted alias {name}")
