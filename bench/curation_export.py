"""Timing a dataset of 100,000 examples: its build, its export as chat fine-tuning JSONL, and
the validator that gates an upload, each stage apart.

The filter is ``status=approved&error=false&created_after=…``, with the cut chosen so the build
gives exactly the wanted count: one example per conversation (``metadata.thread``) or, for a
single question, per distinct prompt, among the approved captures that carry an answer. The
dataset is deleted afterwards, so the kept database stays as generated.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, text

from finetune import (
    create_dataset,
    delete_dataset,
    export_lines,
    filter_from_params,
    validate_dataset,
    validate_file,
    validate_jsonl,
)
from storage import session_scope

EXPORT_TARGET_S = 16.0
"""The goal for exporting and validating every split of the dataset."""

T = TypeVar("T")
DATASET_NAME = "bench-curation"

# The build's own rules in SQL: approved, answered (or edited: an edit stands in for an answer
# the content filter withheld), one example per conversation or prompt.
_CUT = text(
    """
    SELECT newest FROM (
        SELECT max(created_at) AS newest FROM captures
        WHERE review_status = 'approved'
          AND status_code >= 200 AND status_code < 300 AND error_kind IS NULL
          AND NOT abandoned
          AND (finish_reason IS DISTINCT FROM 'content_filter'
               OR EXISTS (SELECT 1 FROM capture_edits WHERE capture_id = captures.id))
        GROUP BY coalesce(metadata ->> 'thread', prompt_hash)
    ) AS examples
    ORDER BY newest DESC OFFSET :skip LIMIT 1
    """
)


@dataclass
class Stage:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class ExportResult:
    query: str
    examples: int
    counts: dict[str, Any]
    stages: list[Stage] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)

    def seconds(self, name: str) -> float:
        return next(stage.seconds for stage in self.stages if stage.name == name)


def _timed(call: Callable[[], T]) -> tuple[T, float]:
    gc.collect()
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def cut_for(engine: Engine, examples: int) -> datetime | None:
    """The ``created_after`` that selects ``examples`` examples; None when there are fewer."""
    with session_scope(engine) as session:
        found = session.execute(_CUT, {"skip": examples - 1}).scalar_one_or_none()
    return found if isinstance(found, datetime) else None


def _mib(size: int) -> str:
    return f"{size / 1_048_576:,.0f} MiB"


def run(
    engine: Engine,
    examples: int,
    workdir: Path,
    say: Callable[[str], None],
    cut: datetime | None = None,
) -> ExportResult:
    """Build, export and validate ``examples`` examples, then delete the dataset; ``cut``
    when it was found on another store of the same captures."""
    cut = cut or cut_for(engine, examples)
    if cut is None:
        raise RuntimeError(f"the database holds fewer than {examples:,} approved examples")
    params = [("status", "approved"), ("error", "false"), ("created_after", cut.isoformat())]
    capture_filter = filter_from_params(params)
    say(f"  building a dataset of {examples:,} examples ...")
    dataset, built_s = _timed(lambda: create_dataset(engine, DATASET_NAME, capture_filter))
    counts = dict(dataset.counts)
    result = ExportResult(
        query="&".join(f"{k}={v}" for k, v in params), examples=int(counts["total"]), counts=counts
    )
    detail = (
        f"{counts['selected']:,} captures selected, {counts['duplicates_dropped']:,} duplicates "
        f"and {counts['threaded_dropped']:,} earlier turns left out"
    )
    result.stages.append(Stage("create dataset", built_s, detail))
    try:
        export_and_validate(engine, dataset.id, workdir, result, say)
    finally:
        _, deleted_s = _timed(lambda: delete_dataset(engine, dataset.id))
        result.stages.append(Stage("delete dataset", deleted_s))
    return result


def export_and_validate(
    engine: Engine, dataset_id: str, workdir: Path, result: ExportResult, say: Callable[[str], None]
) -> None:
    say("  exporting and validating ...")
    train, train_s = _timed(lambda: list(export_lines(engine, dataset_id, split="train")))
    size = sum(map(len, train))
    result.stages.append(
        Stage("export train split (SFT JSONL)", train_s, f"{len(train):,} lines, {_mib(size)}")
    )
    del train
    lines, all_s = _timed(lambda: list(export_lines(engine, dataset_id, split="all")))
    size = sum(map(len, lines))
    result.stages.append(
        Stage("export all splits (SFT JSONL)", all_s, f"{len(lines):,} lines, {_mib(size)}")
    )
    report, validate_s = _timed(lambda: validate_jsonl(lines))
    verdict = "passed" if report.passed else f"FAILED: {report.error_counts}"
    result.stages.append(
        Stage(
            "validate all splits",
            validate_s,
            f"{verdict}; {report.total_tokens:,} tokens ({report.encoding}); "
            f"warnings {report.warning_counts or 'none'}",
        )
    )
    result.stages.append(
        Stage(
            "export + validate, all splits",
            all_s + validate_s,
            f"the goal: ≤ {EXPORT_TARGET_S:.0f} s",
        )
    )
    path = workdir / "dataset.jsonl"

    def to_file() -> None:
        with path.open("wb") as handle:
            handle.writelines(export_lines(engine, dataset_id, split="all"))

    _, file_s = _timed(to_file)
    _, file_check_s = _timed(lambda: validate_file(path))
    result.stages.append(
        Stage("export to a file + validate the file", file_s + file_check_s, "as the CLI does")
    )
    path.unlink()
    lines.clear()
    streamed, streamed_s = _timed(lambda: validate_dataset(engine, dataset_id, split="all"))
    result.stages.append(
        Stage(
            "validate_dataset (export streamed into the validator)",
            streamed_s,
            "the pre-upload gate",
        )
    )
    result.validation = {
        "passed": report.passed,
        "examples": report.examples,
        "bytes": report.bytes,
        "total_tokens": report.total_tokens,
        "encoding": report.encoding,
        "error_counts": report.error_counts,
        "warning_counts": report.warning_counts,
        "streamed_passed": streamed.passed,
    }
