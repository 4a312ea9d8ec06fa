"""Search reads an indexed text of each capture: what people wrote and what the model answered."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import Engine, MetaData, Table, event, text

from storage import (
    CaptureFilter,
    delete_captures,
    insert_captures,
    list_capture_page,
    make_engine,
    session_scope,
    upgrade,
)
from storage._search import MAX_SEARCH_CHARS, search_text
from tests.curation_rows import capture_id, capture_row, store


def _found(engine: Engine, words: str) -> list[str]:
    with session_scope(engine) as session:
        rows, _ = list_capture_page(CaptureFilter(search=words), session=session, limit=100)
    return [str(row["id"]) for row in rows]


def test_the_text_holds_messages_tool_calls_and_the_answer_but_not_structure() -> None:
    request = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "ignored_tool_schema"}}],
    }
    response = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
            }
        ],
    }
    assert search_text(request, response).split("\n") == [
        "be brief.",
        "weather in oslo?",
        "get_weather",
        '{"city":"oslo"}',
    ]


def test_the_text_of_a_responses_exchange_is_its_instructions_input_and_output() -> None:
    request = {"instructions": "Answer in French.", "input": "Hello there"}
    response = {
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}],
            },
        ]
    }
    assert search_text(request, response) == "answer in french.\nhello there\nbonjour"


def test_the_text_is_case_folded_beyond_ascii() -> None:
    request = {"messages": [{"role": "user", "content": "Die Straße nach KÖLN, ΟΔΟΣ"}]}
    assert search_text(request, None) == "die strasse nach köln, οδοσ"


def test_the_text_is_capped_and_holds_no_nul() -> None:
    request = {"messages": [{"role": "user", "content": "x\x00" * MAX_SEARCH_CHARS}]}
    found = search_text(request, None)
    assert len(found) == MAX_SEARCH_CHARS
    assert "\x00" not in found


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("ZEBRA", [9]),
        ("crossing?", [9]),
        ("q1", [10, 1]),
        ("a3", [3]),
        ("100%", []),
        ("role", []),
        ("nothing has this", []),
    ],
    ids=["any case", "punctuation", "two letters", "in the answer", "percent", "a key", "absent"],
)
def test_search_finds_exactly_the_captures_that_hold_the_words(
    engine: Engine, words: str, expected: list[int]
) -> None:
    store(engine, [capture_row(n) for n in range(1, 9)])
    store(engine, [capture_row(9, question="How wide is a Zebra crossing?"), capture_row(10)])
    assert _found(engine, words) == [capture_id(n) for n in expected]


@pytest.mark.parametrize(
    ("words", "expected"),
    [("STRASSE", [1]), ("straße", [1]), ("Köln", [1]), ("οδος", [2]), ("ß", [1]), ("Σ", [2])],
    ids=["capitals", "sharp s", "umlaut", "final sigma", "short sharp s", "short sigma"],
)
def test_search_finds_words_in_any_case_beyond_ascii(
    engine: Engine, words: str, expected: list[int]
) -> None:
    store(
        engine, [capture_row(1, question="Die Straße nach KÖLN"), capture_row(2, question="ΟΔΟΣ")]
    )
    assert _found(engine, words) == [capture_id(n) for n in expected]


def test_a_deleted_capture_is_no_longer_found(engine: Engine) -> None:
    store(engine, [capture_row(1, question="unique walrus"), capture_row(2)])
    with session_scope(engine) as session:
        delete_captures([capture_id(1)], session=session)
    assert _found(engine, "walrus") == []
    assert _found(engine, "q2") == [capture_id(2)]


def test_captures_stored_before_the_index_are_backfilled(server_database_url: str) -> None:
    engine = make_engine(server_database_url)
    try:
        upgrade(engine, "0010")
        # The table as it was then, without the search column.
        before = Table("captures", MetaData(), autoload_with=engine)
        row: dict[str, Any] = dict(capture_row(1, question="stored before search"))
        row["metadata"] = row.pop("metadata_")
        with engine.begin() as connection:
            connection.execute(before.insert(), [row])
        upgrade(engine)
        assert _found(engine, "before search") == [capture_id(1)]
        with session_scope(engine) as session:
            insert_captures([capture_row(2, question="stored after search")], session=session)
        assert _found(engine, "search") == [capture_id(2), capture_id(1)]
    finally:
        engine.dispose()


def test_the_sqlite_index_built_again_without_positions_still_finds_what_was_stored(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'before.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine, "0013")
        store(engine, [capture_row(1, question="stored with positions"), capture_row(2)])
        upgrade(engine)
        with engine.connect() as connection:
            table = connection.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'captures_search'")
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO captures_search(captures_search, rank) VALUES ('integrity-check', 1)"
                )
            )
        assert "detail=none" in table
        store(engine, [capture_row(3, question="stored without positions")])
        assert _found(engine, "with positions") == [capture_id(1)]
        assert _found(engine, "positions") == [capture_id(3), capture_id(1)]
        with session_scope(engine) as session:
            delete_captures([capture_id(1)], session=session)
        assert _found(engine, "positions") == [capture_id(3)]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("every", "asks_the_index"),
    [(1, False), (5, False), (7, True), (150, True)],
    ids=["in every capture", "in a fifth", "in a seventh", "rare"],
)
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_every_page_of_a_search_is_exact_whether_read_in_order_or_from_the_index(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    every: int,
    asks_the_index: bool,
    order: Literal["asc", "desc"],
) -> None:
    """On SQLite a common word's page is read from the captures next in order (the index
    would check every match first); stored out of id order, pages must still be exact."""
    monkeypatch.setattr("storage._curation.SEARCH_WINDOW", 20)
    numbers = list(range(1, 601))
    random.Random(every).shuffle(numbers)
    rows = [
        capture_row(
            n,
            question=f"q{n} walrus" if n % every == 0 else f"q{n}",
            review_status="approved" if n % 2 == 0 else "pending",
        )
        for n in numbers
    ]
    for start in range(0, len(rows), 100):
        store(engine, rows[start : start + 100])
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    wanted = CaptureFilter(search="walrus", status=["approved"])
    pages: list[str] = []
    cursor = None
    first_page: list[str] = []
    while True:
        with session_scope(engine) as session:
            page, cursor = list_capture_page(
                wanted, session=session, cursor=cursor, limit=5, order=order
            )
        pages += [str(row["id"]) for row in page]
        first_page = first_page or list(statements)
        if cursor is None:
            break
    matching = [n for n in range(1, 601) if n % every == 0 and n % 2 == 0]
    expected = [capture_id(n) for n in (matching[::-1] if order == "desc" else matching)]
    assert pages == expected
    if engine.dialect.name == "sqlite":
        assert any("captures_search" in sql for sql in first_page) == asks_the_index


def _write_batches(url: str, first: int, batches: int, size: int) -> None:
    """One writer process's work: ``batches`` inserts of ``size`` captures from ``first`` on."""
    engine = make_engine(url, pool_size=1, statement_timeout_seconds=30)
    try:
        for start in range(first, first + batches * size, size):
            store(engine, [capture_row(n) for n in range(start, start + size)])
    finally:
        engine.dispose()


def test_two_processes_writing_at_once_keep_the_sqlite_index_matching_the_table(
    tmp_path: Path,
) -> None:
    """Two ``serve`` workers each have a capture writer; on SQLite they share one file."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    spawn = multiprocessing.get_context("spawn")
    writers = [
        spawn.Process(target=_write_batches, args=(url, first, 60, 40)) for first in (1, 1_000_001)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            # FTS5's own check: every row indexed exactly once, and nothing else in the index.
            connection.execute(
                text(
                    "INSERT INTO captures_search(captures_search, rank) VALUES ('integrity-check', 1)"
                )
            )
        assert _found(engine, "q1000060") == [capture_id(1_000_060)]
    finally:
        engine.dispose()


def test_captures_stored_unfolded_are_folded_by_the_migration(unmigrated_url: str) -> None:
    engine = make_engine(unmigrated_url)
    try:
        upgrade(engine, "0013")
        # The table and the search text as they were then: written as it came, in any case.
        before = Table("captures", MetaData(), autoload_with=engine)
        row: dict[str, Any] = dict(capture_row(1, question="Stored BEFORE Folding, in Köln"))
        row["metadata"] = row.pop("metadata_")
        row["search_text"] = "Be brief.\nStored BEFORE Folding, in Köln\na1"
        with engine.begin() as connection:
            connection.execute(
                before.insert(), [row, {**row, "id": capture_id(2), "search_text": None}]
            )
            if engine.dialect.name == "sqlite":
                connection.execute(
                    text(
                        "INSERT INTO captures_search(rowid, search_text) SELECT rowid, search_text FROM captures"
                    )
                )
        upgrade(engine)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT search_text FROM captures ORDER BY id")).all()
            if engine.dialect.name == "sqlite":
                connection.execute(
                    text(
                        "INSERT INTO captures_search(captures_search, rank) VALUES ('integrity-check', 1)"
                    )
                )
        assert [r[0] for r in stored] == ["be brief.\nstored before folding, in köln\na1", None]
        assert _found(engine, "before FOLDING") == [capture_id(1)]
        assert _found(engine, "KÖLN") == [capture_id(1)]
    finally:
        engine.dispose()
