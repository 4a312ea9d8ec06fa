"""``python -m bench.curation``: curation at a million captures on PostgreSQL.

Figures for the issue's targets: a filtered first page of the capture list (p50 ≤ 50 ms) and
export plus validation of 100,000 examples (≤ 16 s). The database of generated captures is kept
between runs (``--regenerate`` makes it again); ``python -m bench`` runs this after the proxy
benchmark unless told ``--no-curation`` or ``--quick``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import psycopg

import storage
from bench import curation_data, curation_export, curation_pages, environment, procstat
from bench.curation_report import CurationReport, to_markdown, write
from bench.targets import REPO_ROOT


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.curation", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="captures in the database")
    parser.add_argument(
        "--regenerate", action="store_true", help="make the database again even if it matches"
    )
    parser.add_argument("--runs", type=int, default=30, help="timed calls per filter")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per filter first")
    parser.add_argument(
        "--budget-s", type=float, default=20.0, help="fewer runs for a filter slower than this"
    )
    parser.add_argument("--target-ms", type=float, default=50.0, help="first-page p50 target")
    parser.add_argument("--examples", type=int, default=100_000, help="dataset size to export")
    parser.add_argument("--no-http", action="store_true", help="skip the admin API over HTTP")
    parser.add_argument("--no-export", action="store_true", help="skip dataset export/validate")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent)
    return parser.parse_args(argv)


def _data_facts(info: curation_data.LoadInfo) -> dict[str, object]:
    with psycopg.connect(curation_data.CONNINFO) as connection:
        status: dict[str, int] = dict(
            connection.execute(
                "SELECT review_status, count(*) FROM captures GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        )
        feedback = connection.execute("SELECT count(*) FROM feedback").fetchone()
        edits = connection.execute("SELECT count(*) FROM capture_edits").fetchone()
    return {
        "database": curation_data.DATABASE,
        "rows": info.rows,
        "reused": info.reused,
        "load_s": round(info.seconds, 1),
        "revision": info.revision,
        "table_bytes": curation_data.table_bytes(),
        "status": {str(k): int(v) for k, v in status.items()},
        "feedback": int(feedback[0]) if feedback else 0,
        "edits": int(edits[0]) if edits else 0,
    }


def _show(setting: str) -> str:
    with psycopg.connect(curation_data.CONNINFO) as connection:
        found = connection.execute(f"SHOW {setting}").fetchone()
    return str(found[0]) if found else "?"


def _say(text: str) -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> CurationReport:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = environment.load_average()
    busy_before, own_before = procstat.machine_busy_seconds(), environment.own_cpu_seconds()
    wall_before = time.monotonic()
    print(f"curation bench: {args.rows:,} captures on PostgreSQL", flush=True)
    info = curation_data.ensure(args.rows, regenerate=args.regenerate, say=_say)
    versions = environment.base_versions(REPO_ROOT)
    versions["PostgreSQL"] = _show("server_version")
    versions["psycopg"] = environment.package_version("psycopg")
    report = CurationReport(
        started_utc=started,
        machine=environment.machine(environment.nproc(), "no CPU pinning"),
        versions=versions,
        settings={
            "runs": args.runs,
            "warmup": args.warmup,
            "budget_s": args.budget_s,
            "target_ms": args.target_ms,
            "page_size": curation_pages.PAGE_SIZE,
            "examples": args.examples,
            "argv": sys.argv[1:],
        },
        data=_data_facts(info),
    )
    engine = storage.make_engine(curation_data.URL)
    workdir = Path(tempfile.mkdtemp(prefix="stillroom-bench-curation-"))
    try:
        cases = curation_pages.filter_cases(curation_pages.newest_capture(engine))
        print("pages: filtered first pages through finetune.list_captures", flush=True)
        for case in cases:
            timings = curation_pages.time_service(
                engine,
                case,
                runs=args.runs,
                warmup=args.warmup,
                budget_s=args.budget_s,
                target_ms=args.target_ms,
            )
            for timing in timings:
                print(f"  {timing.name}: p50 {timing.p50_ms:.2f} ms", flush=True)
            report.pages += timings
        if not args.no_http:
            print("pages: GET /admin/captures on stillroom serve", flush=True)
            over_http = [c for c in cases if c.name in _HTTP_CASES]
            report.http = curation_pages.time_http(
                curation_data.URL,
                over_http,
                workdir,
                runs=args.runs,
                warmup=args.warmup,
                budget_s=args.budget_s,
            )
        if not args.no_export:
            print(f"export: {args.examples:,} examples", flush=True)
            report.export = curation_export.run(engine, args.examples, workdir, _say)
    finally:
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.monotonic() - wall_before
    others = procstat.machine_busy_seconds() - busy_before
    others -= environment.own_cpu_seconds() - own_before
    report.notes.append(
        f"Other processes, the PostgreSQL server included, used {max(0.0, others):.0f} CPU-s "
        f"during the {wall:.0f} s run ({max(0.0, others) / wall * 100:.0f} % of one CPU); load "
        f"average at start {load_before}, at end {environment.load_average()}. PostgreSQL does "
        "most of the work here, but anything else running (tests of other work) perturbs it."
    )
    report.notes.append(
        "Latencies include taking a pooled connection, BEGIN and COMMIT; the PostgreSQL "
        f"server runs on the same machine (shared_buffers {_show('shared_buffers')}, "
        f"work_mem {_show('work_mem')}, random_page_cost {_show('random_page_cost')})."
    )
    return report


_HTTP_CASES = ("status=approved", "status=pending & model=gpt-4o", "tag=gold")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through run()'s finally, which stops the server it started.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    report = run(args)
    markdown = to_markdown(report)
    print()
    print(markdown)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = write(report, args.output_dir)
    print(f"written: {markdown_path}, {json_path} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
