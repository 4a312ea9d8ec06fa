"""``python -m bench.writer``: how many captures a second the capture sink stores, and what it
does with more than that.

Sustained: generated exchanges (the curation benchmark's traffic) are all offered at once to a
``CaptureSink`` whose queue holds them; the rate is their number over the time until every one
is committed and the queue is empty. On SQLite (a fresh file) and PostgreSQL (a fresh
database), each sink as ``stillroom serve`` makes it (its own engine, one connection, the
write timeout).

Overload: exchanges are offered from another thread at twice the sustained rate for a while,
each a new object as a request would make it (its request parsed, its body its own), to a sink
with the default queue limit; queue depth, the process's RSS and the spool's size are sampled
every 50 ms. Then the offers stop and the sink takes back what overflowed; the run ends when
every capture offered is stored, once. The same run with no bound shows what the bound saves.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg
from psycopg import sql

import storage
from bench import curation_data, environment, writer_report
from bench.postgres import ADMIN_CONNINFO
from bench.targets import REPO_ROOT
from proxy._metrics import Metrics
from proxy._settings import Settings
from proxy.gateway._capture import Exchange, new_capture_id
from proxy.gateway._sink import CaptureSink

DATABASE = "stillroom_bench_writer"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DATABASE}"
END = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
SAMPLE_S = 0.05


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _exchanges(count: int) -> list[Exchange]:
    generator = curation_data.Generator(count, END)
    return [e for window in generator.exchange_windows() for e in window]


def _fresh_store(store: str, workdir: Path) -> str:
    if store == "sqlite":
        path = workdir / f"writer-{time.monotonic_ns()}.db"
        url = f"sqlite:///{path}"
    else:
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
            name = sql.Identifier(DATABASE)
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
            admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
        url = PG_URL
    engine = storage.make_engine(url)
    try:
        storage.upgrade(engine)
    finally:
        engine.dispose()
    return url


def _stored(url: str) -> int:
    engine = storage.make_engine(url)
    try:
        with storage.session_scope(engine) as session:
            return storage.count_captures(session=session)
    finally:
        engine.dispose()


def _sink(url: str, spool_dir: Path, metrics: Metrics, queue_limit: int) -> CaptureSink:
    defaults = Settings()
    # As create_app makes the writer's engine: one connection, statements that give up.
    engine = storage.make_engine(
        url, pool_size=1, statement_timeout_seconds=defaults.capture_write_timeout_seconds
    )
    sink = CaptureSink(
        engine,
        metrics,
        spool_dir=spool_dir,
        batch_size=defaults.capture_batch_size,
        queue_limit=queue_limit,
        flush_seconds=defaults.capture_flush_seconds,
        retry_seconds=defaults.spool_retry_seconds,
    )
    sink.start()
    return sink


def _wait(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def sustained(store: str, exchanges: list[Exchange], workdir: Path) -> writer_report.Sustained:
    url = _fresh_store(store, workdir)
    metrics = Metrics()
    sink = _sink(url, workdir / f"spool-{store}-sustained", metrics, len(exchanges) + 1)
    started = time.perf_counter()
    for exchange in exchanges:
        sink.submit(exchange)
    _wait(lambda: metrics.captures_written._value.get() >= len(exchanges), 600)
    seconds = time.perf_counter() - started
    queue_at_end = sink.pending()
    sink.close(60)
    return writer_report.Sustained(store, len(exchanges), seconds, queue_at_end, _stored(url))


class _Offers:
    """New exchanges as requests would make them, from a pool of templates."""

    def __init__(self, templates: list[Exchange]) -> None:
        self._templates = [(t, orjson.dumps(t.request)) for t in templates]
        self._next = 0

    def __call__(self) -> Exchange:
        template, request = self._templates[self._next % len(self._templates)]
        self._next += 1
        return dataclasses.replace(
            template,
            capture_id=new_capture_id(),
            request=orjson.loads(request),
            body=bytes(bytearray(template.body)),
        )


def overload(
    store: str, templates: int, rate: float, seconds: float, queue_limit: int | None, workdir: Path
) -> writer_report.Overload:
    """One overload run in a process of its own, so that its peak RSS is its own."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as child:
        return child.submit(
            _overload, store, templates, rate, seconds, queue_limit, workdir
        ).result()


def _overload(
    store: str, templates: int, rate: float, seconds: float, queue_limit: int | None, workdir: Path
) -> writer_report.Overload:
    url = _fresh_store(store, workdir)
    metrics = Metrics()
    spool_dir = workdir / f"spool-{store}-{queue_limit}"
    offered_total = int(rate * seconds)
    sink = _sink(url, spool_dir, metrics, queue_limit or offered_total + 1)
    make = _Offers(_exchanges(templates))
    peaks: dict[str, float] = {"queue": 0, "spool": 0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peaks["queue"] = max(peaks["queue"], sink.pending())
            peaks["spool"] = max(peaks["spool"], sink.spool_bytes())
            time.sleep(SAMPLE_S)

    rss_before = _status_mib("VmRSS")
    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    started = time.perf_counter()
    offered = 0
    while offered < offered_total:
        due = min(offered_total, int((time.perf_counter() - started) * rate) + 1)
        while offered < due:
            sink.submit(make())
            offered += 1
        time.sleep(0.002)
    offer_seconds = time.perf_counter() - started
    stopped = time.perf_counter()
    _wait(
        lambda: (
            metrics.captures_written._value.get() >= offered
            and sink.pending() == 0
            and sink.spool_bytes() == 0
        ),
        900,
    )
    drain = time.perf_counter() - stopped
    sampling.set()
    sampler.join()
    sink.close(60)
    return writer_report.Overload(
        store=store,
        queue_limit=queue_limit,
        offered_rate=offered / offer_seconds,
        offer_seconds=offer_seconds,
        offered=offered,
        peak_queue=int(peaks["queue"]),
        rss_before_mib=rss_before,
        peak_rss_mib=_status_mib("VmHWM"),
        peak_spool_mib=peaks["spool"] / 2**20,
        overflowed=int(metrics.captures_overflowed._value.get()),
        drain_seconds=drain,
        stored=_stored(url),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.writer", description=__doc__)
    parser.add_argument("--captures", type=int, default=20_000, help="exchanges, sustained run")
    parser.add_argument("--stores", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    parser.add_argument(
        "--overload-factor", type=float, default=2.0, help="offered rate over the sustained"
    )
    parser.add_argument(
        "--unbounded",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also the overload with no queue bound, for comparison",
    )
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent)
    return parser.parse_args(argv)


def _say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> writer_report.WriterReport:
    versions = environment.base_versions(REPO_ROOT)
    versions["psycopg"] = environment.package_version("psycopg")
    report = writer_report.WriterReport(
        started_utc=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=environment.machine(environment.nproc(), "no CPU pinning"),
        versions=versions,
        settings={
            "captures": args.captures,
            "overload_seconds": args.overload_seconds,
            "overload_factor": args.overload_factor,
            "queue_limit": Settings().capture_queue_limit,
            "batch_size": Settings().capture_batch_size,
            "argv": sys.argv[1:],
        },
    )
    load_before = environment.load_average()
    _say(f"writer bench: generating {args.captures:,} exchanges ...")
    exchanges = _exchanges(args.captures)
    workdir = Path(tempfile.mkdtemp(prefix="stillroom-bench-writer-"))
    try:
        for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
            _say(f"{store}: sustained, {len(exchanges):,} captures offered at once")
            found = sustained(store, exchanges, workdir)
            report.sustained.append(found)
            _say(f"  {found.rate:,.0f} captures/s, queue at the end {found.queue_at_end}")
            rate = found.rate * args.overload_factor
            limits: list[int | None] = [Settings().capture_queue_limit]
            if args.unbounded:
                limits.append(None)
            for limit in limits:
                _say(f"{store}: overload at {rate:,.0f}/s, queue limit {limit or 'none'}")
                result = overload(store, 5000, rate, args.overload_seconds, limit, workdir)
                report.overload.append(result)
                _say(
                    f"  peak queue {result.peak_queue:,}, peak RSS {result.peak_rss_mib:.0f} MiB,"
                    f" overflowed {result.overflowed:,}, stored {result.stored:,} of "
                    f"{result.offered:,} after {result.drain_seconds:.1f} s"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if "postgres" in args.stores:
            with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
                name = sql.Identifier(DATABASE)
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    report.notes.append(
        f"Load average at start {load_before}, at end {environment.load_average()}; the "
        "PostgreSQL server runs on the same machine, and anything else running shares it."
    )
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print()
    print(writer_report.to_markdown(report))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = writer_report.write(report, args.output_dir)
    print(f"written: {markdown_path}, {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
