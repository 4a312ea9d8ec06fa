"""Datasets: frozen, versioned snapshots of curated captures, split by a stable prompt hash.

A build reads the selection's light columns, skips what failed, keeps one capture per prompt
(the duplicate policy), then loads bodies in batches, builds each example and writes it in the
same transaction: a dataset appears whole or not at all.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finetune.datasets._export import freeze_preferences, require_dataset
from finetune.datasets._input import (
    SPLITS,
    DatasetConflict,
    SplitRatios,
    check_name,
    check_policy,
    not_found,
)
from finetune.datasets._prompt import prompt_hash
from finetune.datasets._response_threads import thread_request
from finetune.datasets._responses import is_responses_exchange
from finetune.datasets._threading import (
    answer_message,
    assistant_turn_prompts,
    build_example,
    clean_message,
    mark_untaught,
    normalise_turn,
    split_key,
    thread_keys,
    without_empty_turns,
)
from storage import (
    CaptureFilter,
    Dataset,
    answers_for_prompts,
    contested_prompts,
    delete_dataset_examples,
    duplicate_group_members,
    duplicate_groups,
    insert_dataset,
    insert_dataset_examples,
    load_capture_bodies,
    load_dataset_examples,
    new_dataset_id,
    newest_corrections,
    newest_edits,
    next_dataset_version,
    select_dataset_candidates,
    session_scope,
    update_dataset_example,
)
from storage import delete_dataset as delete_dataset_row
from storage import get_dataset as get_dataset_row
from storage import list_datasets as list_dataset_rows

Progress = Callable[[int, int], None]
"""Called with (done, total) as a build settles each prompt."""


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
        members.sort(key=rank, reverse=True)
    return groups


_Built = tuple[Row[Any], dict[str, Any], dict[str, Any], dict[str, Any]]
"""(candidate row, request, original answer, example) of one capture in a batch."""


class _Build:
    """The state of one build inside its transaction."""

    def __init__(self, session: Session, dataset: Dataset, ratios: SplitRatios) -> None:
        self.session = session
        self.dataset = dataset
        self.ratios = ratios
        self.skipped: Counter[str] = Counter()
        self.sides: dict[str, str] = {}
        self.whole_keys: dict[bytes, list[str]] = defaultdict(list)
        self.turn_keys: set[bytes] = set()
        self.untaught: dict[str, dict[int, bytes]] = {}
        """capture id -> its weight-0 turns (index -> conversation key up to the turn)."""
        self.pairs = 0
        self.contested = contested_prompts(session=session)

    def add(self, batch: list[Row[Any]]) -> list[Row[Any]]:
        """Build and write the examples of ``batch``; returns the captures that failed."""
        ids = [row.id for row in batch]
        bodies = load_capture_bodies(ids, session=self.session)
        edits = newest_edits(ids, session=self.session)
        failed: list[Row[Any]] = []
        built: list[_Built] = []
        for row in batch:
            request, response = bodies.get(row.id, (None, None))
            if is_responses_exchange(request, response):
                request = thread_request(request, session=self.session)
            edit = edits.get(row.id)
            final = clean_message({**edit, "role": "assistant"}) if edit is not None else None
            answer, reason = answer_message(response)
            # A reviewer's edit can stand in for an answer the teacher did not give.
            answer = answer or final
            messages = request.get("messages") if isinstance(request, dict) else None
            if not isinstance(messages, list) or not messages:
                answer, reason = None, "no_messages"
            if answer is None:
                self.skipped[reason or "no_answer"] += 1
                failed.append(row)
                continue
            request = without_empty_turns(request)
            built.append((row, request, answer, build_example(request, final or answer)))
        self._mark_untaught(built, edits)
        corrections = newest_corrections([r.id for r, *_ in built], session=self.session)
        self.pairs += freeze_preferences(
            built, edits, corrections, self.contested, session=self.session
        )
        examples = []
        for row, request, _, example in built:
            side = self.ratios.side(split_key(request, row.prompt_hash))
            self.sides[row.id] = side
            examples.append(
                {
                    "dataset_id": self.dataset.id,
                    "capture_id": row.id,
                    "position": len(self.sides) - 1,
                    "split": side,
                    "prompt_hash": row.prompt_hash or prompt_hash(request),
                    "example": example,
                }
            )
        insert_dataset_examples(examples, session=self.session)
        return failed

    def _mark_untaught(self, built: list[_Built], edits: Mapping[str, Any]) -> None:
        """Weight 0 on assistant turns no capture in the store answered (as far as a lookup
        by prompt hash finds; ``settle`` looks again within the build)."""
        wanted = {row.id: assistant_turn_prompts(request) for row, request, _, _ in built}
        hashes = {h for turns in wanted.values() for _, h in turns}
        taught: dict[str, list[Any]] = defaultdict(list)
        for found in answers_for_prompts(hashes, session=self.session):
            answer, _ = answer_message(found.response)
            if answer is not None and not found.edited:
                taught[found.prompt_hash].append(normalise_turn(answer))
        for row, request, answer, example in built:
            whole, turns = thread_keys(request, answer)
            if row.id not in edits:
                # An edited answer is a correction worth its own example, never threaded away.
                self.whole_keys[whole].append(row.id)
            self.turn_keys.update(turns.values())
            untaught = [
                index
                for index, prompt in wanted[row.id]
                if normalise_turn(example["messages"][index]) not in taught[prompt]
            ]
            if untaught:
                mark_untaught(example, untaught)
                self.untaught[row.id] = {index: turns[index] for index in untaught}

    def settle(self) -> tuple[int, int]:
        """Drop captures that are an earlier turn of a longer conversation in the build, and
        lift weight 0 from turns such a capture answered (a client that sent other tools
        with the next turn hides it from the lookup by prompt hash).

        Returns (captures dropped, turns left at weight 0).
        """
        dropped = [
            cid for key, ids in self.whole_keys.items() if key in self.turn_keys for cid in ids
        ]
        delete_dataset_examples(self.dataset.id, dropped, session=self.session)
        for capture_id in dropped:
            del self.sides[capture_id]
            self.untaught.pop(capture_id, None)
        lifted = {
            capture_id: [index for index, key in turns.items() if key in self.whole_keys]
            for capture_id, turns in self.untaught.items()
        }
        lifts = [(capture_id, indices) for capture_id, indices in lifted.items() if indices]
        for start in range(0, len(lifts), 1000):
            chunk = dict(lifts[start : start + 1000])
            stored = load_dataset_examples(self.dataset.id, chunk, session=self.session)
            for capture_id, indices in chunk.items():
                example = stored[capture_id]
                for index in indices:
                    example["messages"][index].pop("weight", None)
                    del self.untaught[capture_id][index]
                update_dataset_example(self.dataset.id, capture_id, example, session=self.session)
        return len(dropped), sum(len(turns) for turns in self.untaught.values())


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
) -> Dataset:
    """Freeze the captures ``capture_filter`` selects into the next version of ``name``."""
    check_name(name)
    check_policy(dedupe)
    ratios = ratios or SplitRatios()
    try:
        with session_scope(engine) as session:
            rows = select_dataset_candidates(capture_filter, session=session)
            skipped_early: Counter[str] = Counter()
            answered = []
            for row in rows:
                reason = _light_skip(row)
                if reason is None:
                    answered.append(row)
                else:
                    skipped_early[reason] += 1
            groups = rank_groups(answered, dedupe)
            dataset = insert_dataset(
                Dataset(
                    id=new_dataset_id(),
                    name=name,
                    version=next_dataset_version(name, session=session),
                    filter=capture_filter.model_dump(mode="json", exclude_none=True),
                    split=ratios.as_dict(),
                ),
                session=session,
            )
            build = _Build(session, dataset, ratios)
            build.skipped.update(skipped_early)
            duplicates = _build_groups(build, groups, batch_size, progress)
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
            session.add(dataset)
            session.flush()
    except IntegrityError:
        raise DatasetConflict(
            f"Another build of '{name}' took the same version at the same time; try again.",
            param="name",
            code="conflict",
        ) from None
    return dataset


def _build_groups(
    build: _Build, groups: dict[str, list[Row[Any]]], batch_size: int, progress: Progress | None
) -> int:
    """Build one example per group, falling back to the next capture when the best one has no
    usable answer. Returns how many duplicates were left out."""
    tried = dict.fromkeys(groups, 0)
    group_of = {members[0].id: key for key, members in groups.items()}
    pending = sorted((members[0] for members in groups.values()), key=lambda r: r.id)
    done = 0
    while pending:
        retry: list[Row[Any]] = []
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            for row in batch:
                tried[group_of[row.id]] += 1
            failed = {row.id for row in build.add(batch)}
            for row in batch:
                key = group_of[row.id]
                if row.id in failed and tried[key] < len(groups[key]):
                    following = groups[key][tried[key]]
                    group_of[following.id] = key
                    retry.append(following)
                else:
                    done += 1
            if progress is not None:
                progress(done, len(groups))
        pending = retry
    # A group that found its example leaves the rest out; one that ran out tried them all.
    return sum(len(groups[key]) - count for key, count in tried.items())


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
