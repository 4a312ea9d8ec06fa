"""The curation benchmark's figures as Markdown and JSON (bench/results-curation.*)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.curation_export import EXPORT_TARGET_S, ExportResult
from bench.curation_pages import PageTiming
from bench.report import _ms, _table


@dataclass
class CurationReport:
    started_utc: str
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, Any]
    data: dict[str, Any]
    pages: list[PageTiming] = field(default_factory=list)
    http: list[PageTiming] = field(default_factory=list)
    export: ExportResult | None = None
    notes: list[str] = field(default_factory=list)


def _share(counts: dict[str, int], total: int) -> str:
    return ", ".join(f"{name} {count / total * 100:.0f} %" for name, count in counts.items())


def _data_line(report: CurationReport) -> str:
    d = report.data
    rows = int(d["rows"])
    how = (
        "kept from an earlier run"
        if d["reused"]
        else f"generated and loaded in {float(d['load_s']):.0f} s"
    )
    return (
        f"Data: {rows:,} captures on PostgreSQL (`{d['database']}`, "
        f"{int(d['table_bytes']) / 2**30:.1f} GiB with indexes and TOAST, {how}); review "
        f"status {_share(d['status'], rows)}; {int(d['feedback']):,} feedback rows, "
        f"{int(d['edits']):,} edits; schema revision {d['revision']}."
    )


def _page_rows(pages: list[PageTiming], target_ms: float) -> list[list[str]]:
    rows = []
    for timing in pages:
        mark = "" if timing.p50_ms <= target_ms else " ⚠"
        matching = f"{timing.matching:,}" if timing.matching >= 0 else "—"
        rows.append(
            [
                timing.name,
                matching,
                str(timing.returned),
                _ms(timing.p50_ms) + mark,
                _ms(timing.p95_ms),
                str(timing.runs),
            ]
        )
    return rows


def _http_rows(report: CurationReport) -> list[list[str]]:
    service = {timing.name: timing for timing in report.pages}
    rows = []
    for timing in report.http:
        direct = service.get(timing.name)
        overhead = _ms(timing.p50_ms - direct.p50_ms) if direct else "—"
        rows.append(
            [
                timing.name,
                _ms(direct.p50_ms) if direct else "—",
                _ms(timing.p50_ms),
                _ms(timing.p95_ms),
                overhead,
                str(timing.runs),
            ]
        )
    return rows


def _export_lines(export: ExportResult) -> list[str]:
    total = export.seconds("export + validate, all splits")
    verdict = "within" if total <= EXPORT_TARGET_S else "OVER"
    lines = [
        f"### Dataset of {export.examples:,} examples — export + validate target ≤ "
        f"{EXPORT_TARGET_S:.0f} s: {total:.1f} s ({verdict})",
        "",
        f"Filter: `{export.query}`.",
        "",
    ]
    lines += _table(
        ["stage", "seconds", "detail"],
        [":--", "--:", ":--"],
        [[stage.name, f"{stage.seconds:.2f}", stage.detail] for stage in export.stages],
    )
    return lines


def to_markdown(report: CurationReport) -> str:
    m, v = report.machine, report.versions
    target = float(report.settings["target_ms"])
    lines = [
        f"## stillroom curation benchmark — {report.started_utc}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, Linux {m['kernel']}.",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        _data_line(report),
        "",
        f"### Filtered first page — {report.settings['page_size']} summaries newest first, "
        f"target p50 ≤ {target:.0f} ms",
        "",
        f"`finetune.list_captures` in its own unit of work, as the admin API calls it; warm "
        f"({report.settings['warmup']} calls first), up to {report.settings['runs']} runs each.",
        "",
    ]
    lines += _table(
        ["filter", "matching", "rows", "p50 ms", "p95 ms", "runs"],
        [":--", "--:", "--:", "--:", "--:", "--:"],
        _page_rows(report.pages, target),
    )
    if report.http:
        lines += [
            "",
            "### Through HTTP — `GET /admin/captures` on `stillroom serve`, one kept-alive "
            "connection",
            "",
        ]
        lines += _table(
            ["filter", "service p50 ms", "HTTP p50 ms", "HTTP p95 ms", "added p50 ms", "runs"],
            [":--", "--:", "--:", "--:", "--:", "--:"],
            _http_rows(report),
        )
    if report.export is not None:
        lines += ["", *_export_lines(report.export)]
    slow = [timing for timing in report.pages if timing.plan]
    if slow:
        lines += ["", f"### Plans of the pages over {target:.0f} ms (EXPLAIN ANALYZE)", ""]
        for timing in slow:
            lines += [
                "<details>",
                f"<summary>{timing.name} — p50 {_ms(timing.p50_ms)} ms</summary>",
                "",
                "```",
                timing.plan or "",
                "```",
                "</details>",
                "",
            ]
    if report.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write(report: CurationReport, directory: Path) -> tuple[Path, Path]:
    markdown_path = directory / "results-curation.md"
    json_path = directory / "results-curation.json"
    markdown_path.write_text(to_markdown(report))
    json_path.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return markdown_path, json_path
