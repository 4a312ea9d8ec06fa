"""``python -m bench``: stillroom against a fast mock upstream, beside LiteLLM, on loopback.

Prints figures, not a verdict. Every request goes to 127.0.0.1, every loop is bounded by a
request count or a duration, and every process the run starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import psycopg

from bench import curation, dataset, environment, measure, postgres, procstat, report, writer
from bench.load import ensure_wrk, wrk_version
from bench.processes import Fleet, StartError
from bench.targets import (
    REPO_ROOT,
    Target,
    start_floor,
    start_litellm,
    start_mock,
    start_stillroom,
)

ALL_TARGETS = (
    "direct",
    "floor",
    "floor-2w",
    "sqlite",
    "sqlite-2w",
    "uncaptured",
    "postgres",
    "postgres-2w",
    "litellm",
)
LABELS = {
    "direct": "direct to mock",
    "floor": "naive pass-through (floor)",
    "floor-2w": "naive pass-through (floor) · 2 processes",
    "sqlite": "stillroom · SQLite",
    "sqlite-2w": "stillroom · SQLite · 2 workers",
    "uncaptured": "stillroom · capture dropped (bench only)",
    "postgres": "stillroom · PostgreSQL",
    "postgres-2w": "stillroom · PostgreSQL · 2 workers",
    "litellm": "LiteLLM",
}


@dataclass(frozen=True)
class Plan:
    duration_s: int
    warmup_s: int
    connections: int
    rate: float
    rate_requests: int
    stream_requests: int
    stream_slot_s: float
    soak_requests: int
    soak_step: int


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short rounds, no soak")
    parser.add_argument(
        "--soak",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="50,000-request RSS soak on stillroom/SQLite (default: on, off with --quick)",
    )
    parser.add_argument(
        "--curation",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then the curation benchmark, python -m bench.curation (default: on, off with "
        "--quick)",
    )
    parser.add_argument(
        "--targets",
        default=",".join(ALL_TARGETS),
        help=f"comma-separated subset of {','.join(ALL_TARGETS)} (direct is always measured)",
    )
    parser.add_argument(
        "--writer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then the capture writer benchmark, python -m bench.writer (default: on, off "
        "with --quick)",
    )
    parser.add_argument(
        "--dataset",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then the dataset build benchmark, python -m bench.dataset (default: on, off "
        "with --quick)",
    )
    parser.add_argument("--duration", type=int, help="seconds of each throughput run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=float, default=10.0, help="requests/s of the open loop")
    parser.add_argument("--rate-requests", type=int, help="open-loop requests per target")
    parser.add_argument("--stream-requests", type=int, help="streamed requests per target")
    parser.add_argument(
        "--stream-slot-ms",
        type=float,
        default=50.0,
        help="streamed requests start at most one per this many ms (all targets in turn)",
    )
    parser.add_argument("--soak-requests", type=int, default=50_000)
    parser.add_argument("--no-wrk", action="store_true", help="use the aiohttp load generator")
    parser.add_argument("--no-install", action="store_true", help="install neither wrk nor LiteLLM")
    parser.add_argument("--no-pin", action="store_true", help="do not split CPUs")
    parser.add_argument("--output-dir", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs and databases")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    return Plan(
        duration_s=args.duration or (5 if quick else 10),
        warmup_s=1 if quick else 2,
        connections=args.connections,
        rate=args.rate,
        rate_requests=args.rate_requests or (100 if quick else 300),
        stream_requests=args.stream_requests or (50 if quick else 200),
        stream_slot_s=args.stream_slot_ms / 1000,
        soak_requests=args.soak_requests,
        soak_step=max(1, args.soak_requests // 5),
    )


class Placement(NamedTuple):
    """Which CPUs each process of a run is pinned to; None: not pinned."""

    load: set[int] | None
    """The load generator and the mock upstream."""
    target: set[int] | None
    """A one-worker target."""
    pair: set[int] | None
    """A two-worker target (and the floor's two processes)."""
    description: str


PAIR_APART_FROM = 4
"""CPUs from which the two-worker targets get two of their own, apart from the load."""


def split_cpus(disabled: bool, cpus: Collection[int]) -> Placement:
    """Where the run's processes go, of ``cpus``: a one-worker target on the last CPU, the load
    generator and the mock on the others. A two-worker target needs two CPUs: with
    ``PAIR_APART_FROM`` or more it gets the last two and the load the rest, so what a second
    worker gains is the proxy's; with fewer it shares every CPU with the load."""
    ordered = sorted(cpus)
    if disabled or len(ordered) < 2:
        return Placement(None, None, None, "no CPU pinning")
    target = {ordered[-1]}
    if len(ordered) >= PAIR_APART_FROM:
        load, pair = set(ordered[:-2]), set(ordered[-2:])
        pair_note = f"two-worker targets to CPUs {_cpu_list(pair)}"
    else:
        load, pair = set(ordered[:-1]), set(ordered)
        pair_note = "two-worker targets to every CPU, the load's included"
    return Placement(
        load,
        target,
        pair,
        f"target pinned to CPU {ordered[-1]}, {pair_note}, load generator and mock to CPU "
        f"{_cpu_list(load)}",
    )


def _cpu_list(cpus: set[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


def start_targets(
    fleet: Fleet,
    wanted: set[str],
    workdir: Path,
    placement: Placement,
    allow_install: bool,
    result: report.Report,
) -> tuple[Target, list[Target], int | None]:
    """The mock (also the direct target), the targets that came up, the PostgreSQL pid."""
    mock = start_mock(fleet, placement.load)
    print(f"  mock upstream at {mock.base_url} (pid {mock.pid})", flush=True)
    targets = [mock]
    database_pid: int | None = None

    def stillroom(
        key: str, database_url: str, workers: int = 1, *, uncaptured: bool = False
    ) -> Target:
        return start_stillroom(
            fleet,
            key=key,
            label=LABELS[key],
            database_url=database_url,
            mock=mock,
            workdir=workdir,
            cpus=placement.target if workers == 1 else placement.pair,
            workers=workers,
            uncaptured=uncaptured,
        )

    def floor(key: str, cpus: set[int] | None, workers: int = 1) -> Target:
        return start_floor(fleet, key=key, label=LABELS[key], mock=mock, cpus=cpus, workers=workers)

    starters: dict[str, Callable[[], Target]] = {
        "floor": lambda: floor("floor", placement.target),
        "floor-2w": lambda: floor("floor-2w", placement.pair, 2),
        "sqlite": lambda: stillroom("sqlite", f"sqlite:///{workdir}/bench.db"),
        "sqlite-2w": lambda: stillroom("sqlite-2w", f"sqlite:///{workdir}/bench-2w.db", 2),
        "uncaptured": lambda: stillroom(
            "uncaptured", f"sqlite:///{workdir}/bench-uncaptured.db", uncaptured=True
        ),
        "postgres": lambda: stillroom("postgres", postgres.BENCH_URL),
        "postgres-2w": lambda: stillroom("postgres-2w", postgres.BENCH_URL, 2),
        "litellm": lambda: start_litellm(
            fleet, mock=mock, workdir=workdir, cpus=placement.target, allow_install=allow_install
        ),
    }
    for key in ALL_TARGETS[1:]:
        if key not in wanted:
            continue
        if key.startswith("postgres") and "PostgreSQL" not in result.versions:
            try:
                info = postgres.create_fresh_database()
            except psycopg.Error as error:
                reason = f"PostgreSQL unreachable ({str(error).strip().splitlines()[0]})"
                _unavailable(result, key, reason)
                continue
            database_pid = info.postmaster_pid
            result.versions["PostgreSQL"] = info.version
        try:
            target = starters[key]()
        except (StartError, OSError) as error:
            _unavailable(result, key, str(error))
            continue
        print(f"  {target.label} up in {target.startup_s:.1f} s at {target.base_url}", flush=True)
        if key == "litellm":
            result.versions["LiteLLM"] = target.version
        targets.append(target)
    return mock, targets, database_pid


def _unavailable(result: report.Report, key: str, reason: str) -> None:
    print(f"\n  !!! {LABELS[key]} UNAVAILABLE: {reason}\n", file=sys.stderr, flush=True)
    first_line = reason.splitlines()[0] if reason else "?"
    result.rows.append(
        report.TargetRow(key=key, label=LABELS[key], version="?", unavailable=first_line)
    )


def run(args: argparse.Namespace) -> report.Report:
    plan = make_plan(args)
    soak_on = args.soak if args.soak is not None else not args.quick
    wanted = {name.strip() for name in args.targets.split(",") if name.strip()} | {"direct"}
    cpus = environment.nproc()
    busy_before = procstat.machine_busy_seconds()
    own_before = environment.own_cpu_seconds()
    wall_before = time.monotonic()
    load_before = environment.load_average()
    placement = split_cpus(args.no_pin, os.sched_getaffinity(0))
    if placement.load is not None:
        # The load generator runs from this process.
        os.sched_setaffinity(0, placement.load)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result = report.Report(
        started_utc=started,
        machine=environment.machine(cpus, placement.description),
        versions=environment.base_versions(REPO_ROOT),
        settings={},
        rows=[],
    )
    workdir = Path(tempfile.mkdtemp(prefix="stillroom-bench-"))
    print(
        f"stillroom bench: {result.machine['nproc']} CPUs, {placement.description};"
        f" work dir {workdir}"
    )
    wrk = None if args.no_wrk else ensure_wrk(not args.no_install, workdir / "apt.log")
    load_tool = f"wrk {wrk_version(wrk)} -t1 --latency" if wrk else "aiohttp load generator"
    if wrk is None and not args.no_wrk:
        result.notes.append(
            "wrk unavailable: closed-loop figures come from the aiohttp "
            "generator, which saturates sooner than wrk."
        )
    result.settings = {
        "load_tool": load_tool,
        "plan": asdict(plan),
        "soak": soak_on,
        "argv": sys.argv[1:],
    }
    if wrk:
        result.versions["wrk"] = wrk_version(wrk)
    fleet = Fleet(logdir=workdir)
    try:
        _, targets, database_pid = start_targets(
            fleet, wanted, workdir, placement, not args.no_install, result
        )
        measured = measure_all(targets, plan, wrk, workdir, database_pid, soak_on, result)
        result.rows = measured + [row for row in result.rows if row.unavailable is not None]
    finally:
        fleet.close()
        # The server version is recorded right after the database is created.
        if "PostgreSQL" in result.versions:
            error = postgres.drop_database()
            if error:
                result.notes.append(f"could not drop {postgres.BENCH_DATABASE}: {error}")
        _note_foreign_load(result, busy_before, own_before, wall_before, load_before)
        if args.keep_workdir:
            print(f"  logs and databases kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _note_foreign_load(
    result: report.Report, busy_before: float, own_before: float, wall_before: float, load: str
) -> None:
    """Say how much CPU other processes took while the run went on (all children are reaped)."""
    wall = time.monotonic() - wall_before
    busy = procstat.machine_busy_seconds() - busy_before
    own = environment.own_cpu_seconds() - own_before
    foreign = max(0.0, busy - own)
    share = foreign / wall * 100 if wall > 0 else 0.0
    result.machine["foreign_cpu"] = (
        f"{foreign:.1f} CPU-s over {wall:.0f} s ({share:.0f} % of one CPU)"
    )
    text = (
        f"Other processes (the PostgreSQL server included) used {foreign:.1f} CPU-s during the "
        f"{wall:.0f} s run, {share:.0f} % of one CPU on average; load average at start {load}."
    )
    if share > 10:
        text = "**Machine was not idle**: " + text + " Figures may be perturbed; rerun when idle."
        print(f"\n  !!! {text}\n", file=sys.stderr, flush=True)
    result.notes.insert(0, text)


def measure_all(
    targets: list[Target],
    plan: Plan,
    wrk: str | None,
    workdir: Path,
    database_pid: int | None,
    soak_on: bool,
    result: report.Report,
) -> list[report.TargetRow]:
    tally = measure.Tally()
    print("round 1/3: throughput", flush=True)
    throughput = measure.throughput_round(
        targets,
        wrk=wrk,
        connections=plan.connections,
        duration_s=plan.duration_s,
        warmup_s=plan.warmup_s,
        workdir=workdir,
        database_pid=database_pid,
        tally=tally,
    )
    print("round 2/3: fixed rate", flush=True)
    fixed = measure.fixed_rate_round(
        targets, rate=plan.rate, count=plan.rate_requests, warmup=10, tally=tally
    )
    print("round 3/3: streaming", flush=True)
    streams = measure.streaming_round(
        targets, count=plan.stream_requests, warmup=5, slot_s=plan.stream_slot_s, tally=tally
    )
    rows = []
    for target in targets:
        responses = tally.responses[target.key]
        rows.append(
            report.TargetRow(
                key=target.key,
                label=target.label,
                version=target.version,
                startup_s=target.startup_s,
                throughput=throughput[target.key],
                fixed_rate=fixed[target.key],
                streaming=streams[target.key],
                peak_rss_mib=procstat.peak_rss_mib(target.pid),
                processes=len(procstat.process_tree(target.pid)),
                responses=responses,
                captures_written=measure.captures_written(target, responses),
            )
        )
    sqlite = next((t for t in targets if t.key == "sqlite"), None)
    if soak_on and sqlite is not None:
        soak = measure.soak(
            sqlite,
            wrk=wrk,
            total=plan.soak_requests,
            step=plan.soak_step,
            connections=plan.connections,
            workdir=workdir,
            tally=tally,
        )
        total = tally.responses[sqlite.key]
        result.soak = report.SoakRecord(
            target_key=sqlite.key,
            target_label=sqlite.label,
            result=soak,
            responses_total=total,
            captures_written=measure.captures_written(sqlite, total),
        )
    elif soak_on:
        result.notes.append("soak skipped: stillroom · SQLite is not running")
    _add_notes(rows, result)
    return rows


def _add_notes(rows: list[report.TargetRow], result: report.Report) -> None:
    for row in rows:
        failed: list[Any] = [
            row.throughput.load["failed"] if row.throughput else 0,
            row.fixed_rate.failed if row.fixed_rate else 0,
            row.streaming.failed if row.streaming else 0,
        ]
        if any(failed):
            result.notes.append(
                f"{row.label}: failed requests (16 / 10 rps / stream) = "
                f"{failed[0]} / {failed[1]} / {failed[2]}"
            )
        if row.processes > 1:
            result.notes.append(
                f"{row.label}: {row.processes} processes; CPU and RSS are summed over them"
            )
        if row.key.startswith(("sqlite", "postgres")) and row.captures_written is None:
            result.notes.append(f"{row.label}: no stillroom_captures_written_total on /metrics")
    if any(row.key.endswith("-2w") for row in rows):
        result.notes.append(
            "2-worker targets run on every CPU, beside the load generator and the mock "
            "(their CPU is in the workers table): on a machine of two CPUs they cannot have "
            "two to themselves."
        )
    result.notes.append(
        "Captures can exceed responses by up to 16 per closed-loop run: wrk stops with "
        "requests in flight, which the proxy still completes upstream and captures."
    )
    result.notes.append(
        "CPU ms/req counts the target's own processes only (for `direct`, the "
        "mock); the PostgreSQL server's share is in the details table."
    )


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through run()'s finally, which stops every child process.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    cpus = os.sched_getaffinity(0)
    result = run(args)
    markdown = report.to_markdown(result)
    print()
    print(markdown)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    markdown_path, json_path = report.write(result, args.output_dir)
    print(f"written: {markdown_path}, {json_path}")
    # run() pinned this process to the load generator's CPUs; the others want them all.
    os.sched_setaffinity(0, cpus)
    output = ["--output-dir", str(args.output_dir)]
    status = 0
    for wanted, bench in (
        (args.curation, curation.main),
        (args.writer, writer.main),
        (args.dataset, dataset.main),
    ):
        if wanted if wanted is not None else not args.quick:
            status = bench(output) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
