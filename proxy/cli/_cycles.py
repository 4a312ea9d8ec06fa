"""``stillroom cycles``: start, follow, list, show and cancel distillation cycles.

A running ``stillroom serve`` moves cycles on (the replica holding the cycle lease does);
``start --follow`` and ``follow`` watch one from the database with a bar over its five steps,
on stderr, so stdout stays the result alone.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager

import click
from sqlalchemy import Engine

from finetune import (
    CycleError,
    CyclePolicy,
    cancel_cycle,
    cycles,
    require_cycle,
    start_cycle,
)
from proxy._settings import Settings
from proxy.admin._training import backend_from_settings
from proxy.cli._support import cli_engine, cli_settings
from storage import OPEN_CYCLE_STATES, TERMINAL_CYCLE_STATES, Cycle

_settings = cli_settings
STEPS = OPEN_CYCLE_STATES


def _engine(settings: Settings) -> AbstractContextManager[Engine]:
    return cli_engine(settings, (CycleError,))


def _line(cycle: Cycle) -> str:
    return (
        f"{cycle.id}  {cycle.alias}  {cycle.state:<10} {cycle.trigger:<9} "
        f"{cycle.created_at:%Y-%m-%d %H:%M:%S}  {cycle.student_model or '-'}"
    )


def _show(cycle: Cycle) -> None:
    lines = [
        _line(cycle),
        f"started by:  {cycle.actor}",
        f"dataset:     {cycle.dataset_id or '-'}",
        f"job:         {cycle.training_job_id or '-'}",
        f"evaluation:  {cycle.evaluation_id or '-'} (base {cycle.base_evaluation_id or '-'})",
        f"promotion:   {cycle.promotion_id or '-'}",
    ]
    if cycle.reason:
        lines.append(f"reason:      {cycle.reason}")
    lines.append("steps:")
    for step in cycle.steps:
        started = step.get("started_at", "")[11:19]
        finished = (step.get("finished_at") or "")[11:19] or "…"
        lines.append(
            f"  {step['step']:<11} {step['state']:<9} {started} → {finished}  "
            f"{step.get('detail') or ''}".rstrip()
        )
    if cycle.gate:
        lines.append("gate:")
        lines.extend(f"  {reason}" for reason in cycle.gate.get("reasons", []))
    click.echo("\n".join(lines))


def step_index(state: str) -> int:
    """How many of the five steps are behind a cycle in ``state``."""
    return len(STEPS) if state in TERMINAL_CYCLE_STATES else STEPS.index(state)


def follow(engine: Engine, cycle_id: str, poll_seconds: float) -> Cycle:
    """Watch the cycle until it ends, a bar step by step on stderr."""
    cycle = require_cycle(engine, cycle_id)
    with click.progressbar(length=len(STEPS), label=cycle.state, file=sys.stderr) as bar:
        shown = 0
        while True:
            done = step_index(cycle.state)
            bar.label = f"{cycle.state}: {cycle.steps[-1].get('detail') or ''}"[:70]
            bar.update(max(done - shown, 0))
            shown = max(shown, done)
            if cycle.state in TERMINAL_CYCLE_STATES:
                return cycle
            time.sleep(poll_seconds)
            cycle = require_cycle(engine, cycle_id)


@click.group("cycles")
def cycles_group() -> None:
    """Distillation cycles: collect → export → train → evaluate → promote."""


@cycles_group.command("list")
@click.option("--alias", default=None, help="Only this alias's cycles.")
@click.option("--state", default=None, help="Only cycles in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.pass_context
def cycles_list(ctx: click.Context, alias: str | None, state: str | None, limit: int) -> None:
    """Cycles, newest first: id, alias, state, trigger, start, student model."""
    with _engine(_settings(ctx)) as engine:
        for cycle in cycles(engine, alias=alias, state=state, limit=limit):
            click.echo(_line(cycle))


@cycles_group.command("show")
@click.argument("cycle_id")
@click.pass_context
def cycles_show(ctx: click.Context, cycle_id: str) -> None:
    """A cycle with each step's times and outcome, and the gate's reasons."""
    with _engine(_settings(ctx)) as engine:
        _show(require_cycle(engine, cycle_id))


@cycles_group.command("start")
@click.argument("alias")
@click.option("--follow/--no-follow", "following", default=False, help="Watch it to the end.")
@click.option("--poll-seconds", type=float, default=2.0, show_default=True)
@click.option("--actor", default="cli", show_default=True, help="Who starts it, for the record.")
@click.pass_context
def cycles_start(
    ctx: click.Context, alias: str, following: bool, poll_seconds: float, actor: str
) -> None:
    """Start a cycle of ALIAS now; a running server moves it on."""
    settings = _settings(ctx)
    with _engine(settings) as engine:
        policy = settings.cycles.get(alias, CyclePolicy())
        cycle = start_cycle(engine, alias, policy, trigger="manual", actor=actor)
        if following:
            cycle = follow(engine, cycle.id, poll_seconds)
        _show(cycle)
        if cycle.state in ("failed", "cancelled"):
            sys.exit(1)


@cycles_group.command("follow")
@click.argument("cycle_id")
@click.option("--poll-seconds", type=float, default=2.0, show_default=True)
@click.pass_context
def cycles_follow(ctx: click.Context, cycle_id: str, poll_seconds: float) -> None:
    """Watch a cycle until it ends."""
    with _engine(_settings(ctx)) as engine:
        cycle = follow(engine, cycle_id, poll_seconds)
        _show(cycle)
        if cycle.state in ("failed", "cancelled"):
            sys.exit(1)


@cycles_group.command("cancel")
@click.argument("cycle_id")
@click.option("--reason", default=None)
@click.option("--actor", default="cli", show_default=True)
@click.pass_context
def cycles_cancel(ctx: click.Context, cycle_id: str, reason: str | None, actor: str) -> None:
    """Stop a cycle: its training job is cancelled and its canary rolled back."""
    settings = _settings(ctx)
    with _engine(settings) as engine:
        cycle = cancel_cycle(
            engine,
            cycle_id,
            actor=actor,
            reason=reason,
            backend_for=lambda name: backend_from_settings(settings, name),
        )
        _show(cycle)
