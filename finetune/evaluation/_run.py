"""Running an evaluation to its end, resumably: claimed under a lease (``finetune.evaluation._lease``),
results stored per example as they come, and a run that resumes after a crash scores only the
examples that have no result yet; the summary at the end covers them all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from typing import Any

import openai
from sqlalchemy import Engine

from finetune.evaluation._evaluate import (
    EvaluationProgress,
    RunOptions,
    UpstreamCaller,
    load_test_split,
    score_example,
)
from finetune.evaluation._judge import Position
from finetune.evaluation._lease import (
    EvaluationLease,
    LeaseKeeper,
    LeaseLost,
    begin_scoring,
    fail,
    finish,
    release,
    try_claim,
    write_results,
)
from finetune.evaluation._report import InvalidEvaluationRequest, require_evaluation
from storage import Evaluation

log = logging.getLogger("stillroom.evals")

_WRITE_BATCH = 50
_WRITE_SECONDS = 1.0
_ENDED = ("succeeded", "failed")


async def run_evaluation(
    engine: Engine,
    client: openai.AsyncOpenAI,
    evaluation_id: str,
    *,
    progress: EvaluationProgress | None = None,
    caller: UpstreamCaller | None = None,
    lease: EvaluationLease | None = None,
    poll_seconds: float = 1.0,
) -> Evaluation:
    """Run an evaluation to its end, with the options recorded when it was created, and return
    it. Claimed here when it is pending (or left running by a runner that died); while another
    runner holds it, followed until it ends, and taken over should that runner die.
    ``InvalidEvaluationRequest`` when it had ended already.

    ``caller`` lets evaluations run side by side share one concurrency bound.
    """
    lease = lease or EvaluationLease()
    followed = False
    reported = 0
    while True:
        evaluation, claimed = await asyncio.to_thread(try_claim, engine, evaluation_id, lease)
        if claimed:
            return await run_claimed(
                engine, client, evaluation, lease, progress=progress, caller=caller
            )
        if evaluation.state in _ENDED:
            if followed:
                return evaluation
            raise InvalidEvaluationRequest(
                f"Evaluation '{evaluation_id}' is not pending: it ran already.",
                code="evaluation_not_pending",
            )
        followed = True
        if progress is not None and evaluation.total:
            for done in range(reported + 1, evaluation.progress + 1):
                progress(done, evaluation.total)
            reported = max(reported, evaluation.progress)
        await asyncio.sleep(poll_seconds)


async def run_claimed(
    engine: Engine,
    client: openai.AsyncOpenAI,
    evaluation: Evaluation,
    lease: EvaluationLease,
    *,
    progress: EvaluationProgress | None = None,
    caller: UpstreamCaller | None = None,
    served_by: Mapping[str, tuple[openai.AsyncOpenAI, str]] | None = None,
) -> Evaluation:
    """Run an evaluation this runner has claimed with ``lease``: score the examples no earlier
    run stored, then summarise them all.

    It finishes ``succeeded`` or ``failed`` (with the reason). Cancelled (the server stopping),
    it hands the evaluation back as pending for the next runner to resume. When it loses the
    lease it stops, writes nothing more and returns the evaluation as it stands.
    """
    options = RunOptions.from_config(evaluation.config)
    caller = caller or UpstreamCaller(client, options, served_by=served_by)
    try:
        async with LeaseKeeper(engine, evaluation.id, lease) as keeper:
            await _score_missing(engine, caller, evaluation, lease, keeper, progress)
            return await asyncio.to_thread(finish, engine, evaluation.id, lease)
    except LeaseLost:
        log.warning("evaluation %s: lease lost to another runner; stopped", evaluation.id)
        return await asyncio.to_thread(require_evaluation, engine, evaluation.id)
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.to_thread(release, engine, evaluation.id, lease))
        raise
    except Exception as exc:
        await asyncio.shield(asyncio.to_thread(fail, engine, evaluation.id, lease, str(exc)))
        raise


async def _score_missing(
    engine: Engine,
    caller: UpstreamCaller,
    evaluation: Evaluation,
    lease: EvaluationLease,
    keeper: LeaseKeeper,
    progress: EvaluationProgress | None,
) -> None:
    examples = await asyncio.to_thread(load_test_split, engine, evaluation.dataset_id)
    if not examples:
        raise InvalidEvaluationRequest(
            f"Dataset '{evaluation.dataset_id}' has no test examples (any more).",
            code="empty_test_split",
        )
    rng = random.Random(RunOptions.from_config(evaluation.config).seed)
    # Drawn up front in example order, so the seed fixes each example's order whatever order
    # the answers come back in, and whichever run scores it.
    positions: list[Position] = [rng.choice(("A", "B")) for _ in examples]
    stored = await asyncio.to_thread(begin_scoring, engine, evaluation.id, lease, len(examples))
    # Each finished task lands on a queue: waiting on all of them at every turn would cost
    # as much as there are examples, every time one finishes.
    finished: asyncio.Queue[asyncio.Task[dict[str, Any]]] = asyncio.Queue()
    tasks: list[asyncio.Task[dict[str, Any]]] = []
    for example, position in zip(examples, positions, strict=True):
        if example.position not in stored:
            task = asyncio.ensure_future(score_example(caller, evaluation, example, position))
            task.add_done_callback(finished.put_nowait)
            tasks.append(task)
    done = len(examples) - len(tasks)
    unwritten: list[dict[str, Any]] = []
    written_at = time.monotonic()
    try:
        for _ in tasks:
            result = await _next_result(finished, keeper)
            unwritten.append(result)
            done += 1
            if progress is not None:
                progress(done, len(examples))
            # Written often, so a crash loses little work and the progress shown is recent.
            due = time.monotonic() - written_at >= _WRITE_SECONDS
            if len(unwritten) >= _WRITE_BATCH or due:
                await asyncio.to_thread(write_results, engine, evaluation.id, lease, unwritten)
                unwritten, written_at = [], time.monotonic()
        keeper.check()
        await asyncio.to_thread(write_results, engine, evaluation.id, lease, unwritten)
    finally:
        for task in tasks:
            task.cancel()


async def _next_result(
    finished: asyncio.Queue[asyncio.Task[dict[str, Any]]], keeper: LeaseKeeper
) -> dict[str, Any]:
    """The next scored example, checking the lease at least every ``_WRITE_SECONDS`` while
    waiting for it: a runner that lost its lease stops within that time."""
    while True:
        keeper.check()
        try:
            async with asyncio.timeout(_WRITE_SECONDS):
                task = await finished.get()
        except TimeoutError:
            continue
        return task.result()
