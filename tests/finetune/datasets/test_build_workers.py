"""How many worker processes a large build reads its batches in, and how they run."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from finetune.datasets import _batch
from storage import make_engine


@pytest.mark.parametrize(
    ("url", "cores", "workers"),
    [
        ("sqlite:///{dir}/a.db", 2, 2),
        ("sqlite:///{dir}/a.db", 8, 4),
        ("sqlite://", 8, 0),  # in memory: no other process can open it
        ("postgresql+psycopg://localhost/test", 2, 0),
        ("postgresql+psycopg://localhost/test", 4, 2),
    ],
)
def test_a_large_build_gets_a_worker_a_core_less_the_two_postgresql_keeps_busy(
    url: str, cores: int, workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    engine = make_engine(url.format(dir=tmp_path))
    try:
        assert _batch.default_workers(engine, _batch.MIN_WORKER_BATCHES) == workers
        assert _batch.default_workers(engine, _batch.MIN_WORKER_BATCHES - 1) == 0
    finally:
        engine.dispose()


def test_a_build_worker_runs_niced_below_the_process_that_starts_it(tmp_path: Path) -> None:
    own = os.nice(0)
    url = f"sqlite:///{tmp_path}/a.db"
    with ProcessPoolExecutor(
        1,
        mp_context=_batch._worker_context(),
        initializer=_batch._start_worker,
        initargs=(url, frozenset()),
    ) as pool:
        niceness = pool.submit(os.nice, 0).result()
    assert niceness == min(19, own + _batch.WORKER_NICENESS)
    assert niceness > own or own == 19
