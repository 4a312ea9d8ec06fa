"""``stillroom spool ...``: what waits on disk for the database, and the dead-letter file.

Spool files are replayed by a running server on its own; ``list`` shows them. Dead letters
(captures that could be stored neither as they were nor quarantined) wait for a person:
``retry`` stores them again, ``drop`` removes them.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

import click

from proxy.cli._support import cli_engine, cli_settings
from proxy.gateway import DEAD_LETTER, keep_dead_letters, read_dead_letters, retry_dead_letter


@click.group()
def spool() -> None:
    """Captures waiting on disk: spool files and dead letters."""


def _spool_dir(ctx: click.Context) -> Path:
    return cli_settings(ctx).spool_dir


@spool.command("list")
@click.pass_context
def spool_list(ctx: click.Context) -> None:
    """Spool files (captures waiting for the database) and dead letters."""
    folder = _spool_dir(ctx)
    for path in sorted(folder.glob("spool-*.jsonl")):
        lines = len(path.read_bytes().splitlines())
        click.echo(f"spool\t{path.name}\t{lines} captures\t{_owner(path)}")
    letters = read_dead_letters(folder)
    for letter in letters:
        kind = "retryable" if letter.row is not None else "raw only"
        click.echo(f"dead\t{letter.capture_id or '-'}\t{letter.at}\t{kind}\t{letter.reason}")
    if not letters:
        click.echo(f"no dead letters in {folder / DEAD_LETTER}")


def _owner(path: Path) -> str:
    """A live server holds a lock on its own spool file; an orphan is replayed by any."""
    with path.open("rb") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return "held by a running server"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return "orphaned: the next server to start replays it"


@spool.command("retry")
@click.argument("capture_ids", nargs=-1)
@click.pass_context
def spool_retry(ctx: click.Context, capture_ids: tuple[str, ...]) -> None:
    """Store dead letters again (all, or CAPTURE_IDS); those still refused are kept."""
    settings = cli_settings(ctx)
    letters = read_dead_letters(settings.spool_dir)
    kept = []
    stored = 0
    with cli_engine(settings) as engine:
        for letter in letters:
            if capture_ids and letter.capture_id not in capture_ids:
                kept.append(letter)
                continue
            problem = retry_dead_letter(letter, engine)
            if problem is None:
                stored += 1
                continue
            kept.append(letter)
            click.echo(f"{letter.capture_id or '-'}: still not stored: {problem}", err=True)
    keep_dead_letters(settings.spool_dir, kept)
    click.echo(f"stored {stored}, kept {len(kept)}")


@spool.command("drop")
@click.argument("capture_ids", nargs=-1)
@click.option("--all", "drop_all", is_flag=True, help="Drop every dead letter.")
@click.pass_context
def spool_drop(ctx: click.Context, capture_ids: tuple[str, ...], drop_all: bool) -> None:
    """Remove dead letters: CAPTURE_IDS, or --all."""
    if not capture_ids and not drop_all:
        raise click.UsageError("name the captures to drop, or pass --all")
    folder = _spool_dir(ctx)
    letters = read_dead_letters(folder)
    kept = [] if drop_all else [x for x in letters if x.capture_id not in capture_ids]
    keep_dead_letters(folder, kept)
    click.echo(f"dropped {len(letters) - len(kept)}, kept {len(kept)}")
