"""Turn the measurements into a Markdown report and a JSON record."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Latencies, Soak, Streaming, Throughput


@dataclass
class TargetRow:
    key: str
    label: str
    version: str
    unavailable: str | None = None
    """Why the target was not measured; None when it was."""
    startup_s: float | None = None
    throughput: Throughput | None = None
    fixed_rate: Latencies | None = None
    streaming: Streaming | None = None
    peak_rss_mib: float | None = None
    processes: int = 0
    responses: int = 0
    """Responses the benchmark received from it before the soak, warm-ups included."""
    captures_written: float | None = None


@dataclass
class SoakRecord:
    target_key: str
    target_label: str
    result: Soak
    responses_total: int
    captures_written: float | None


@dataclass
class Report:
    started_utc: str
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, Any]
    rows: list[TargetRow]
    soak: SoakRecord | None = None
    notes: list[str] = field(default_factory=list)


def _ms(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _signed_ms(value: float) -> str:
    return ("+" if value >= 0 else "-") + _ms(abs(value))


def _baseline(rows: list[TargetRow]) -> TargetRow | None:
    return next((row for row in rows if row.key == "direct" and row.unavailable is None), None)


def _main_cells(row: TargetRow, base: TargetRow | None) -> list[str]:
    t, f, s = row.throughput, row.fixed_rate, row.streaming
    rps = f"{t.rps:,.0f}" if t else "—"
    closed = f"{_ms(t.load['p50_ms'])} / {_ms(t.load['p99_ms'])}" if t else "—"
    base_f = base.fixed_rate if base else None
    base_s = base.streaming if base else None
    if f is None:
        added = "—"
    elif row is base or base_f is None:
        added = f"baseline ({_ms(f.p50_ms)} / {_ms(f.p99_ms)} raw)"
    else:
        added = f"{_signed_ms(f.p50_ms - base_f.p50_ms)} / {_signed_ms(f.p99_ms - base_f.p99_ms)}"
    if s is None:
        ttfb = total = "—"
    else:
        if row is base or base_s is None:
            ttfb = f"{_ms(s.ttfb.p50_ms)} (baseline)"
        else:
            ttfb = f"{_ms(s.ttfb.p50_ms)} ({_signed_ms(s.ttfb.p50_ms - base_s.ttfb.p50_ms)})"
        total = _ms(s.total.p50_ms)
    cpu = f"{t.cpu_ms_per_request:.3f}" if t else "—"
    rss = f"{row.peak_rss_mib:.0f}" if row.peak_rss_mib is not None else "—"
    return [row.label, rps, closed, added, ttfb, total, cpu, rss]


def _floor_rows(rows: list[TargetRow], base: TargetRow | None) -> list[list[str]]:
    """stillroom beside the naive pass-through, as ratios (the issue's goals in brackets)."""
    floor = next((r for r in rows if r.key == "floor" and r.unavailable is None), None)
    if floor is None or floor.throughput is None:
        return []
    base_f = base.fixed_rate if base else None

    def added(row: TargetRow) -> float | None:
        if row.fixed_rate is None or base_f is None:
            return None
        return row.fixed_rate.p50_ms - base_f.p50_ms

    def ratio(mine: float | None, theirs: float | None, percent: bool = False) -> str:
        if mine is None or theirs is None or theirs <= 0:
            return "—"
        return f"{mine / theirs * 100:.0f} %" if percent else f"{mine / theirs:.2f}x"

    body = []
    for row in rows:
        if row.unavailable is not None or row.key not in {"sqlite", "postgres", "uncaptured"}:
            continue
        t, s = row.throughput, row.streaming
        body.append(
            [
                row.label,
                ratio(t.rps if t else None, floor.throughput.rps, percent=True),
                ratio(added(row), added(floor)),
                ratio(t.cpu_ms_per_request if t else None, floor.throughput.cpu_ms_per_request),
                ratio(
                    s.ttfb.p50_ms if s else None,
                    floor.streaming.ttfb.p50_ms if floor.streaming else None,
                ),
            ]
        )
    return body


def _workers_rows(rows: list[TargetRow]) -> list[list[str]]:
    """Each target's two-worker throughput as a ratio of its one-worker throughput, and that
    ratio beside the floor's own."""
    measured = {row.key: row for row in rows if row.unavailable is None}
    pairs = []
    for key, row in measured.items():
        one = measured.get(key.removesuffix("-2w"))
        if not key.endswith("-2w") or one is None or one.throughput is None:
            continue
        if row.throughput is None or one.throughput.rps <= 0:
            continue
        pairs.append((one, one.throughput, row.throughput))
    # The floor's own gain from a second process is what this machine allows any proxy.
    floor_gain = next((b.rps / a.rps for one, a, b in pairs if one.key == "floor"), None)
    body = []
    for one, single, double in pairs:
        gain = double.rps / single.rps
        beside_floor = f"{gain / floor_gain:.2f}x" if floor_gain and one.key != "floor" else "—"
        body.append(
            [
                one.label,
                f"{single.rps:,.0f}",
                f"{double.rps:,.0f}",
                f"{gain:.2f}x",
                beside_floor,
                f"{single.cpu_ms_per_request:.3f} / {double.cpu_ms_per_request:.3f}",
                # How much of the machine each got: what the ratio is made of.
                f"{_cpus(single):.2f} / {_cpus(double):.2f}",
                f"{single.load_cpu_percent:.0f} % / {double.load_cpu_percent:.0f} %",
                f"{single.foreign_cpu_percent:.0f} % / {double.foreign_cpu_percent:.0f} %",
                " / ".join(f"{share * 100:.0f} %" for share in double.worker_shares)
                if double.worker_shares
                else "—",
            ]
        )
    return body


def _cpus(throughput: Throughput) -> float:
    """CPUs a target kept busy during its closed-loop run."""
    return throughput.rps * throughput.cpu_ms_per_request / 1000


def _table(header: list[str], align: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return lines


def _detail_cells(row: TargetRow) -> list[str]:
    t, f, s = row.throughput, row.fixed_rate, row.streaming
    fixed = f"{_ms(f.p50_ms)} / {_ms(f.p99_ms)}" if f else "—"
    ttfb = f"{_ms(s.ttfb.p50_ms)} / {_ms(s.ttfb.p99_ms)}" if s else "—"
    total = f"{_ms(s.total.p50_ms)} / {_ms(s.total.p99_ms)}" if s else "—"
    failed = "/".join(
        str(part) if part is not None else "—"
        for part in (
            t.load["failed"] if t else None,
            f.failed if f else None,
            s.failed if s else None,
        )
    )
    events = str(s.events_per_stream) if s else "—"
    startup = f"{row.startup_s:.1f}" if row.startup_s is not None else "—"
    if row.captures_written is None:
        captures = "—"
    else:
        captures = f"{row.captures_written:,.0f} / {row.responses:,}"
    db_cpu = (
        f"{t.database_cpu_ms_per_request:.3f}"
        if t and t.database_cpu_ms_per_request is not None and row.key.startswith("postgres")
        else "—"
    )
    other = f"{t.foreign_cpu_percent:.0f} %" if t else "—"
    return [row.label, fixed, ttfb, total, events, failed, startup, captures, db_cpu, other]


def _soak_line(soak: SoakRecord) -> str:
    samples = soak.result.rss_mib
    if len(samples) < 3:
        return f"Soak ({soak.target_label}): too few samples."
    first_n, first = samples[1]
    last_n, last = samples[-1]
    change = (last - first) / first * 100 if first else 0.0
    trail = " → ".join(f"{rss:.1f}" for _, rss in samples[1:])
    captures = (
        f"; captures written {soak.captures_written:,.0f} of {soak.responses_total:,} responses"
        if soak.captures_written is not None
        else ""
    )
    return (
        f"Soak ({soak.target_label}, {last_n:,} requests at 16 connections): RSS after "
        f"{first_n:,} = {first:.1f} MiB, after {last_n:,} = {last:.1f} MiB "
        f"({change:+.1f} %); every {soak.result.step:,}: {trail} MiB "
        f"(before the soak {samples[0][1]:.1f} MiB); {soak.result.rps:,.0f} req/s, "
        f"{soak.result.cpu_ms_per_request:.3f} CPU ms/req, {soak.result.failed} failed"
        f"{captures}."
    )


def to_markdown(report: Report) -> str:
    m, v = report.machine, report.versions
    lines = [
        f"## stillroom benchmark — {report.started_utc}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, Linux {m['kernel']}; "
        f"{m['placement']}.",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        f"Load: {report.settings['load_tool']}.",
        "",
    ]
    base = _baseline(report.rows)
    main_rows = [row for row in report.rows if row.unavailable is None]
    lines += _table(
        [
            "target",
            "req/s @16",
            "p50 / p99 @16 (ms)",
            "added p50 / p99 @10 rps (ms)",
            "stream TTFB p50 (added) (ms)",
            "stream total p50 (ms)",
            "CPU ms/req",
            "peak RSS MB",
        ],
        [":--", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
        [_main_cells(row, base) for row in main_rows],
    )
    for row in report.rows:
        if row.unavailable is not None:
            lines.append(f"| {row.label} | unavailable: {row.unavailable} |||||||")
    beside_floor = _floor_rows(report.rows, base)
    if beside_floor:
        lines += ["", "Beside the naive pass-through (the floor), same run:", ""]
        lines += _table(
            [
                "target",
                "throughput, % of the floor's (goal ≥ 90 %)",
                "added p50 @10 rps, x the floor's (≤ 1.2x)",
                "CPU per request, x the floor's (≤ 1.2x)",
                "stream TTFB p50, x the floor's (≤ 1.2x)",
            ],
            [":--", "--:", "--:", "--:", "--:"],
            beside_floor,
        )
    workers = _workers_rows(report.rows)
    if workers:
        lines += ["", "Two workers beside one, same run:", ""]
        lines += _table(
            [
                "target",
                "req/s @16, 1 worker",
                "req/s @16, 2 workers",
                "2 workers ÷ 1 (goal ≥ 1.7x)",
                "÷ the floor's 2 ÷ 1",
                "CPU ms/req, 1 / 2 workers",
                "CPUs used, 1 / 2 workers",
                "load generator + mock CPU, 1 / 2 workers",
                "other load, 1 / 2 workers",
                "requests per worker @16",
            ],
            [":--", *["--:"] * 9],
            workers,
        )
    lines.append("")
    lines.append(
        _soak_line(report.soak) if report.soak else "Soak: not run (--quick or --no-soak)."
    )
    lines += ["", "Details:", ""]
    lines += _table(
        [
            "target",
            "@10 rps raw p50 / p99 (ms)",
            "stream TTFB p50 / p99 (ms)",
            "stream total p50 / p99 (ms)",
            "SSE events",
            "failed (16 / 10 rps / stream)",
            "start-up (s)",
            "captures written / responses",
            "PG server CPU ms/req",
            "other load @16 run",
        ],
        [":--", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
        [_detail_cells(row) for row in main_rows],
    )
    if report.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write(report: Report, directory: Path) -> tuple[Path, Path]:
    markdown_path = directory / "results.md"
    json_path = directory / "results.json"
    markdown_path.write_text(to_markdown(report))
    json_path.write_text(json.dumps(asdict(report), indent=2) + "\n")
    return markdown_path, json_path
