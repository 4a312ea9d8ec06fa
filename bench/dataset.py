"""``python -m bench.dataset``: building a dataset of 100,000 examples, on SQLite and on
PostgreSQL, and what a build does to the capture writer.

The stores hold the same generated captures (``dataset_data``, made once and kept). On each,
the build is timed alone, with its own CPU and, on PostgreSQL, the server's, and a digest of
every example it froze (the same on both stores, and across versions of the builder that are
meant to build the same); then the export and the validator as the curation benchmark times
them. Last, a writer process inserts captures as fast as the store takes them, in the capture
writer's batches, first alone and then while the build runs again: the rate and the longest
batch in each, on SQLite a build that held the write lock shows as a stall.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Engine, delete

import storage
from bench import curation_data, curation_export, dataset_data, environment, procstat
from bench.dataset_report import BuildTiming, DatasetReport, WriterRun, to_markdown, write
from bench.targets import REPO_ROOT
from finetune import create_dataset, delete_dataset, filter_from_params
from proxy._settings import Settings
from proxy.gateway._capture import build_row

WRITER_PREFIX = "capw_"
"""Ids of the writer's captures, deleted after each run."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset", description=__doc__)
    parser.add_argument("--rows", type=int, default=380_000, help="captures in each store")
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "stillroom-bench-dataset"
    )
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument(
        "--stores", type=_stores, default="sqlite,postgres", help="sqlite, postgres or both"
    )
    parser.add_argument("--writer-seconds", type=float, default=8.0, help="the writer alone")
    parser.add_argument("--no-writer", action="store_true")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent)
    return parser.parse_args(argv)


def _say(text: str) -> None:
    print(text, flush=True)


def digest(engine: Engine, dataset_id: str) -> str:
    """SHA-256 over every example in position order, with its capture, split and hash."""
    found = hashlib.sha256()
    with storage.session_scope(engine) as session:
        for side in ("train", "validation", "test"):
            after = -1
            while True:
                page = storage.read_examples_page(
                    dataset_id, side, session=session, after_position=after, limit=5000
                )
                if not page:
                    break
                for row in page:
                    record = [row.position, row.capture_id, side, row.prompt_hash, row.example]
                    found.update(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
                after = page[-1].position
    return found.hexdigest()[:16]


def _server_seconds(monitor: psycopg.Connection[Any] | None) -> float:
    """CPU seconds of this database's backends other than the monitor's own."""
    if monitor is None:
        return 0.0
    pids = monitor.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (dataset_data.DATABASE,),
    ).fetchall()
    return sum(procstat.cpu_seconds(int(pid)).seconds for (pid,) in pids)


def time_build(store: str, url: str, capture_filter: Any) -> tuple[BuildTiming, str]:
    """One build on a fresh engine (so the server's backends are the build's own)."""
    engine = storage.make_engine(url)
    monitor = (
        psycopg.connect(dataset_data.CONNINFO, autocommit=True) if store == "postgres" else None
    )
    try:
        gc.collect()
        server_before = _server_seconds(monitor)
        tree = procstat.cpu_seconds(os.getpid()).seconds
        wall, cpu = time.perf_counter(), time.process_time()
        dataset = create_dataset(engine, "bench-dataset", capture_filter)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        # The worker processes (and the fork server they come from) are this one's tree.
        workers = procstat.cpu_seconds(os.getpid()).seconds - tree - cpu
        server = _server_seconds(monitor) - server_before
        timing = BuildTiming(
            store=store,
            seconds=wall,
            own_cpu_seconds=cpu,
            workers_cpu_seconds=max(0.0, workers),
            server_cpu_seconds=server if monitor is not None else None,
            counts=dict(dataset.counts),
            digest=digest(engine, dataset.id),
            load_average=environment.load_average(),
        )
        return timing, dataset.id
    finally:
        if monitor is not None:
            monitor.close()
        engine.dispose()


def _writer_rows(count: int) -> list[dict[str, Any]]:
    """Captures for the writer: pending, no prompt hash, so no build ever reads them."""
    generator = curation_data.Generator(count, dataset_data.END - 90 * 86_400)
    rows = []
    for window in generator.exchange_windows():
        for exchange in window:
            row = build_row(exchange)
            row.update(prompt_hash=None, review_status="pending", feedback=None)
            rows.append(row)
    return rows


def _write(url: str, stop: Any, ready: Any, results: Any) -> None:
    """A capture writer as fast as the store takes it: (end time, captures, seconds, error)
    for each batch, until ``stop`` is set."""
    settings = Settings()
    rows = _writer_rows(5000)
    engine = storage.make_engine(
        url, pool_size=1, statement_timeout_seconds=settings.capture_write_timeout_seconds
    )
    batch_size = settings.capture_batch_size
    records = []
    ready.set()
    serial = 0
    while not stop.is_set():
        start = serial % len(rows)
        batch = [
            {**row, "id": f"{WRITER_PREFIX}{serial + n:012d}"}
            for n, row in enumerate(rows[start : start + batch_size])
        ]
        serial += len(batch)
        began = time.time()
        error = None
        try:
            with storage.session_scope(engine) as session:
                storage.insert_captures(batch, session=session)
        except Exception as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        records.append((time.time(), 0 if error else len(batch), time.time() - began, error))
    engine.dispose()
    results.put(records)


def _forget_writer(url: str) -> None:
    engine = storage.make_engine(url)
    try:
        with storage.session_scope(engine) as session:
            captures: Any = storage.Capture.__table__  # type: ignore[attr-defined]
            session.execute(delete(captures).where(captures.c.id.startswith(WRITER_PREFIX)))
    finally:
        engine.dispose()


def vacuum(store: str) -> None:
    """On PostgreSQL, reclaim the rows the bench deleted (its datasets' examples, the writer's
    captures), so the next run starts from the same tables rather than behind dead rows."""
    if store != "postgres":
        return
    with psycopg.connect(dataset_data.CONNINFO, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE) dataset_examples, datasets, captures")


def writer_run(
    store: str, url: str, label: str, seconds: float | None, capture_filter: Any = None
) -> WriterRun:
    """The writer alone for ``seconds``, or while a build runs (its window only)."""
    spawn = multiprocessing.get_context("spawn")
    stop, ready, results = spawn.Event(), spawn.Event(), spawn.Queue()
    child = spawn.Process(target=_write, args=(url, stop, ready, results))
    child.start()
    ready.wait(300)
    time.sleep(1.0)
    begun = time.time()
    build_seconds = None
    if seconds is not None:
        time.sleep(seconds)
    else:
        timing, dataset_id = time_build(store, url, capture_filter)
        build_seconds = timing.seconds
    ended = time.time()
    stop.set()
    records = results.get(timeout=120)
    child.join(60)
    _forget_writer(url)
    if build_seconds is not None:
        engine = storage.make_engine(url)
        delete_dataset(engine, dataset_id)
        engine.dispose()
    inside = [r for r in records if begun <= r[0] <= ended]
    written = sum(r[1] for r in inside)
    return WriterRun(
        store=store,
        label=label,
        seconds=ended - begun,
        captures=written,
        rate=written / (ended - begun),
        batches=len(inside),
        longest_batch_seconds=max((r[2] for r in inside), default=0.0),
        failed_batches=sum(1 for r in inside if r[3]),
        first_error=next((r[3] for r in inside if r[3]), None),
        build_seconds=build_seconds,
    )


def _stores(value: str) -> list[str]:
    """``--stores``: a comma-separated list of the two stores, checked before any work."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - {"sqlite", "postgres"})
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown store {', '.join(unknown) or '(none)'}: choose sqlite, postgres or both"
        )
    return names


def run(args: argparse.Namespace) -> DatasetReport:
    versions = environment.base_versions(REPO_ROOT)
    versions["psycopg"] = environment.package_version("psycopg")
    report = DatasetReport(
        started_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=environment.machine(environment.nproc(), "no CPU pinning"),
        versions=versions,
        settings={"rows": args.rows, "examples": args.examples, "argv": sys.argv[1:]},
    )
    load_before = environment.load_average()
    _say(f"dataset bench: {args.rows:,} captures in each store")
    stores = dataset_data.ensure(args.rows, args.data_dir, regenerate=args.regenerate, say=_say)
    report.data = {"rows": stores.rows, "reused": stores.reused, "load_s": round(stores.load_s)}
    postgres = storage.make_engine(stores.postgres_url)
    try:
        cut = curation_export.cut_for(postgres, args.examples)
    finally:
        postgres.dispose()
    if cut is None:
        raise SystemExit(f"the stores hold fewer than {args.examples:,} approved examples")
    params = [("status", "approved"), ("error", "false"), ("created_after", cut.isoformat())]
    report.query = "&".join(f"{k}={v}" for k, v in params)
    capture_filter = filter_from_params(params)
    urls = {"sqlite": stores.sqlite_url, "postgres": stores.postgres_url}
    workdir = Path(tempfile.mkdtemp(prefix="stillroom-bench-dataset-"))
    try:
        for store in args.stores:
            url = urls[store]
            _say(f"{store}: building {args.examples:,} examples ...")
            timing, dataset_id = time_build(store, url, capture_filter)
            report.builds.append(timing)
            _say(f"  {timing.seconds:.1f} s, digest {timing.digest}")
            engine = storage.make_engine(url)
            try:
                if not args.no_export:
                    result = curation_export.ExportResult(
                        report.query, int(timing.counts["total"]), timing.counts
                    )
                    curation_export.export_and_validate(engine, dataset_id, workdir, result, _say)
                    report.exports[store] = result
                delete_dataset(engine, dataset_id)
            finally:
                engine.dispose()
            if not args.no_writer:
                _say(f"{store}: the writer alone for {args.writer_seconds:.0f} s ...")
                report.writer.append(writer_run(store, url, "alone", args.writer_seconds))
                _say(f"{store}: the writer while a build runs ...")
                report.writer.append(writer_run(store, url, "during a build", None, capture_filter))
            vacuum(store)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.notes.append(
        f"Load average at start {load_before}, at end {environment.load_average()}; "
        f"{os.cpu_count()} CPUs shared with the PostgreSQL server and anything else running."
    )
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print()
    print(to_markdown(report))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = write(report, args.output_dir)
    print(f"written: {markdown_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
