"""Running curation rules over stored captures, on demand: a dry run counts, a real run writes.

Both go through the same code, so the counts of a dry run are the changes a real run makes
(unless captures change in between). Captures are read in keyset batches of ids, never all at
once. Only pending captures change status unless ``include_reviewed`` is set: a reviewer's
decision outranks a rule. Tags are only ever added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine
from sqlmodel import Session

from finetune.curation._rules import Decision, RuleConfig, evaluate, rules_read_bodies
from storage import (
    CaptureFilter,
    capture_rows_after,
    count_filtered_captures,
    decide_review_status,
    replace_tags,
    session_scope,
)

RULES_BATCH_SIZE = 500


class RuleChanges(BaseModel):
    name: str
    action: str
    tag: str | None
    changes: int
    """Captures this rule changes: its decision changes their status, or it adds its tag."""


class RulesReport(BaseModel):
    dry_run: bool
    evaluated: int
    """Captures matching the filter."""
    changed: int
    """Captures whose status or tags change."""
    approved: int
    rejected: int
    tagged: int
    """Captures that gain at least one tag."""
    rules: list[RuleChanges]


@dataclass(frozen=True, slots=True)
class _Change:
    capture_id: str
    status: Decision | None
    tags: list[str] | None
    """The capture's whole new tag list, when it gains a tag."""
    rules: tuple[str, ...]


def _change(
    rules: Sequence[RuleConfig], row: Mapping[str, Any], include_reviewed: bool
) -> _Change | None:
    outcome = evaluate(rules, row)
    current = row.get("review_status")
    may_decide = include_reviewed or current == "pending"
    status = outcome.status if may_decide and outcome.status != current else None
    credited = [*outcome.tag_rules.values()]
    if status is not None and outcome.status_rule is not None:
        credited.append(outcome.status_rule)
    if status is None and not outcome.tags:
        return None
    tags = [*(row.get("tags") or []), *outcome.tags] if outcome.tags else None
    return _Change(row["id"], status, tags, tuple(dict.fromkeys(credited)))


def count_rule_candidates(engine: Engine, capture_filter: CaptureFilter) -> int:
    """How many captures a run over ``capture_filter`` evaluates (for a progress bar)."""
    with session_scope(engine) as session:
        return count_filtered_captures(capture_filter, session=session)


def run_rules(
    engine: Engine,
    rules: Sequence[RuleConfig],
    capture_filter: CaptureFilter | None = None,
    *,
    dry_run: bool,
    include_reviewed: bool = False,
    batch_size: int = RULES_BATCH_SIZE,
    progress: Callable[[int], None] | None = None,
) -> RulesReport:
    """Evaluate ``rules`` over every capture matching ``capture_filter`` and report, per rule,
    how many captures it changes; unless ``dry_run``, apply those changes batch by batch.
    ``progress`` is called with the size of each batch evaluated."""
    capture_filter = capture_filter or CaptureFilter()
    per_rule = dict.fromkeys((rule.name for rule in rules), 0)
    totals = {"evaluated": 0, "changed": 0, "approved": 0, "rejected": 0, "tagged": 0}
    with_bodies = rules_read_bodies(rules)
    after: str | None = None
    while True:
        with session_scope(engine) as session:
            rows = capture_rows_after(
                capture_filter,
                session=session,
                after=after,
                limit=batch_size,
                with_bodies=with_bodies,
                lock=not dry_run,
            )
            if not rows:
                break
            after = rows[-1]["id"]
            changes = [c for row in rows if (c := _change(rules, row, include_reviewed))]
            if not dry_run:
                _apply(changes, include_reviewed, session=session)
        totals["evaluated"] += len(rows)
        totals["changed"] += len(changes)
        for change in changes:
            if change.status is not None:
                totals[change.status] += 1
            totals["tagged"] += change.tags is not None
            for name in change.rules:
                per_rule[name] += 1
        if progress is not None:
            progress(len(rows))
    return RulesReport(
        dry_run=dry_run,
        evaluated=totals["evaluated"],
        changed=totals["changed"],
        approved=totals["approved"],
        rejected=totals["rejected"],
        tagged=totals["tagged"],
        rules=[
            RuleChanges(
                name=rule.name, action=rule.action, tag=rule.tag, changes=per_rule[rule.name]
            )
            for rule in rules
        ],
    )


def _apply(changes: Sequence[_Change], include_reviewed: bool, *, session: Session) -> None:
    only_from = None if include_reviewed else ["pending"]
    for status in ("approved", "rejected"):
        ids = [c.capture_id for c in changes if c.status == status]
        decide_review_status(ids, status, only_from=only_from, session=session)
    replace_tags(((c.capture_id, c.tags) for c in changes if c.tags is not None), session=session)
