"""``stillroom datasets``: build, list, show, diff, export and delete datasets from a terminal.

The verbs call the same ``finetune`` services as the admin API, against the database from the
settings. Progress bars go to stderr, so stdout stays the result alone.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click
import orjson
from sqlalchemy import Engine

from finetune import (
    DUPLICATE_POLICIES,
    EXPORT_FORMATS,
    EXPORT_SPLITS,
    SPLITS,
    DatasetError,
    SplitRatios,
    create_dataset,
    delete_dataset,
    diff_datasets,
    get_dataset,
    list_datasets,
    list_duplicates,
    open_export,
)
from proxy._settings import Settings
from proxy.admin._datasets import build_lineage, export_hook
from proxy.cli._captures import capture_filter, filter_options
from proxy.cli._support import cli_engine, cli_settings
from proxy.cli._validate import validate_dataset_command
from storage import Dataset

_settings = cli_settings


def _engine(settings: Settings) -> AbstractContextManager[Engine]:
    return cli_engine(settings, (DatasetError,))


def _summary(dataset: Dataset) -> str:
    counts = dataset.counts
    sides = " ".join(f"{side}={counts.get(side, 0)}" for side in SPLITS)
    return (
        f"{dataset.id}  {dataset.name} v{dataset.version}  {dataset.created_at:%Y-%m-%d %H:%M}"
        f"  examples={counts.get('total', 0)} ({sides})"
    )


def _show(dataset: Dataset) -> None:
    counts = dataset.counts
    skipped = counts.get("skipped") or {}
    lines = [
        _summary(dataset),
        f"filter:      {orjson.dumps(dataset.filter).decode()}",
        f"split:       {', '.join(f'{k}={v:g}' for k, v in dataset.split.items())}",
        f"dedupe:      {dataset.lineage.get('dedupe')}",
        f"selected:    {counts.get('selected', 0)}",
        f"duplicates:  {counts.get('duplicates_dropped', 0)} left out",
        f"threaded:    {counts.get('threaded_dropped', 0)} earlier turns folded into longer ones",
        f"skipped:     {', '.join(f'{k}={v}' for k, v in skipped.items()) or 'none'}",
        f"weight 0:    {counts.get('untaught_turns', 0)} assistant turns the teacher did not write",
        f"preference:  {counts.get('preference_pairs', 0)} pairs (format dpo)",
    ]
    click.echo("\n".join(lines))


@click.group()
def datasets() -> None:
    """Datasets: frozen, versioned snapshots of curated captures, and their JSONL."""


@datasets.command("create")
@click.argument("name")
@filter_options
@click.option(
    "--split",
    "ratios",
    default="0.8,0.1,0.1",
    show_default=True,
    metavar="TRAIN,VALIDATION,TEST",
    help="Shares of each split; together 1.",
)
@click.option(
    "--dedupe",
    type=click.Choice(DUPLICATE_POLICIES),
    default="latest_approved",
    show_default=True,
    help="Which capture of a repeated prompt is kept.",
)
@click.pass_context
def datasets_create(
    ctx: click.Context, /, name: str, ratios: str, dedupe: str, **filters: Any
) -> None:
    """Freeze the captures the filter selects (approved ones unless --status says otherwise)
    into the next version of NAME."""
    if not filters.get("status"):
        filters["status"] = ("approved",)
    selection = capture_filter(filters)
    settings = _settings(ctx)
    with _engine(settings) as engine:
        split = SplitRatios.parse(ratios)
        with _Progress(f"building {name}") as progress:
            dataset = create_dataset(
                engine,
                name,
                selection,
                ratios=split,
                dedupe=dedupe,
                lineage=build_lineage(settings, "cli"),
                progress=progress,
            )
    _show(dataset)


class _Progress:
    """A bar that appears once the build knows how many prompts it has to settle."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.shown = 0

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *_: object) -> None:
        if self.bar is not None:
            self.bar.render_finish()

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
        self.bar.update(done - self.shown)
        self.shown = done


@datasets.command("list")
@click.option("--name", help="Only the versions of this dataset.")
@click.pass_context
def datasets_list(ctx: click.Context, name: str | None) -> None:
    """Datasets, newest first."""
    with _engine(_settings(ctx)) as engine:
        found = list_datasets(engine, name=name)
    for dataset in found:
        click.echo(_summary(dataset))


@datasets.command("show")
@click.argument("dataset_id")
@click.option("--json", "as_json", is_flag=True, help="Print the dataset as JSON.")
@click.pass_context
def datasets_show(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """A dataset's counts, filter, split and lineage."""
    with _engine(_settings(ctx)) as engine:
        dataset = get_dataset(engine, dataset_id)
    if as_json:
        click.echo(orjson.dumps(dataset.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    else:
        _show(dataset)


@datasets.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--limit", type=click.IntRange(0, 10_000), default=20, show_default=True)
@click.pass_context
def datasets_diff(ctx: click.Context, a: str, b: str, limit: int) -> None:
    """Examples added, removed and changed from dataset A to dataset B (by prompt hash)."""
    with _engine(_settings(ctx)) as engine:
        found = diff_datasets(engine, a, b, limit=limit)
    click.echo(
        f"added {found.added}  removed {found.removed}  changed {found.changed}"
        f"  unchanged {found.unchanged}"
    )
    for sign, entries in (("+", found.added_examples), ("-", found.removed_examples)):
        for entry in entries:
            click.echo(
                f"{sign} {entry['capture_id']}  {entry['prompt_hash'][:16]}  {entry['split']}"
            )
    for entry in found.changed_examples:
        click.echo(
            f"~ {entry['a_capture_id']} -> {entry['b_capture_id']}"
            f"  {entry['prompt_hash'][:16]}  {entry['split']}"
        )


@datasets.command("export")
@click.argument("dataset_id")
@click.option("--split", type=click.Choice(EXPORT_SPLITS), default="all", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="sft",
    show_default=True,
    help="sft: chat fine-tuning lines; dpo: preference lines.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [default: stdout].",
)
@click.pass_context
def datasets_export(
    ctx: click.Context, dataset_id: str, split: str, fmt: str, output: Path | None
) -> None:
    """Write a split of a dataset as JSONL (redacted when export redaction is on)."""
    settings = _settings(ctx)
    with _engine(settings) as engine:
        dataset, pages = open_export(
            engine, dataset_id, split=split, fmt=fmt, redact=export_hook(settings)
        )
        if output is None or str(output) == "-":
            sink = sys.stdout.buffer
            for page in pages:
                sink.write(b"".join(page.lines))
            sink.flush()
            return
        length = sum(int(dataset.counts.get(s, 0)) for s in SPLITS if split in (s, "all"))
        lines = 0
        with (
            output.open("wb") as sink_file,
            click.progressbar(length=length, label=f"exporting {split}", file=sys.stderr) as bar,
        ):
            for page in pages:
                sink_file.write(b"".join(page.lines))
                lines += len(page.lines)
                bar.update(page.examples)
    click.echo(f"wrote {lines} lines to {output}", err=True)


@datasets.command("delete")
@click.argument("dataset_id")
@click.confirmation_option(prompt="Delete this dataset and its examples (captures stay)?")
@click.pass_context
def datasets_delete(ctx: click.Context, dataset_id: str) -> None:
    """Delete a dataset and its examples; its captures stay."""
    with _engine(_settings(ctx)) as engine:
        gone = delete_dataset(engine, dataset_id)
    click.echo(f"deleted {gone.id} ({gone.name} v{gone.version})")


@datasets.command("duplicates")
@filter_options
@click.option("--dedupe", type=click.Choice(DUPLICATE_POLICIES), default="latest_approved")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.pass_context
def datasets_duplicates(ctx: click.Context, /, dedupe: str, limit: int, **filters: Any) -> None:
    """Prompts the filter selects more than once, largest groups first; the capture a build
    would keep is listed first."""
    selection = capture_filter(filters)
    with _engine(_settings(ctx)) as engine:
        groups, total = list_duplicates(engine, selection, policy=dedupe, limit=limit)
    click.echo(f"{total} prompts appear more than once")
    for group in groups:
        click.echo(f"{group.prompt_hash[:16]}  {group.size:>5}  keep {group.capture_ids[0]}")


datasets.add_command(validate_dataset_command)
