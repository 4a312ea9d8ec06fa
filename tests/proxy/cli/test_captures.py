"""``stillroom captures ...`` against the configured database: the same services as the admin
API, printed as plain tables, with a count preview and a progress bar for bulk work."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from finetune import capture_detail
from proxy.cli._main import cli
from storage import get_capture, session_scope
from tests.curation_rows import capture_id, capture_row, store, store_numbered


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    import os

    for name in list(os.environ):
        if name.startswith("STILLROOM_") or name == "OPENAI_API_KEY":
            monkeypatch.delenv(name)
    return CliRunner(env={"STILLROOM_DATABASE_URL": database_url})


def _ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def test_list_prints_a_filtered_table(run: CliRunner, engine: Engine) -> None:
    store_numbered(engine, 3, metadata_={"team": "a"})
    store(engine, [capture_row(4, metadata_={"team": "b"}, tags=["good"], rating=5)])
    output = _ok(run.invoke(cli, ["captures", "list", "--metadata", "team=b"]))
    header, row = output.splitlines()
    assert header.split() == [
        "ID", "CREATED", "STATUS", "EDITED", "MODEL", "FINISH", "TOKENS", "FEEDBACK", "RATING",
        "TAGS",
    ]  # fmt: skip
    assert row.split() == [
        capture_id(4), "2026-11-01", "12:00:04", "pending", "-", "gpt-4o-mini", "stop", "10/5",
        "-", "5", "good",
    ]  # fmt: skip


def test_list_edited_shows_only_the_captures_an_edit_replaced(
    run: CliRunner, engine: Engine
) -> None:
    store_numbered(engine, 3)
    _ok(run.invoke(cli, ["captures", "edit", capture_id(2), "--content", "Better."]))
    output = _ok(run.invoke(cli, ["captures", "list", "--edited"]))
    [row] = output.splitlines()[1:]
    assert row.split()[0] == capture_id(2) and row.split()[4] == "yes"
    output = _ok(run.invoke(cli, ["captures", "list", "--not-edited"]))
    assert [line.split()[0] for line in output.splitlines()[1:]] == [capture_id(3), capture_id(1)]


def test_list_as_json_pages_with_a_cursor(run: CliRunner, engine: Engine) -> None:
    store_numbered(engine, 3)
    first = json.loads(_ok(run.invoke(cli, ["captures", "list", "--limit", "2", "--json"])))
    assert [item["id"] for item in first["data"]] == [capture_id(3), capture_id(2)]
    rest = json.loads(
        _ok(run.invoke(cli, ["captures", "list", "--json", "--cursor", first["next_cursor"]]))
    )
    assert [item["id"] for item in rest["data"]] == [capture_id(1)]
    assert rest["next_cursor"] is None


def test_a_bad_filter_option_is_named(run: CliRunner) -> None:
    result = run.invoke(cli, ["captures", "list", "--created-after", "yesterday"])
    assert result.exit_code == 2
    assert "--created-after" in result.output
    result = run.invoke(cli, ["captures", "list", "--status", "maybe"])
    assert result.exit_code == 2 and "--status" in result.output


def test_show_prints_the_conversation_and_its_edits(run: CliRunner, engine: Engine) -> None:
    store_numbered(engine, 1)
    _ok(run.invoke(cli, ["captures", "edit", capture_id(1), "--content", "A1!", "--reason", "x"]))
    output = _ok(run.invoke(cli, ["captures", "show", capture_id(1)]))
    assert "[user] q1" in output
    assert "answer (original):\n  a1" in output
    assert "edit by cli" in output and "A1!" in output


def test_review_verbs_change_the_captures(run: CliRunner, engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    assert "2 changed" in _ok(run.invoke(cli, ["captures", "approve", *ids]))
    assert "1 changed" in _ok(run.invoke(cli, ["captures", "reject", ids[0]]))
    _ok(run.invoke(cli, ["captures", "pending", ids[1]]))
    _ok(run.invoke(cli, ["captures", "tag", ids[0], "good", "short"]))
    _ok(run.invoke(cli, ["captures", "tag", ids[0], "short", "--remove"]))
    _ok(run.invoke(cli, ["captures", "rate", ids[0], "4"]))
    with session_scope(engine) as session:
        first, second = (get_capture(i, session=session) for i in ids)
        assert first is not None and second is not None
        assert (first.review_status, first.tags, first.rating) == ("rejected", ["good"], 4)
        assert second.review_status == "pending"


def test_an_unknown_capture_or_a_bad_rating_fails_plainly(run: CliRunner, engine: Engine) -> None:
    store_numbered(engine, 1)
    missing = run.invoke(cli, ["captures", "approve", capture_id(1), "cap_missing"])
    assert missing.exit_code == 1 and "No capture 'cap_missing'" in missing.output
    assert run.invoke(cli, ["captures", "rate", capture_id(1), "9"]).exit_code == 2
    with session_scope(engine) as session:
        assert get_capture(capture_id(1), session=session).review_status == "pending"  # type: ignore[union-attr]


def test_bulk_previews_confirms_and_reports(run: CliRunner, engine: Engine) -> None:
    store_numbered(engine, 4, metadata_={"team": "a"})
    store(engine, [capture_row(5, metadata_={"team": "b"})])
    team_a = ["--metadata", "team=a"]
    preview = _ok(run.invoke(cli, ["captures", "bulk", "tag", "batch-1", *team_a, "--dry-run"]))
    assert "4 capture(s) would change" in preview
    declined = run.invoke(cli, ["captures", "bulk", "approve", *team_a], input="n\n")
    assert declined.exit_code == 1 and "approve 4 capture(s)?" in declined.output
    done = _ok(run.invoke(cli, ["captures", "bulk", "approve", *team_a], input="y\n"))
    assert "approve: 4 capture(s) changed" in done
    again = _ok(run.invoke(cli, ["captures", "bulk", "approve", *team_a, "--yes"]))
    assert "0 capture(s) would change" in again


def test_delete_asks_unless_told_yes(run: CliRunner, engine: Engine) -> None:
    ids = store_numbered(engine, 2)
    assert run.invoke(cli, ["captures", "delete", ids[0]], input="n\n").exit_code == 1
    assert "deleted 1" in _ok(run.invoke(cli, ["captures", "delete", ids[0], "--yes"]))
    with session_scope(engine) as session:
        assert get_capture(ids[0], session=session) is None
        assert capture_detail(ids[1], session=session).capture.id == ids[1]
