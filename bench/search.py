"""``python -m bench.search``: text search's first page on both stores, at a million captures.

The dataset benchmark's stores (``dataset_data``: the curation generator's captures, the same
rows in a SQLite file and a PostgreSQL database, made once and kept) at ``--rows`` captures;
on each, the curation benchmark's four searches (a word in ~3 %, ~0.4 %, ~0.05 % of the
captures, and one in none) through ``finetune.list_captures`` as the admin API calls it: the
first page, warm, its p50 and slowest of ``--runs`` calls, beside the goals (50 ms on
PostgreSQL, 200 ms on SQLite).

Making the stores takes ~10 minutes at a million captures; they replace the dataset
benchmark's (which makes its own again at its size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import storage
from bench import dataset_data, environment
from bench.curation_pages import PAGE_SIZE, FilterCase, filter_cases, newest_capture
from finetune import filter_from_params, list_captures

GOALS_MS = {"sqlite": 200.0, "postgres": 50.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="captures in each store")
    parser.add_argument("--runs", type=int, default=15, help="timed calls per search")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "stillroom-bench-dataset"
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    return parser.parse_args(argv)


def first_page_ms(url: str, case: FilterCase, runs: int, warmup: int) -> tuple[list[float], int]:
    engine = storage.make_engine(url)
    capture_filter = filter_from_params(case.params)

    def page() -> int:
        with storage.session_scope(engine) as session:
            return len(list_captures(capture_filter, session=session, limit=PAGE_SIZE).items)

    try:
        for _ in range(warmup):
            page()
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            items = page()
            samples.append((time.perf_counter() - started) * 1000)
        return samples, items
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stores = dataset_data.ensure(args.rows, args.data_dir, regenerate=False, say=print)
    urls = {"sqlite": stores.sqlite_url, "postgres": stores.postgres_url}
    print(f"\nLoad average at start: {environment.load_average()}\n")
    print("| store | search | first page p50 (ms) | slowest (ms) | items | goal |")
    print("|:--|:--|--:|--:|--:|:--|")
    for store in args.stores.split(","):
        engine = storage.make_engine(urls[store])
        try:
            newest = newest_capture(engine)
        finally:
            engine.dispose()
        for case in filter_cases(newest):
            if not case.name.startswith("search="):
                continue
            samples, items = first_page_ms(urls[store], case, args.runs, args.warmup)
            p50 = statistics.median(samples)
            goal = GOALS_MS[store]
            mark = "✓" if p50 <= goal else "⚠"
            print(
                f"| {store} | {case.name} | {p50:.1f} | {max(samples):.1f} | {items} "
                f"| ≤ {goal:.0f} {mark} |"
            )
    print(f"\nLoad average at end: {environment.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
