"""A build stays out of the capture writer's way and still appears whole or not at all: between
its batches nobody sees it and the database takes other writes; a build that fails leaves
nothing behind."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from finetune import create_dataset, list_datasets
from storage import CaptureFilter, DatasetExample, count_captures, make_engine, session_scope
from tests.finetune._dataset_helpers import question, store

APPROVED = CaptureFilter(status=["approved"])


class Stop(Exception):
    pass


def _examples(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.execute(select(func.count()).select_from(DatasetExample)).scalar_one())


def test_between_batches_a_build_is_invisible_and_captures_are_written(
    engine: Engine, database_url: str
) -> None:
    store(engine, [question(n) for n in range(1, 31)])
    # A writer that gives up at once when another transaction holds the write lock.
    impatient = make_engine(database_url, statement_timeout_seconds=0.01)
    seen: list[Any] = []

    def between_batches(done: int, total: int) -> None:
        seen.append([d.id for d in list_datasets(engine)])
        store(impatient, [question(1000 + done)])

    try:
        dataset = create_dataset(engine, "quiet", APPROVED, batch_size=10, progress=between_batches)
    finally:
        impatient.dispose()
    assert seen == [[], [], []]
    assert dataset.counts["total"] == 30
    with session_scope(engine) as session:
        assert count_captures(session=session) == 33
    assert [d.id for d in list_datasets(engine)] == [dataset.id]


def test_a_build_that_fails_leaves_no_dataset_and_no_examples(engine: Engine) -> None:
    store(engine, [question(n) for n in range(1, 31)])

    def fail_after_two(done: int, total: int) -> None:
        if done >= 20:
            raise Stop

    with pytest.raises(Stop):
        create_dataset(engine, "broken", APPROVED, batch_size=10, progress=fail_after_two)
    assert list_datasets(engine) == []
    assert _examples(engine) == 0
    again = create_dataset(engine, "broken", APPROVED, batch_size=10)
    assert again.version == 1
    assert _examples(engine) == 30
