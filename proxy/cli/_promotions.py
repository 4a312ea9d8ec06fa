"""``stillroom aliases promote`` and ``stillroom promotions``: start a promotion, follow it,
make its canary full or abort it, straight on the store.

Running replicas route by a change within a second or so (``route_refresh_seconds``); the
canary's automatic decisions are the cycle runner's, inside ``stillroom serve``.
"""

from __future__ import annotations

from typing import Any

import click

from finetune import (
    PromotionError,
    abort_promotion,
    get_promotion,
    list_promotions,
    promote_now,
    start_promotion,
)
from proxy.cli._support import cli_actor, cli_engine, cli_settings
from proxy.gateway._router import student_serving
from storage import Promotion


def _when(moment: Any) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment is not None else "-"


def _line(promotion: Promotion) -> str:
    share = "" if promotion.stage != "canary" else f" {promotion.canary_percent:g}%"
    return (
        f"{promotion.id}\t{promotion.alias}\t{promotion.model}@{promotion.upstream}\t"
        f"{promotion.stage}{share}\t{_when(promotion.started_at)}"
    )


def _side(name: str, figures: dict[str, Any]) -> str:
    rate = figures.get("error_rate")
    negative = figures.get("negative_rate")
    return (
        f"{name} {figures['model']}: {figures['requests']} requests, {figures['errors']} errors"
        f" ({'-' if rate is None else f'{100 * rate:.1f}%'}), {figures['negative_feedback']}"
        f" negative ({'-' if negative is None else f'{100 * negative:.1f}%'})"
    )


def _show(promotion: Promotion) -> None:
    def version(value: int | None) -> str:
        return f"v{value}" if value is not None else "-"

    click.echo(f"id:        {promotion.id}")
    click.echo(f"alias:     {promotion.alias}")
    click.echo(f"model:     {promotion.model}@{promotion.upstream}")
    click.echo(f"stage:     {promotion.stage} (canary {promotion.canary_percent:g}%)")
    click.echo(
        f"versions:  from {version(promotion.from_version)}, canary "
        f"{version(promotion.canary_version)}, full {version(promotion.full_version)}"
    )
    click.echo(f"started:   {_when(promotion.started_at)} by {promotion.actor}")
    click.echo(f"reason:    {promotion.reason or '-'}")
    decided = f" by {promotion.decided_by}" if promotion.decided_by else ""
    click.echo(f"decided:   {_when(promotion.decided_at)}{decided}")
    click.echo(f"outcome:   {promotion.outcome or '-'}")
    if promotion.cycle_id:
        click.echo(f"cycle:     {promotion.cycle_id}")
    if promotion.signals:
        click.echo(f"signals:   (at {_when(promotion.checked_at)})")
        for name in ("student", "teacher"):
            click.echo(f"  {_side(name, promotion.signals[name])}")


@click.command("promote")
@click.argument("name")
@click.option("--model", required=True, help="The student, e.g. an ft: model.")
@click.option("--upstream", default="default", show_default=True)
@click.option(
    "--canary",
    "canary_percent",
    type=click.FloatRange(0, 100, max_open=True),
    default=None,
    help="Student's first share of the traffic, in % [default: the canary setting]; 0 = full.",
)
@click.option("--full", is_flag=True, help="Skip the canary: the student serves everything now.")
@click.option("--reason", default=None, help="Why: kept in the alias's history.")
@click.option("--actor", default=None, help="Who [default: cli:$USER].")
@click.pass_context
def aliases_promote(
    ctx: click.Context,
    name: str,
    model: str,
    upstream: str,
    canary_percent: float | None,
    full: bool,
    reason: str | None,
    actor: str | None,
) -> None:
    """Promote MODEL onto alias NAME: a canary share first, full once the signals hold up."""
    if full and canary_percent is not None:
        raise click.UsageError("give --canary or --full, not both")
    settings = cli_settings(ctx)
    policy = settings.canary
    if full or canary_percent is not None:
        policy = policy.model_copy(update={"canary_percent": 0.0 if full else canary_percent})
    with cli_engine(settings, (PromotionError,)) as engine:
        promotion = start_promotion(
            engine,
            name,
            model,
            upstream=upstream,
            policy=policy,
            actor=cli_actor(actor),
            reason=reason,
            known_upstreams=["default", *settings.upstreams],
            serving=student_serving(settings),
        )
    if promotion.stage == "full":
        click.echo(f"{promotion.id}: {model} now serves all of {name}")
    else:
        click.echo(
            f"{promotion.id}: canary, {model} serves {promotion.canary_percent:g}% of {name}; "
            f"full after {policy.full_after_requests} student requests or "
            f"{policy.full_after_seconds:g} s without a regression"
        )


@click.group()
def promotions() -> None:
    """Promotions of students onto aliases: canary, full, rolled back or aborted."""


@promotions.command("list")
@click.option("--alias", default=None, help="Only this alias's promotions.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_context
def promotions_list(ctx: click.Context, alias: str | None, limit: int) -> None:
    """Newest first."""
    with cli_engine(cli_settings(ctx), (PromotionError,)) as engine:
        rows = list_promotions(engine, alias=alias, limit=limit)
    if not rows:
        click.echo("no promotions")
    for promotion in rows:
        click.echo(_line(promotion))


@promotions.command("show")
@click.argument("promotion_id")
@click.pass_context
def promotions_show(ctx: click.Context, promotion_id: str) -> None:
    """One promotion: its versions, who and why, the latest online signals, how it ended."""
    with cli_engine(cli_settings(ctx), (PromotionError,)) as engine:
        _show(get_promotion(engine, promotion_id))


@promotions.command("full")
@click.argument("promotion_id")
@click.option("--reason", default=None)
@click.option("--actor", default=None, help="Who [default: cli:$USER].")
@click.pass_context
def promotions_full(
    ctx: click.Context, promotion_id: str, reason: str | None, actor: str | None
) -> None:
    """Make a canary full now, whatever its signals say."""
    settings = cli_settings(ctx)
    with cli_engine(settings, (PromotionError,)) as engine:
        promotion = promote_now(
            engine,
            promotion_id,
            actor=cli_actor(actor),
            reason=reason,
            serving=student_serving(settings),
        )
    click.echo(f"{promotion.id}: {promotion.stage}: {promotion.outcome or ''}")


@promotions.command("abort")
@click.argument("promotion_id")
@click.option("--reason", default=None)
@click.option("--actor", default=None, help="Who [default: cli:$USER].")
@click.pass_context
def promotions_abort(
    ctx: click.Context, promotion_id: str, reason: str | None, actor: str | None
) -> None:
    """Stop a canary now: its alias goes back to the version before it."""
    with cli_engine(cli_settings(ctx), (PromotionError,)) as engine:
        promotion = abort_promotion(engine, promotion_id, actor=cli_actor(actor), reason=reason)
    click.echo(f"{promotion.id}: {promotion.stage}: {promotion.outcome or ''}")
