"""The dataset benchmark's figures as Markdown and JSON (bench/results-dataset.*)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.curation_export import ExportResult
from bench.report import _table

BUILD_TARGET_S = 10.0


@dataclass
class BuildTiming:
    store: str
    seconds: float
    own_cpu_seconds: float
    """This process's CPU, its writer thread included."""
    workers_cpu_seconds: float
    """The CPU of the processes that read the build's batches (and of the fork server they
    come from, when the build started it)."""
    server_cpu_seconds: float | None
    """The PostgreSQL backends' CPU (None on SQLite, which works inside the process)."""
    counts: dict[str, Any]
    digest: str
    load_average: str


@dataclass
class WriterRun:
    store: str
    label: str
    seconds: float
    captures: int
    rate: float
    batches: int
    longest_batch_seconds: float
    failed_batches: int
    first_error: str | None
    build_seconds: float | None


@dataclass
class DatasetReport:
    started_utc: str
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    query: str = ""
    builds: list[BuildTiming] = field(default_factory=list)
    exports: dict[str, ExportResult] = field(default_factory=dict)
    writer: list[WriterRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _build_rows(report: DatasetReport) -> list[list[str]]:
    rows = []
    for build in report.builds:
        c = build.counts
        server = "—" if build.server_cpu_seconds is None else f"{build.server_cpu_seconds:.1f}"
        mark = "" if build.seconds <= BUILD_TARGET_S else " ⚠"
        rows.append(
            [
                build.store,
                f"{build.seconds:.1f}{mark}",
                f"{build.own_cpu_seconds:.1f}",
                f"{build.workers_cpu_seconds:.1f}",
                server,
                f"{c['selected']:,} / {c['total']:,}",
                f"{c['duplicates_dropped']:,}; {c['threaded_dropped']:,}",
                f"`{build.digest}`",
                build.load_average,
            ]
        )
    return rows


def _writer_rows(report: DatasetReport) -> list[list[str]]:
    return [
        [
            run.store,
            run.label,
            f"{run.seconds:.1f}",
            f"{run.rate:,.0f}",
            f"{run.longest_batch_seconds * 1000:,.0f}",
            f"{run.failed_batches}" + (f" ({run.first_error})" if run.first_error else ""),
        ]
        for run in report.writer
    ]


def to_markdown(report: DatasetReport) -> str:
    m, v = report.machine, report.versions
    d = report.data
    lines = [
        f"## stillroom dataset build benchmark — {report.started_utc}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, Linux {m['kernel']}.",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        f"Data: {int(d.get('rows', 0)):,} generated captures, the same in a SQLite file and a "
        f"PostgreSQL database ({'kept' if d.get('reused') else 'made'}); filter "
        f"`{report.query}`.",
        "",
        f"### Build — target ≤ {BUILD_TARGET_S:.0f} s for {report.settings['examples']:,} examples",
        "",
    ]
    lines += _table(
        [
            "store",
            "seconds",
            "own CPU s",
            "workers CPU s",
            "server CPU s",
            "selected / examples",
            "duplicates; earlier turns left out",
            "digest",
            "load average",
        ],
        [":--", "--:", "--:", "--:", "--:", "--:", "--:", ":--", ":--"],
        _build_rows(report),
    )
    for store, export in report.exports.items():
        lines += ["", f"### Export and validation — {store}", ""]
        lines += _table(
            ["stage", "seconds", "detail"],
            [":--", "--:", ":--"],
            [[stage.name, f"{stage.seconds:.2f}", stage.detail] for stage in export.stages],
        )
    if report.writer:
        lines += [
            "",
            "### The capture writer beside a build — batches as the sink writes them, in a "
            "process of its own",
            "",
        ]
        lines += _table(
            ["store", "writer", "seconds", "captures/s", "longest batch ms", "failed batches"],
            [":--", ":--", "--:", "--:", "--:", ":--"],
            _writer_rows(report),
        )
    if report.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write(report: DatasetReport, directory: Path) -> tuple[Path, Path]:
    markdown_path = directory / "results-dataset.md"
    json_path = directory / "results-dataset.json"
    markdown_path.write_text(to_markdown(report))
    json_path.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return markdown_path, json_path
