"""Datasets: frozen, versioned snapshots of curated captures, split by a stable prompt hash.

A build reads the selection's light columns, skips what failed, keeps one capture per prompt
(the duplicate policy), then loads bodies in batches and builds and writes each batch's
examples (``_build``), through a store that keeps the build out of the capture writer's way
(``_build_store``): a dataset appears whole or not at all.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row
from sqlalchemy.exc import IntegrityError

from finetune.datasets._batch import batch_readers, default_workers
from finetune.datasets._build import Build, Progress, build_groups, collector_paused
from finetune.datasets._build_store import build_store
from finetune.datasets._export import require_dataset
from finetune.datasets._input import (
    SPLITS,
    DatasetConflict,
    SplitRatios,
    check_name,
    check_policy,
    not_found,
)
from storage import (
    CaptureFilter,
    Dataset,
    contested_prompts,
    duplicate_group_members,
    duplicate_groups,
    new_dataset_id,
    next_dataset_version,
    select_dataset_candidates,
    session_scope,
)
from storage import delete_dataset as delete_dataset_row
from storage import get_dataset as get_dataset_row
from storage import list_datasets as list_dataset_rows


def _light_skip(row: Row[Any]) -> str | None:
    """Why a capture cannot be an example, as far as its light columns tell."""
    if row.abandoned or row.error_kind == "client_abandoned":
        return "abandoned"
    if row.error_kind == "stream_cut":
        return "stream_cut"
    failed = row.status_code is None or not 200 <= row.status_code < 300
    if failed or row.error_kind is not None or row.error is not None:
        return "error"
    return None


def _rank(policy: str) -> Callable[[Row[Any]], tuple[Any, ...]]:
    if policy == "best_rated":
        return lambda r: (r.rating is not None, r.rating or 0, r.created_at, r.id)
    return lambda r: (r.review_status == "approved", r.created_at, r.id)


def rank_groups(rows: list[Row[Any]], policy: str) -> dict[str, list[Row[Any]]]:
    """Captures per prompt, best first by ``policy``."""
    check_policy(policy)
    groups: dict[str, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        groups[row.prompt_hash or f"capture:{row.id}"].append(row)
    rank = _rank(policy)
    for members in groups.values():
        if len(members) > 1:
            members.sort(key=rank, reverse=True)
    return groups


def create_dataset(
    engine: Engine,
    name: str,
    capture_filter: CaptureFilter,
    *,
    ratios: SplitRatios | None = None,
    dedupe: str = "latest_approved",
    lineage: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
    batch_size: int = 1000,
    workers: int | None = None,
) -> Dataset:
    """Freeze the captures ``capture_filter`` selects into the next version of ``name``.

    ``workers``: processes that read batches beside this one (``default_workers`` when None,
    by the build's size and the machine's cores; 0 reads them all here). The examples are
    the same whichever."""
    check_name(name)
    check_policy(dedupe)
    ratios = ratios or SplitRatios()
    try:
        with collector_paused(), build_store(engine) as store:
            with store.reading() as session:
                rows = select_dataset_candidates(capture_filter, session=session)
                version = next_dataset_version(name, session=session)
                contested = contested_prompts(session=session)
            skipped_early: Counter[str] = Counter()
            answered = []
            for row in rows:
                reason = _light_skip(row)
                if reason is None:
                    answered.append(row)
                else:
                    skipped_early[reason] += 1
            groups = rank_groups(answered, dedupe)
            dataset = Dataset(
                id=new_dataset_id(),
                name=name,
                version=version,
                filter=capture_filter.model_dump(mode="json", exclude_none=True),
                split=ratios.as_dict(),
            )
            store.begin(dataset)
            build = Build(store, dataset, ratios)
            build.skipped.update(skipped_early)
            if workers is None:
                workers = default_workers(engine, -(-len(groups) // batch_size))
            readers = batch_readers(engine, frozenset(contested), workers, prefetch=store.pipelined)
            with readers as read:
                duplicates = build_groups(
                    build, groups, batch_size, progress, read, depth=2 * workers or 2
                )
            threaded, untaught = build.settle()
            per_split = Counter(build.sides.values())
            dataset.counts = {
                "total": len(build.sides),
                **{side: per_split[side] for side in SPLITS},
                "selected": len(rows),
                "duplicates_dropped": duplicates,
                "threaded_dropped": threaded,
                "skipped": dict(sorted(build.skipped.items())),
                "untaught_turns": untaught,
                "preference_pairs": build.pairs,
            }
            dataset.lineage = {
                **(lineage or {}),
                "filter": dataset.filter,
                "dedupe": dedupe,
                "split_key": "prompt_hash of the opening prompt (messages before the first "
                "assistant turn, with tools)",
            }
            store.finish(dataset)
    except IntegrityError:
        raise DatasetConflict(
            f"Another build of '{name}' took the same version at the same time; try again.",
            param="name",
            code="conflict",
        ) from None
    return dataset


def list_datasets(engine: Engine, *, name: str | None = None) -> list[Dataset]:
    """Newest first."""
    with session_scope(engine) as session:
        return list_dataset_rows(session=session, name=name)


def get_dataset(engine: Engine, dataset_id: str) -> Dataset:
    return require_dataset(engine, dataset_id)


def delete_dataset(engine: Engine, dataset_id: str) -> Dataset:
    """Delete a dataset and its examples (never its captures); returns what was deleted."""
    with session_scope(engine) as session:
        dataset = get_dataset_row(dataset_id, session=session)
        if dataset is None:
            raise not_found(dataset_id)
        delete_dataset_row(dataset, session=session)
    return dataset


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    prompt_hash: str
    size: int
    capture_ids: list[str]
    """Best first by the policy; a build keeps the first one that has an answer."""


def list_duplicates(
    engine: Engine,
    capture_filter: CaptureFilter,
    *,
    policy: str = "latest_approved",
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[DuplicateGroup], int]:
    """Prompts the filter selects more than once, largest first, and how many there are."""
    check_policy(policy)
    with session_scope(engine) as session:
        rows, total = duplicate_groups(capture_filter, session=session, limit=limit, offset=offset)
        members = duplicate_group_members(
            capture_filter, [r.prompt_hash for r in rows], session=session
        )
    ranked = rank_groups(members, policy)
    groups = [
        DuplicateGroup(row.prompt_hash, row.size, [m.id for m in ranked[row.prompt_hash]])
        for row in rows
    ]
    return groups, total
