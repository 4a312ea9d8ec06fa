"""``stillroom rules``: show the configured curation rules, and run them over stored captures."""

from __future__ import annotations

import sys

import click

from finetune import (
    CurationError,
    RuleConfig,
    count_rule_candidates,
    filter_from_params,
    run_rules,
)
from proxy.cli._support import cli_settings
from storage import make_engine

_settings = cli_settings


def describe_conditions(rule: RuleConfig) -> str:
    """The conditions a rule sets, as ``name=value`` words; ``always`` when it sets none."""
    words = []
    for name, value in rule.when.model_dump(mode="json", exclude_defaults=True).items():
        if isinstance(value, list):
            value = ",".join(str(item) for item in value)
        elif isinstance(value, dict):
            value = ",".join(f"{key}:{item}" for key, item in value.items())
        elif isinstance(value, bool):
            value = str(value).lower()
        words.append(f"{name}={value}")
    return " ".join(words) or "always"


def _action(rule: RuleConfig) -> str:
    return f"tag:{rule.tag}" if rule.action == "tag" else rule.action


@click.group()
def rules() -> None:
    """Curation rules from the settings: approve, reject or tag captures."""


@rules.command("list")
@click.pass_context
def rules_list(ctx: click.Context) -> None:
    """List the rules in the order they run."""
    configured = _settings(ctx).rules
    if not configured:
        click.echo("no rules configured (see `rules` in the settings file)")
        return
    width = max(len(rule.name) for rule in configured)
    for rule in configured:
        click.echo(f"{rule.name:<{width}}  {_action(rule):<12}  {describe_conditions(rule)}")


@rules.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
@click.option(
    "--include-reviewed",
    is_flag=True,
    help="Let rules change captures a reviewer already approved or rejected.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only captures matching, as in the admin API: status=pending, model=gpt-4o, "
    "metadata.team=a, error=true, ... (repeatable).",
)
@click.pass_context
def rules_run(
    ctx: click.Context, dry_run: bool, include_reviewed: bool, filters: tuple[str, ...]
) -> None:
    """Run the rules over stored captures and show how many each rule changes."""
    settings = _settings(ctx)
    pairs = []
    for item in filters:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--filter")
        pairs.append((name.strip(), value))
    try:
        capture_filter = filter_from_params(pairs)
    except CurationError as exc:
        raise click.BadParameter(exc.message, param_hint="--filter") from None
    if not settings.rules:
        raise click.ClickException("no rules configured (see `rules` in the settings file)")
    engine = make_engine(settings.database_url)
    try:
        total = count_rule_candidates(engine, capture_filter)
        label = "counting" if dry_run else "applying"
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            report = run_rules(
                engine,
                settings.rules,
                capture_filter,
                dry_run=dry_run,
                include_reviewed=include_reviewed,
                progress=bar.update,
            )
    finally:
        engine.dispose()
    verb = "would change" if dry_run else "changed"
    width = max(len(rule.name) for rule in report.rules)
    click.echo(f"{'rule':<{width}}  {'action':<12}  {verb}")
    for counted in report.rules:
        action = f"tag:{counted.tag}" if counted.action == "tag" else counted.action
        click.echo(f"{counted.name:<{width}}  {action:<12}  {counted.changes}")
    click.echo(
        f"{report.evaluated} captures evaluated; {report.changed} {verb}: "
        f"{report.approved} approved, {report.rejected} rejected, {report.tagged} tagged"
    )
