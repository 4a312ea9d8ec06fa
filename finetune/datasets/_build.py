"""One build's books: each batch's result (``_batch``: read here or in worker processes) taken
in the order the batches were given, earlier turns looked up across the build, examples
written per batch; then the threading settled across the whole build.

Batches are read ahead, a few at a time, while this thread keeps the books and writes. On
PostgreSQL a writer thread stores one batch's examples while the next result is taken: the
server does its part (parsing the examples) in its own process meanwhile, and the writer
mostly waits on it. SQLite works inside this process, so there the writes are this thread's.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import Row

from finetune.datasets._batch import BatchResult, InlineExecutor, ReadBatch
from finetune.datasets._build_store import BuildStore
from finetune.datasets._input import SplitRatios
from finetune.datasets._reading import Candidate
from storage import (
    Dataset,
    delete_dataset_examples,
    insert_encoded_dataset_examples,
    load_dataset_examples,
    update_dataset_example,
)

Progress = Callable[[int, int], None]
"""Called with (done, total) as a build settles each prompt."""

_CHUNK = 1000

HELD_EXAMPLES = 5000
"""Examples kept back from the writer, newest last. A conversation's turns arrive close
together, so most earlier turns are known to be one before their example leaves, and are
never written; the few found later are deleted when the build settles."""


class _Collector:
    """The cyclic garbage collector, paused while any build runs in this process.

    A build keeps a few hundred thousand small containers alive (its candidates, its keys, and
    where it reads its batches itself, a batch's bodies and examples), and the collector walked
    all of them, and every other object of the process, each time they grew by a quarter: a
    quarter of a build's time, in pauses of a few hundred milliseconds that every thread of
    the process, the event loop's included, waited out. What a build frees, reference counting
    frees; the collector runs once when the last build ends. (Worker processes turn their own
    off: ``_batch``.)
    """

    lock = threading.Lock()
    builds = 0
    was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    with _Collector.lock:
        if _Collector.builds == 0:
            _Collector.was_enabled = gc.isenabled()
            gc.disable()
        _Collector.builds += 1
    try:
        yield
    finally:
        with _Collector.lock:
            _Collector.builds -= 1
            if _Collector.builds == 0 and _Collector.was_enabled:
                gc.enable()


class Build:
    """The books of one build as its batches' results come in."""

    def __init__(self, store: BuildStore, dataset: Dataset, ratios: SplitRatios) -> None:
        self.store = store
        self.dataset = dataset
        self.ratios = ratios
        self.skipped: Counter[str] = Counter()
        self.sides: dict[str, str] = {}
        self.whole_keys: dict[bytes, list[str]] = defaultdict(list)
        self.turn_keys: set[bytes] = set()
        self.untaught: dict[str, dict[int, bytes]] = {}
        """capture id -> its weight-0 turns (index -> conversation key up to the turn)."""
        self.pairs = 0
        self.held: deque[tuple[bytes | None, dict[str, Any]]] = deque()
        """(whole key, or None when it cannot be an earlier turn; example row) not yet written;
        the example as its JSON text."""
        self.unwritten: set[str] = set()
        """Captures left out as earlier turns before their example was written."""

    def add(self, result: BatchResult) -> list[dict[str, Any]]:
        """Take one batch's result (in the order of the batches); the examples to write."""
        self.skipped.update(result.skipped)
        self.pairs += result.pairs
        for capture_id, whole, edited, turn_keys, untaught, _, _, _ in result.built:
            if not edited:
                # An edited answer is a correction worth its own example, never threaded away.
                self.whole_keys[whole].append(capture_id)
            self.turn_keys.update(turn_keys)
            if untaught:
                self.untaught[capture_id] = untaught
        for capture_id, whole, edited, _, _, split_key, prompt, example in result.built:
            self.sides[capture_id] = side = self.ratios.side(split_key)
            row = {
                "dataset_id": self.dataset.id,
                "capture_id": capture_id,
                "position": len(self.sides) - 1,
                "split": side,
                "prompt_hash": prompt,
                "example": example,
            }
            self.held.append((None if edited else whole, row))
        return self.release(HELD_EXAMPLES)

    def release(self, keep: int = 0) -> list[dict[str, Any]]:
        """The held examples past the newest ``keep``, to write, less the earlier turns."""
        released = []
        while len(self.held) > keep:
            whole, example = self.held.popleft()
            if whole is not None and whole in self.turn_keys:
                self.unwritten.add(example["capture_id"])
            else:
                released.append(example)
        return released

    def write(self, examples: list[dict[str, Any]]) -> None:
        with self.store.writing() as session:
            insert_encoded_dataset_examples(examples, session=session)

    def settle(self) -> tuple[int, int]:
        """Drop captures that are an earlier turn of a longer conversation in the build, and
        lift weight 0 from turns such a capture answered (a client that sent other tools
        with the next turn hides it from the lookup by prompt hash).

        Returns (captures dropped, turns left at weight 0).
        """
        dropped = [
            cid for key, ids in self.whole_keys.items() if key in self.turn_keys for cid in ids
        ]
        written = [cid for cid in dropped if cid not in self.unwritten]
        for start in range(0, len(written), _CHUNK):
            with self.store.writing() as session:
                delete_dataset_examples(
                    self.dataset.id, written[start : start + _CHUNK], session=session
                )
        for capture_id in dropped:
            del self.sides[capture_id]
            self.untaught.pop(capture_id, None)
        lifted = {
            capture_id: [index for index, key in turns.items() if key in self.whole_keys]
            for capture_id, turns in self.untaught.items()
        }
        lifts = [(capture_id, indices) for capture_id, indices in lifted.items() if indices]
        for start in range(0, len(lifts), _CHUNK):
            chunk = dict(lifts[start : start + _CHUNK])
            # The build's own rows: read where they are written (PostgreSQL has not committed).
            with self.store.writing() as session:
                stored = load_dataset_examples(self.dataset.id, chunk, session=session)
                for capture_id, indices in chunk.items():
                    example = stored[capture_id]
                    for index in indices:
                        example["messages"][index].pop("weight", None)
                        del self.untaught[capture_id][index]
                    update_dataset_example(self.dataset.id, capture_id, example, session=session)
        return len(dropped), sum(len(turns) for turns in self.untaught.values())


def _read_ahead(
    read: ReadBatch, batches: list[list[Row[Any]]], depth: int
) -> Iterator[BatchResult]:
    """Each batch's result in order, up to ``depth`` batches being read ahead of the one
    taken."""
    ahead: deque[Callable[[], BatchResult]] = deque()
    for index in range(len(batches)):
        while len(ahead) < depth and index + len(ahead) < len(batches):
            batch = batches[index + len(ahead)]
            ahead.append(read([Candidate(row.id, row.prompt_hash) for row in batch]))
        yield ahead.popleft()()


def build_groups(
    build: Build,
    groups: dict[str, list[Row[Any]]],
    batch_size: int,
    progress: Progress | None,
    read: ReadBatch,
    depth: int = 1,
) -> int:
    """Build one example per group, falling back to the next capture when the best one has no
    usable answer; ``read`` reads a batch, ``depth`` batches at a time. Returns how many
    duplicates were left out."""
    tried = dict.fromkeys(groups, 0)
    group_of = {members[0].id: key for key, members in groups.items()}
    pending = sorted((members[0] for members in groups.values()), key=lambda r: r.id)
    done = 0
    writing: Future[None] | None = None
    with ExitStack() as threads:
        writer: Executor = InlineExecutor()
        if build.store.pipelined:
            writer = threads.enter_context(ThreadPoolExecutor(1, "dataset-write"))
        while pending:
            retry: list[Row[Any]] = []
            batches = [pending[at : at + batch_size] for at in range(0, len(pending), batch_size)]
            for batch, result in zip(batches, _read_ahead(read, batches, depth), strict=True):
                for row in batch:
                    tried[group_of[row.id]] += 1
                examples = build.add(result)
                # One batch in the writer at a time: writes keep their order, memory its bound.
                if writing is not None:
                    writing.result()
                writing = writer.submit(build.write, examples)
                failed = set(result.failed)
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
        if writing is not None:
            writing.result()
        build.write(build.release())
    # A group that found its example leaves the rest out; one that ran out tried them all.
    return sum(len(groups[key]) - count for key, count in tried.items())
