"""``stillroom overview``: the console's overview as a compact table, straight on the store.

Traffic and capture rate, then per alias what teacher, student and shadow traffic cost and
what the student saved, then per model; costs from the ``model_prices`` setting over OpenAI's
list prices, ``-`` where a model has no price.
"""

from __future__ import annotations

import click

from finetune import (
    MAX_OVERVIEW_HOURS,
    AliasUsage,
    ModelUsage,
    Overview,
    build_overview,
    usage_price_table,
)
from proxy.cli._support import cli_engine, cli_settings

_BARS = "▁▂▃▄▅▆▇█"


def _usd(value: float, priced: bool = True) -> str:
    return f"${value:,.2f}" if priced else "-"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


def sparkline(values: list[int]) -> str:
    """One character per bucket, its height the bucket's share of the busiest one."""
    top = max(values, default=0)
    if top == 0:
        return _BARS[0] * len(values)
    return "".join(_BARS[min(len(_BARS) - 1, v * len(_BARS) // (top + 1))] for v in values)


def _alias_row(a: AliasUsage) -> str:
    saving = _usd(a.saving_usd, a.priced) if a.student.requests else "-"
    return (
        f"{a.alias:<24} {a.requests:>9,} {a.student_share:>8.1%} {_usd(a.teacher.cost_usd):>11}"
        f" {_usd(a.student.cost_usd):>11} {_usd(a.shadow.cost_usd):>10} {_usd(a.cost_usd):>11}"
        f" {_usd(a.teacher_only_cost_usd):>12} {saving:>11}"
    )


def _model_row(m: ModelUsage) -> str:
    return (
        f"{m.model:<40} {m.requests:>9,} {m.prompt_tokens:>13,} {m.completion_tokens:>11,}"
        f" {_usd(m.cost_usd, m.priced):>11}"
    )


def overview_lines(found: Overview, hours: int) -> list[str]:
    t = found.totals
    unit = "hour" if found.bucket_seconds == 3600 else "day"
    captured = sum(p.captured for p in found.traffic)
    lines = [
        f"last {hours} h: {found.since:%Y-%m-%d %H:%M} .. {found.until:%Y-%m-%d %H:%M} UTC,"
        f" by {unit}",
        f"requests  {sparkline([p.requests for p in found.traffic])}",
        f"requests {t.requests:,}  errors {t.errors:,} ({_share(t.errors, t.requests)})"
        f"  captured {captured:,} ({_share(captured, t.requests)})",
        f"captures {t.captures:,}: approved {t.approved:,}  pending {t.pending:,}"
        f"  rejected {t.rejected:,}",
        f"cost {_usd(t.cost_usd)}  saving {_usd(t.saving_usd)}",
    ]
    if found.aliases:
        lines += [
            "",
            f"{'alias':<24} {'requests':>9} {'student':>8} {'teacher $':>11} {'student $':>11}"
            f" {'shadow $':>10} {'cost $':>11} {'teacher-only':>12} {'saving $':>11}",
            *(_alias_row(a) for a in found.aliases),
        ]
    if found.models:
        lines += [
            "",
            f"{'model':<40} {'requests':>9} {'prompt tok':>13} {'compl. tok':>11} {'cost $':>11}",
            *(_model_row(m) for m in found.models),
        ]
    return lines


@click.command()
@click.option(
    "--hours",
    type=click.IntRange(1, MAX_OVERVIEW_HOURS),
    default=24,
    show_default=True,
    help="The window: this many hours up to now (by the hour up to 48, else by the day).",
)
@click.pass_context
def overview(ctx: click.Context, hours: int) -> None:
    """Traffic, capture rate and cost per alias: teacher against student, and the saving."""
    settings = cli_settings(ctx)
    prices = usage_price_table(settings.model_prices)
    with cli_engine(settings) as engine:
        found = build_overview(engine, hours=hours, prices=prices)
    for line in overview_lines(found, hours):
        click.echo(line)
