"""``stillroom validate FILE`` and ``stillroom datasets validate ID``: the fine-tuning data
validator from a terminal.

The report prints as a plain table, or as JSON with ``--json``; the progress bar goes to
stderr, so stdout stays the report alone. The exit status is 1 while blocking errors remain,
so a script can gate an upload on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from finetune import (
    DEFAULT_BASE_MODEL,
    DatasetError,
    Distribution,
    Issue,
    ValidationOptions,
    ValidationReport,
    export_redactor,
    get_dataset,
    validate_dataset,
    validate_file,
)
from proxy._settings import Settings
from proxy.cli._support import cli_settings
from storage import make_engine

_SPLITS = ("train", "validation", "test", "all")


_load_settings = cli_settings


def _options(settings: Settings, base_model: str, epochs: int | None) -> ValidationOptions:
    return ValidationOptions(base_model=base_model, epochs=epochs, prices=settings.training_prices)


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _distribution_rows(report: ValidationReport) -> list[list[str]]:
    rows = [["", "min", "p50", "mean", "p95", "max", "total"]]
    named: list[tuple[str, Distribution | None]] = [
        ("tokens / example", report.tokens_per_example),
        ("assistant tokens / example", report.assistant_tokens_per_example),
        ("messages / example", report.messages_per_example),
    ]
    for name, found in named:
        if found is not None:
            values = (found.min, found.p50, found.mean, found.p95, found.max, found.total)
            rows.append([name, *(_number(v) for v in values)])
    return rows


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def _issues(title: str, issues: list[Issue], counts: dict[str, int]) -> list[str]:
    total = sum(counts.values())
    if not total:
        return []
    lines = [f"{title} ({total}):"]
    code_width = max(len(issue.code) for issue in issues)
    for issue in issues:
        where = str(issue.line) if issue.line is not None else "file"
        lines.append(f"  {where:>6}  {issue.code.ljust(code_width)}  {issue.message}")
    if total > len(issues):
        by_code = ", ".join(f"{code} {count:,}" for code, count in sorted(counts.items()))
        lines.append(f"  … {total - len(issues):,} more not listed; by code: {by_code}")
    return lines


def render_report(report: ValidationReport) -> list[str]:
    """The report as the plain lines the CLI prints."""
    errors, warnings = sum(report.error_counts.values()), sum(report.warning_counts.values())
    verdict = "PASSED" if report.passed else "FAILED"
    cost = report.cost
    lines = [
        f"verdict:   {verdict}: {errors:,} blocking error(s), {warnings:,} warning(s)",
        f"file:      {report.format.value}, {report.lines:,} lines, "
        f"{report.examples:,} examples, {report.bytes:,} bytes",
        f"model:     {report.base_model} ({report.encoding}, "
        f"{report.token_limit:,} tokens per example at most)",
        "",
    ]
    rows = _distribution_rows(report)
    if len(rows) > 1:
        lines.extend([*_table(rows), ""])
    lines += [
        f"billed:    {cost.billed_tokens_per_epoch:,} tokens x {cost.epochs} epochs "
        f"({'given' if cost.epochs_source == 'given' else 'OpenAI default'}) "
        f"= {cost.billed_tokens:,} training tokens",
    ]
    if cost.estimated_usd is None or cost.usd_per_million_tokens is None:
        lines.append(f"cost:      no price for {cost.base_model} (set training_prices)")
    else:
        lines.append(
            f"cost:      ${cost.estimated_usd:,.{2 if cost.estimated_usd >= 1 else 4}f} at "
            f"${cost.usd_per_million_tokens:,.2f} per 1M training tokens"
        )
    for title, issues, counts in (
        ("errors", report.errors, report.error_counts),
        ("warnings", report.warnings, report.warning_counts),
    ):
        block = _issues(title, issues, counts)
        lines.extend(["", *block] if block else [])
    return lines


def _emit(ctx: click.Context, report: ValidationReport, as_json: bool) -> None:
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        for line in render_report(report):
            click.echo(line)
    if not report.passed:
        ctx.exit(1)


_base_model = click.option(
    "--base-model",
    default=DEFAULT_BASE_MODEL,
    show_default=True,
    help="Base model to fine-tune: decides the encoding, token limit and price.",
)
_epochs = click.option(
    "--epochs",
    type=click.IntRange(1, 50),
    default=None,
    help="Epochs for the cost estimate [default: OpenAI's automatic choice].",
)
_as_json = click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")


@click.command("validate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_base_model
@_epochs
@_as_json
@click.pass_context
def validate(
    ctx: click.Context, file: Path, base_model: str, epochs: int | None, as_json: bool
) -> None:
    """Validate a chat fine-tuning JSONL FILE before any upload (exit 1 on blocking errors)."""
    options = _options(_load_settings(ctx), base_model, epochs)
    with click.progressbar(
        length=file.stat().st_size,
        label=f"validating {file.name}",
        file=sys.stderr,
    ) as bar:
        report = validate_file(file, options, progress=bar.update)
    _emit(ctx, report, as_json)


@click.command("validate")
@click.argument("dataset_id")
@click.option("--split", type=click.Choice(_SPLITS), default="train", show_default=True)
@_base_model
@_epochs
@_as_json
@click.pass_context
def validate_dataset_command(
    ctx: click.Context,
    dataset_id: str,
    split: str,
    base_model: str,
    epochs: int | None,
    as_json: bool,
) -> None:
    """Validate a dataset split as its upload would send it (exit 1 on blocking errors)."""
    settings = _load_settings(ctx)
    options = _options(settings, base_model, epochs)
    redactor = export_redactor(settings.redaction)
    engine = make_engine(settings.database_url)
    try:
        counts = get_dataset(engine, dataset_id).counts
        length = sum(int(counts.get(side, 0)) for side in _SPLITS[:3] if split in (side, "all"))
        with click.progressbar(
            length=length,
            label=f"validating {dataset_id} {split}",
            file=sys.stderr,
        ) as bar:
            report = validate_dataset(
                engine,
                dataset_id,
                split=split,
                options=options,
                redact=redactor.redact_value if redactor is not None else None,
                progress=bar.update,
            )
    except DatasetError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()
    _emit(ctx, report, as_json)
