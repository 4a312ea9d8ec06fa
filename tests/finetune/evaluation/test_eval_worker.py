"""Evaluations that survive their runner: a resumed run scores only the examples no earlier run
stored and summarises them all; a runner that lost its lease writes nothing; of two runners
started together one runs and the other follows; the worker runs pending evaluations, resumes
abandoned ones, fails those that keep crashing, records a failing one with its reason, and
hands its work back when it stops; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from finetune import (
    EvaluationLease,
    EvaluationWorker,
    create_evaluations,
    delete_dataset,
    require_evaluation,
    run_evaluation,
)
from storage import (
    Evaluation,
    claim_evaluation,
    insert_evaluation_results,
    read_examples_page,
    session_scope,
    update_evaluation,
)
from tests.finetune._eval_helpers import (
    JUDGE,
    FakeUpstream,
    clean_evaluations,  # noqa: F401  used as a fixture
    make_dataset,
    questions,
    said,
)

pytestmark = pytest.mark.usefixtures("clean_evaluations")

LONG_AGO = datetime.now(UTC) - timedelta(hours=2)


def _upstream(count: int, *, delay: float = 0.0) -> FakeUpstream:
    return FakeUpstream(answers={f"q{n}": said(f"a{n}") for n in range(1, count + 1)}, delay=delay)


def _new_evaluation(engine: Engine, dataset_id: str) -> Evaluation:
    return create_evaluations(engine, dataset_id, "student", judge_model=JUDGE)[0]


def _crashed_run(engine: Engine, evaluation: Evaluation, scored: int) -> list[str]:
    """As a runner leaves an evaluation when it is killed after storing the first ``scored``
    results: running, under a lease long run out. Returns the questions it scored."""
    with session_scope(engine) as session:
        assert claim_evaluation(
            evaluation.id, session=session, owner="killed", now=LONG_AGO, lease_seconds=60
        )
        page = read_examples_page(evaluation.dataset_id, "test", session=session)[:scored]
        insert_evaluation_results(
            [
                {
                    "evaluation_id": evaluation.id,
                    "position": row.position,
                    "capture_id": row.capture_id,
                    "prompt_hash": row.prompt_hash,
                    "teacher_answer": row.example["messages"][-1],
                    "candidate_answer": {"role": "assistant", "content": "first run"},
                    "checks": {},
                    "rubric_score": 1,
                    "pairwise_outcome": "loss",
                }
                for row in page
            ],
            session=session,
        )
    return [str(row.example["messages"][0]["content"]) for row in page]


def _result_positions(engine: Engine, evaluation_id: str) -> list[int]:
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT position FROM evaluation_results WHERE evaluation_id = :id"),
            {"id": evaluation_id},
        ).all()
    return sorted(row[0] for row in rows)


async def _eventually(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (it reads the database, so off the loop) until it holds."""
    async with asyncio.timeout(30):
        while True:
            if await asyncio.to_thread(predicate):
                return
            await asyncio.sleep(0.05)


def _state(engine: Engine, evaluation_id: str) -> str:
    return require_evaluation(engine, evaluation_id).state


async def test_a_resumed_run_scores_only_the_missing_examples_and_summarises_all(
    engine: Engine,
) -> None:
    dataset_id = make_dataset(engine, questions(5))
    evaluation = _new_evaluation(engine, dataset_id)
    scored_before = _crashed_run(engine, evaluation, scored=2)
    upstream = _upstream(5)

    done = await run_evaluation(engine, upstream.client(), evaluation.id)

    assert done.state == "succeeded"
    asked = sorted(body["messages"][-1]["content"] for body in upstream.asked("student"))
    assert asked == sorted({"q1", "q2", "q3", "q4", "q5"} - set(scored_before))
    assert len(_result_positions(engine, evaluation.id)) == 5
    # The summary covers the first run's results and the resumed run's alike.
    assert done.summary["examples"] == 5
    assert done.summary["rubric"]["histogram"] == {"1": 2, "2": 0, "3": 0, "4": 0, "5": 3}
    assert done.summary["pairwise"]["losses"] == 2
    assert (done.progress, done.total, done.attempts) == (5, 5, 2)
    assert done.lease_until is None


async def test_a_runner_that_lost_its_lease_stops_and_writes_nothing(engine: Engine) -> None:
    dataset_id = make_dataset(engine, questions(3))
    evaluation = _new_evaluation(engine, dataset_id)
    lease = EvaluationLease(owner="stalled", seconds=0.3)

    def steal() -> None:
        # What a takeover after the lease ran out leaves behind.
        with session_scope(engine) as session:
            update_evaluation(evaluation.id, session=session, lease_owner="resumer")

    async def steal_once_running() -> None:
        await _eventually(lambda: _state(engine, evaluation.id) == "running")
        await asyncio.to_thread(steal)

    _, returned = await asyncio.gather(
        steal_once_running(),
        run_evaluation(engine, _upstream(3, delay=1.0).client(), evaluation.id, lease=lease),
    )

    assert (returned.state, returned.lease_owner) == ("running", "resumer")
    assert _result_positions(engine, evaluation.id) == []
    assert returned.progress == 0


async def test_of_two_runners_started_together_one_runs_and_the_other_follows(
    engine: Engine,
) -> None:
    dataset_id = make_dataset(engine, questions(3))
    evaluation = _new_evaluation(engine, dataset_id)
    upstream = _upstream(3, delay=0.05)
    seen: list[list[tuple[int, int]]] = [[], []]

    def run(n: int) -> Awaitable[Evaluation]:
        return run_evaluation(
            engine,
            upstream.client(),
            evaluation.id,
            lease=EvaluationLease(owner=f"runner-{n}"),
            progress=lambda done, total: seen[n].append((done, total)),
            poll_seconds=0.05,
        )

    first, second = await asyncio.gather(run(0), run(1))

    assert (first.state, second.state) == ("succeeded", "succeeded")
    assert first.lease_owner == second.lease_owner
    assert first.attempts == 1
    # Each question was asked once, by whichever runner won the claim.
    assert sorted(body["messages"][-1]["content"] for body in upstream.asked("student")) == [
        "q1",
        "q2",
        "q3",
    ]
    assert len(_result_positions(engine, evaluation.id)) == 3
    ran = seen[0] if first.lease_owner == "runner-0" else seen[1]
    assert ran == [(1, 3), (2, 3), (3, 3)]


@pytest.fixture
async def worker(engine: Engine) -> AsyncIterator[Callable[[FakeUpstream], EvaluationWorker]]:
    started: list[EvaluationWorker] = []

    def start(upstream: FakeUpstream) -> EvaluationWorker:
        found = EvaluationWorker(
            engine,
            upstream.client,
            poll_seconds=0.05,
            lease=EvaluationLease(owner="worker", seconds=5),
        )
        started.append(found)
        return found

    yield start
    for found in started:
        await found.stop()


async def test_the_worker_runs_pending_evaluations_and_resumes_abandoned_ones(
    engine: Engine, worker: Callable[[FakeUpstream], EvaluationWorker]
) -> None:
    dataset_id = make_dataset(engine, questions(4))
    fresh = _new_evaluation(engine, dataset_id)
    abandoned = _new_evaluation(engine, dataset_id)
    scored_before = _crashed_run(engine, abandoned, scored=3)
    upstream = _upstream(4)
    await worker(upstream).start()

    await _eventually(lambda: _state(engine, fresh.id) == "succeeded")
    await _eventually(lambda: _state(engine, abandoned.id) == "succeeded")

    assert len(_result_positions(engine, fresh.id)) == 4
    assert len(_result_positions(engine, abandoned.id)) == 4
    resumed = require_evaluation(engine, abandoned.id)
    assert (resumed.attempts, resumed.lease_owner, resumed.summary["examples"]) == (2, "worker", 4)
    # Four questions for the fresh run, one (the one left) for the resumed run.
    asked = sorted(body["messages"][-1]["content"] for body in upstream.asked("student"))
    missing = sorted({"q1", "q2", "q3", "q4"} - set(scored_before))
    assert asked == sorted(["q1", "q2", "q3", "q4", *missing])


async def test_the_worker_fails_an_evaluation_after_three_crashed_attempts(
    engine: Engine, worker: Callable[[FakeUpstream], EvaluationWorker]
) -> None:
    dataset_id = make_dataset(engine, questions(2))
    evaluation = _new_evaluation(engine, dataset_id)
    _crashed_run(engine, evaluation, scored=1)
    with session_scope(engine) as session:
        update_evaluation(evaluation.id, session=session, attempts=3)
    upstream = _upstream(2)
    await worker(upstream).start()

    await _eventually(lambda: _state(engine, evaluation.id) == "failed")

    found = require_evaluation(engine, evaluation.id)
    assert found.error is not None
    assert "gave up after 3 attempts" in found.error
    assert upstream.requests == []


async def test_a_failing_evaluation_is_recorded_failed_with_its_reason(
    engine: Engine, worker: Callable[[FakeUpstream], EvaluationWorker]
) -> None:
    dataset_id = make_dataset(engine, questions(2))
    evaluation = _new_evaluation(engine, dataset_id)
    delete_dataset(engine, dataset_id)
    running = worker(_upstream(2))
    await running.start()

    await _eventually(lambda: _state(engine, evaluation.id) == "failed")

    found = require_evaluation(engine, evaluation.id)
    assert found.error == f"Dataset '{dataset_id}' has no test examples (any more)."
    assert (found.attempts, found.lease_until) == (1, None)
    # Failed is final: later rounds leave it alone.
    rounds = running.rounds
    await _eventually(lambda: running.rounds > rounds + 2)
    assert require_evaluation(engine, evaluation.id).attempts == 1


async def test_stopping_the_worker_hands_its_evaluations_back_as_pending(
    engine: Engine, worker: Callable[[FakeUpstream], EvaluationWorker]
) -> None:
    dataset_id = make_dataset(engine, questions(3))
    evaluation = _new_evaluation(engine, dataset_id)
    running = worker(_upstream(3, delay=30.0))
    await running.start()
    await _eventually(lambda: running.running == [evaluation.id])

    await running.stop()

    found = require_evaluation(engine, evaluation.id)
    assert (found.state, found.attempts, found.lease_until) == ("pending", 0, None)
    assert _result_positions(engine, evaluation.id) == []


async def test_a_nudge_starts_a_new_evaluation_before_the_next_poll(
    engine: Engine,
) -> None:
    dataset_id = make_dataset(engine, questions(1))
    found = EvaluationWorker(engine, _upstream(1).client, poll_seconds=3600)
    await found.start()
    try:
        await _eventually(lambda: found.rounds == 1)
        evaluation = _new_evaluation(engine, dataset_id)
        found.nudge()
        await _eventually(lambda: _state(engine, evaluation.id) == "succeeded")
    finally:
        await found.stop()


async def test_a_student_on_an_upstream_of_its_own_is_asked_there_and_judged_here(
    engine: Engine,
) -> None:
    """A self-hosted student: the evaluation's config names its upstream, which knows the
    student by another name (``transformers serve`` by the merged folder's path)."""
    dataset_id = make_dataset(engine, questions(3))
    evaluation = create_evaluations(
        engine, dataset_id, "ft:tiny:local:s:job-1", judge_model=JUDGE, config={"upstream": "gpu"}
    )[0]
    here = FakeUpstream()
    served = FakeUpstream(answers={f"q{n}": said(f"a{n}") for n in range(1, 4)})
    worker = EvaluationWorker(
        engine,
        here.client,
        poll_seconds=0.05,
        lease=EvaluationLease(owner="worker", seconds=5),
        upstream_client=lambda name: served.client() if name == "gpu" else None,
        upstream_model=lambda upstream, model: f"/jobs/{upstream}/merged",
    )
    await worker.start()
    try:
        await _eventually(lambda: _state(engine, evaluation.id) == "succeeded")
    finally:
        await worker.stop()
    assert len(served.asked("/jobs/gpu/merged")) == 3
    assert len(here.asked(JUDGE)) == 6  # a rubric and a pairwise verdict per example
    assert [body["model"] for _, body in served.requests] == ["/jobs/gpu/merged"] * 3
    assert here.asked("ft:tiny:local:s:job-1") == []
