"""The writer benchmark's figures as Markdown and JSON (bench/results-writer.*)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.report import _table


@dataclass
class Sustained:
    store: str
    captures: int
    seconds: float
    queue_at_end: int
    stored: int

    @property
    def rate(self) -> float:
        return self.captures / self.seconds


@dataclass
class Overload:
    store: str
    queue_limit: int | None
    """None: no bound (the queue as it was)."""
    offered_rate: float
    offer_seconds: float
    offered: int
    peak_queue: int
    rss_before_mib: float
    peak_rss_mib: float
    peak_spool_mib: float
    overflowed: int
    drain_seconds: float
    """From the last offer until every capture was stored and the queue and spool empty."""
    stored: int


@dataclass
class WriterReport:
    started_utc: str
    machine: dict[str, str]
    versions: dict[str, str]
    settings: dict[str, object]
    sustained: list[Sustained] = field(default_factory=list)
    overload: list[Overload] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _limit(limit: int | None) -> str:
    return "none" if limit is None else f"{limit:,}"


def to_markdown(report: WriterReport) -> str:
    m, v = report.machine, report.versions
    lines = [
        f"## stillroom capture writer benchmark — {report.started_utc}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory']}, Linux {m['kernel']}.",
        "Versions: " + ", ".join(f"{name} {version}" for name, version in v.items()) + ".",
        f"Sink as `stillroom serve` makes it: batches of {report.settings['batch_size']}, queue "
        f"limit {report.settings['queue_limit']:,}.",
        "",
        "### Sustained — every capture offered at once, timed until all are committed",
        "",
    ]
    lines += _table(
        ["store", "captures", "seconds", "captures/s", "queue at the end", "stored"],
        [":--", "--:", "--:", "--:", "--:", "--:"],
        [
            [
                s.store,
                f"{s.captures:,}",
                f"{s.seconds:.1f}",
                f"{s.rate:,.0f}",
                str(s.queue_at_end),
                f"{s.stored:,}",
            ]
            for s in report.sustained
        ],
    )
    lines += [
        "",
        f"### Overload — offered at {report.settings['overload_factor']} times the sustained rate "
        f"for {report.settings['overload_seconds']:.0f} s",
        "",
    ]
    lines += _table(
        [
            "store",
            "queue limit",
            "offered/s",
            "offered",
            "peak queue",
            "RSS before → peak of its process (MiB)",
            "overflowed to the spool",
            "peak spool (MiB)",
            "then stored in (s)",
            "stored",
        ],
        [":--", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:", "--:"],
        [
            [
                o.store,
                _limit(o.queue_limit),
                f"{o.offered_rate:,.0f}",
                f"{o.offered:,}",
                f"{o.peak_queue:,}",
                f"{o.rss_before_mib:.0f} → {o.peak_rss_mib:.0f}",
                f"{o.overflowed:,}",
                f"{o.peak_spool_mib:.1f}",
                f"{o.drain_seconds:.1f}",
                f"{o.stored:,}",
            ]
            for o in report.overload
        ],
    )
    if report.notes:
        lines += ["", "Notes:"] + [f"- {note}" for note in report.notes]
    return "\n".join(lines) + "\n"


def write(report: WriterReport, directory: Path) -> tuple[Path, Path]:
    markdown_path = directory / "results-writer.md"
    json_path = directory / "results-writer.json"
    markdown_path.write_text(to_markdown(report))
    json_path.write_text(json.dumps(asdict(report), indent=2, default=str) + "\n")
    return markdown_path, json_path
