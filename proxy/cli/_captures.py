"""``stillroom captures ...``: the curation verbs, straight against the configured database.

They call the same ``finetune`` services as the admin API, so both refuse the same input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
import orjson
from sqlalchemy import Engine
from sqlmodel import Session

from finetune import (
    MAX_PAGE_SIZE,
    CaptureDetail,
    CurationError,
    InvalidCurationInput,
    bulk_preview,
    capture_detail,
    delete_captures,
    edit_capture,
    filter_from_params,
    list_captures,
    rate_capture,
    retag_capture,
    run_bulk,
    set_capture_status,
)
from proxy.admin._captures import detail_public, page_public
from proxy.cli._support import cli_engine, cli_settings
from storage import BulkAction, CaptureFilter, ReviewStatus, session_scope

T = TypeVar("T")
_BULK_ACTIONS = ("approve", "reject", "pending", "tag", "untag", "delete")


@contextmanager
def _engine(ctx: click.Context) -> Iterator[Engine]:
    with cli_engine(cli_settings(ctx), (CurationError,)) as engine:
        yield engine


def _in_session(ctx: click.Context, work: Callable[[Session], T]) -> T:
    with _engine(ctx) as engine, session_scope(engine) as session:
        return work(session)


def filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The capture filter as options; every one narrows the selection."""
    options = [
        click.option("--status", multiple=True, help="pending, approved or rejected."),
        click.option("--model", multiple=True, help="Requested or served model."),
        click.option("--alias", multiple=True),
        click.option("--tag", multiple=True, help="Captures with every one of these tags."),
        click.option("--metadata", multiple=True, metavar="KEY=VALUE"),
        click.option("--created-after", metavar="TIME", help="ISO 8601 or Unix seconds."),
        click.option("--created-before", metavar="TIME"),
        click.option("--finish-reason", multiple=True),
        click.option("--has-tool-calls/--no-tool-calls", default=None),
        click.option("--error/--no-error", default=None, help="Failed, or answered with 2xx."),
        click.option("--feedback", multiple=True, help="positive, negative, neutral or none."),
        click.option("--stream/--no-stream", default=None),
        click.option(
            "--edited/--not-edited", default=None, help="Answer replaced by an edit, or never."
        ),
        *(
            click.option(f"--{bound}-{kind}-tokens", type=int, default=None)
            for bound in ("min", "max")
            for kind in ("prompt", "completion", "total")
        ),
        click.option("--search", help="Text in the messages or the answer."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def capture_filter(values: dict[str, Any]) -> CaptureFilter:
    """The filter from the options' values, parsed as the admin API parses its query."""
    pairs: list[tuple[str, str]] = []
    for name, value in values.items():
        if value is None or value == ():
            continue
        if name == "metadata":
            for item in value:
                key, equals, text = item.partition("=")
                if not equals or not key:
                    raise click.BadParameter("expected KEY=VALUE", param_hint="--metadata")
                pairs.append((f"metadata.{key}", text))
        elif isinstance(value, tuple):
            pairs += [(name, str(item)) for item in value]
        elif isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        else:
            pairs.append((name, str(value)))
    try:
        return filter_from_params(pairs)
    except InvalidCurationInput as exc:
        hint = "--" + (exc.param or "filter").split(".")[0].replace("_", "-")
        raise click.BadParameter(exc.message, param_hint=hint) from None


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    for line in [headers, *rows]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


@click.group()
def captures() -> None:
    """Review captures: list, show, approve, reject, tag, rate, edit, bulk actions, delete."""


@captures.command("list")
@filter_options
@click.option("--limit", type=click.IntRange(1, MAX_PAGE_SIZE), default=50, show_default=True)
@click.option("--cursor", help="The next_cursor a previous page printed.")
@click.option("--order", type=click.Choice(["desc", "asc"]), default="desc", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.pass_context
def list_command(
    ctx: click.Context,
    /,
    limit: int,
    cursor: str | None,
    order: str,
    as_json: bool,
    **filters: Any,
) -> None:
    """List captures, newest first."""
    selection = capture_filter(filters)
    page = page_public(
        _in_session(
            ctx,
            lambda s: list_captures(
                selection,
                session=s,
                cursor=cursor,
                limit=limit,
                order="asc" if order == "asc" else "desc",
            ),
        )
    )
    if as_json:
        click.echo(page.model_dump_json(indent=2))
        return
    rows = [
        [
            item.id,
            f"{item.created_at:%Y-%m-%d %H:%M:%S}",
            item.review_status,
            "yes" if item.edited else "-",
            item.requested_model or "-",
            item.finish_reason or item.error_kind or str(item.status_code or "-"),
            f"{item.prompt_tokens or 0}/{item.completion_tokens or 0}",
            item.feedback or "-",
            str(item.rating or "-"),
            ",".join(item.tags) or "-",
        ]
        for item in page.data
    ]
    headers = [
        "ID", "CREATED", "STATUS", "EDITED", "MODEL", "FINISH", "TOKENS", "FEEDBACK", "RATING",
        "TAGS",
    ]  # fmt: skip
    _print_table(headers, rows)
    if page.next_cursor is not None:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@captures.command("show")
@click.argument("capture_id")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.pass_context
def show_command(ctx: click.Context, capture_id: str, as_json: bool) -> None:
    """Show one capture: its conversation, answer, edits and feedback."""
    detail = _in_session(ctx, lambda s: capture_detail(capture_id, session=s))
    if as_json:
        click.echo(detail_public(detail).model_dump_json(indent=2))
        return
    _print_detail(detail)


def _print_detail(detail: CaptureDetail) -> None:
    capture = detail.capture
    click.echo(f"id:       {capture.id}  ({capture.completion_id or 'no completion'})")
    click.echo(f"created:  {capture.created_at:%Y-%m-%d %H:%M:%S}")
    click.echo(f"model:    {capture.requested_model} -> {capture.served_model}")
    click.echo(f"status:   {capture.review_status}  rating: {capture.rating or '-'}")
    click.echo(f"feedback: {capture.feedback or '-'}  tags: {', '.join(capture.tags) or '-'}")
    click.echo("\nconversation:")
    for message in detail.messages:
        click.echo(f"  [{_role(message)}] {_text(message)}")
    original = detail.original_answer
    click.echo(f"\nanswer (original):\n  {_text(original) if original else '(none)'}")
    for edit in detail.edits:
        why = f": {edit.reason}" if edit.reason else ""
        click.echo(f"\nedit by {edit.author} at {edit.created_at:%Y-%m-%d %H:%M}{why}")
        click.echo(f"  {_text(edit.message)}")
    for entry in detail.feedback:
        thumbs = {1: "up", -1: "down"}.get(entry.thumbs or 0, "-")
        click.echo(
            f"\nfeedback at {entry.created_at:%Y-%m-%d %H:%M}: thumbs {thumbs}, "
            f"score {entry.score if entry.score is not None else '-'}, {entry.comment or ''}"
        )


def _role(message: Any) -> str:
    return str(message.get("role")) if isinstance(message, dict) else "?"


def _text(message: Any) -> str:
    if not isinstance(message, dict):
        return str(message)
    content = message.get("content")
    text = content if isinstance(content, str) else orjson.dumps(content).decode()
    calls = message.get("tool_calls") or []
    named = [f"{(c.get('function') or {}).get('name')}(...)" for c in calls if isinstance(c, dict)]
    return " ".join(part for part in [text if content is not None else "", *named] if part)


def _status_command(name: str, status: ReviewStatus, summary: str) -> None:
    @captures.command(name, help=summary)
    @click.argument("capture_ids", nargs=-1, required=True)
    @click.pass_context
    def command(ctx: click.Context, capture_ids: tuple[str, ...]) -> None:
        changed = _in_session(ctx, lambda s: set_capture_status(capture_ids, status, session=s))
        click.echo(f"{status}: {changed} changed, {len(set(capture_ids)) - changed} already so")


_status_command("approve", "approved", "Approve captures for training.")
_status_command("reject", "rejected", "Reject captures.")
_status_command("pending", "pending", "Put captures back to pending review.")


@captures.command("tag")
@click.argument("capture_id")
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove these tags instead.")
@click.pass_context
def tag_command(ctx: click.Context, capture_id: str, tags: tuple[str, ...], remove: bool) -> None:
    """Add (or remove) curation tags."""
    added, removed = ((), tags) if remove else (tags, ())
    capture = _in_session(
        ctx, lambda s: retag_capture(capture_id, add=added, remove=removed, session=s)
    )
    click.echo(f"{capture.id}: {', '.join(capture.tags) or '(no tags)'}")


@captures.command("rate")
@click.argument("capture_id")
@click.argument("rating", type=click.IntRange(1, 5))
@click.pass_context
def rate_command(ctx: click.Context, capture_id: str, rating: int) -> None:
    """Rate a capture from 1 to 5."""
    capture = _in_session(ctx, lambda s: rate_capture(capture_id, rating, session=s))
    click.echo(f"{capture.id}: rated {capture.rating}")


@captures.command("edit")
@click.argument("capture_id")
@click.option("--content", required=True, help="The corrected assistant answer.")
@click.option("--reason", help="Why it was corrected.")
@click.option("--author", default="cli", show_default=True)
@click.pass_context
def edit_command(
    ctx: click.Context, capture_id: str, content: str, reason: str | None, author: str
) -> None:
    """Store a corrected answer beside the original."""
    message = {"role": "assistant", "content": content}
    edit = _in_session(
        ctx, lambda s: edit_capture(capture_id, message, author=author, reason=reason, session=s)
    )
    click.echo(f"{capture_id}: edit {edit.id} by {edit.author} is now the answer")


@captures.command("delete")
@click.argument("capture_ids", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def delete_command(ctx: click.Context, capture_ids: tuple[str, ...], yes: bool) -> None:
    """Delete captures with their edits and feedback."""
    if not yes:
        click.confirm(f"Delete {len(capture_ids)} capture(s)?", abort=True)
    deleted = _in_session(ctx, lambda s: delete_captures(capture_ids, session=s))
    click.echo(f"deleted {deleted}")


@captures.command("bulk")
@click.argument("action", type=click.Choice(_BULK_ACTIONS))
@click.argument("tags", nargs=-1)
@filter_options
@click.option("--dry-run", is_flag=True, help="Only count the captures that would change.")
@click.option("--yes", is_flag=True, help="Do not ask.")
@click.pass_context
def bulk_command(
    ctx: click.Context,
    /,
    action: BulkAction,
    tags: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    **filters: Any,
) -> None:
    """Apply ACTION to every capture the filters select (TAGS for tag and untag)."""
    selection = capture_filter(filters)
    with _engine(ctx) as engine:
        with session_scope(engine) as session:
            count = bulk_preview(selection, action, tags=tags, session=session)
        if dry_run or count == 0:
            click.echo(f"{action}: {count} capture(s) would change")
            return
        if not yes:
            click.confirm(f"{action} {count} capture(s)?", abort=True)
        with click.progressbar(length=count, label=action) as bar:
            changed = run_bulk(engine, selection, action, tags=tags, on_batch=bar.update)
    click.echo(f"{action}: {changed} capture(s) changed")
