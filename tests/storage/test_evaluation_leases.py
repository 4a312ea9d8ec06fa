"""Evaluation leases in the store: a claim is one atomic update, a live lease is never taken
over and an expired one is, writes are fenced by the lease, a result is never stored twice,
and evaluations whose runners keep dying end failed; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from storage import (
    Evaluation,
    claim_evaluation,
    claimable_evaluation_ids,
    fail_abandoned_evaluations,
    finish_held_evaluation,
    get_evaluation,
    insert_evaluation,
    insert_evaluation_results,
    make_engine,
    new_evaluation_id,
    refresh_evaluation_progress,
    release_evaluation,
    renew_evaluation_lease,
    session_scope,
    stored_positions,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = 60.0


def _evaluation(engine: Engine, **values: Any) -> str:
    evaluation = Evaluation(
        id=new_evaluation_id(), dataset_id="ds_x", model="student", judge_model="judge", **values
    )
    with session_scope(engine) as session:
        insert_evaluation(evaluation, session=session)
    return evaluation.id


def _claim(engine: Engine, evaluation_id: str, owner: str, now: datetime = NOW) -> bool:
    with session_scope(engine) as session:
        return claim_evaluation(
            evaluation_id, session=session, owner=owner, now=now, lease_seconds=LEASE
        )


def _read(engine: Engine, evaluation_id: str) -> Evaluation:
    with session_scope(engine) as session:
        found = get_evaluation(evaluation_id, session=session)
    assert found is not None
    return found


def _result(evaluation_id: str, position: int, score: int) -> dict[str, Any]:
    return {
        "evaluation_id": evaluation_id,
        "position": position,
        "capture_id": f"cap_{position}",
        "prompt_hash": "h",
        "teacher_answer": {"role": "assistant", "content": "t"},
        "checks": {},
        "rubric_score": score,
    }


def test_a_pending_evaluation_is_claimed_once_under_concurrent_claimers(
    database_url: str,
) -> None:
    engines = [make_engine(database_url) for _ in range(4)]
    try:
        evaluation_id = _evaluation(engines[0])
        start = threading.Barrier(len(engines))

        def claim(index: int) -> bool:
            start.wait()
            return _claim(engines[index], evaluation_id, f"runner-{index}")

        with ThreadPoolExecutor(len(engines)) as pool:
            won = list(pool.map(claim, range(len(engines))))
        assert won.count(True) == 1
        found = _read(engines[0], evaluation_id)
        assert found.lease_owner == f"runner-{won.index(True)}"
        assert (found.state, found.attempts) == ("running", 1)
        assert found.lease_until is not None
        assert found.lease_until.replace(tzinfo=UTC) == NOW + timedelta(seconds=LEASE)
    finally:
        for engine in engines:
            engine.dispose()


def test_a_live_lease_is_not_taken_over(engine: Engine) -> None:
    evaluation_id = _evaluation(engine)
    assert _claim(engine, evaluation_id, "first")
    assert not _claim(engine, evaluation_id, "second", now=NOW + timedelta(seconds=LEASE - 1))
    with session_scope(engine) as session:
        assert claimable_evaluation_ids(session=session, now=NOW + timedelta(seconds=30)) == []
    assert _read(engine, evaluation_id).lease_owner == "first"


def test_an_expired_lease_is_taken_over_and_counts_an_attempt(engine: Engine) -> None:
    evaluation_id = _evaluation(engine)
    assert _claim(engine, evaluation_id, "crashed")
    later = NOW + timedelta(seconds=LEASE + 1)
    with session_scope(engine) as session:
        assert claimable_evaluation_ids(session=session, now=later) == [evaluation_id]
    assert _claim(engine, evaluation_id, "resumer", now=later)
    found = _read(engine, evaluation_id)
    assert (found.lease_owner, found.attempts, found.state) == ("resumer", 2, "running")
    # The first start is kept: the evaluation has been under way since then.
    assert found.started_at is not None
    assert found.started_at.replace(tzinfo=UTC) == NOW


def test_a_running_evaluation_without_a_lease_is_claimable(engine: Engine) -> None:
    # As an older version left it when its process died.
    evaluation_id = _evaluation(engine, state="running")
    assert _claim(engine, evaluation_id, "resumer")
    assert _read(engine, evaluation_id).lease_owner == "resumer"


def test_finished_evaluations_are_never_claimed(engine: Engine) -> None:
    done = _evaluation(engine, state="succeeded")
    failed = _evaluation(engine, state="failed")
    assert not _claim(engine, done, "runner")
    assert not _claim(engine, failed, "runner")


def test_writes_of_a_runner_that_lost_its_lease_change_nothing(engine: Engine) -> None:
    evaluation_id = _evaluation(engine)
    assert _claim(engine, evaluation_id, "stalled")
    assert _claim(engine, evaluation_id, "resumer", now=NOW + timedelta(seconds=LEASE + 1))
    with session_scope(engine) as session:
        assert not renew_evaluation_lease(
            evaluation_id, session=session, owner="stalled", now=NOW, lease_seconds=LEASE
        )
        assert not finish_held_evaluation(
            evaluation_id, session=session, owner="stalled", state="failed", error="late"
        )
        assert not release_evaluation(evaluation_id, session=session, owner="stalled")
    found = _read(engine, evaluation_id)
    assert (found.state, found.error, found.lease_owner) == ("running", None, "resumer")
    with session_scope(engine) as session:
        assert finish_held_evaluation(
            evaluation_id, session=session, owner="resumer", state="succeeded"
        )
    found = _read(engine, evaluation_id)
    assert (found.state, found.lease_until) == ("succeeded", None)


def test_a_result_is_never_stored_twice(engine: Engine) -> None:
    evaluation_id = _evaluation(engine)
    with session_scope(engine) as session:
        insert_evaluation_results([_result(evaluation_id, 0, 5)], session=session)
    # An overlapping runner scored position 0 again, and position 1.
    with session_scope(engine) as session:
        insert_evaluation_results(
            [_result(evaluation_id, 0, 1), _result(evaluation_id, 1, 4)], session=session
        )
        assert stored_positions(evaluation_id, session=session) == {0, 1}
        assert refresh_evaluation_progress(evaluation_id, session=session, total=3) == 2
    with engine.connect() as connection:
        scores = connection.exec_driver_sql(
            "SELECT position, rubric_score FROM evaluation_results ORDER BY position"
        ).all()
    assert [tuple(row) for row in scores] == [(0, 5), (1, 4)]
    found = _read(engine, evaluation_id)
    assert (found.progress, found.total) == (2, 3)


def test_release_hands_the_evaluation_back_as_pending_without_counting_an_attempt(
    engine: Engine,
) -> None:
    evaluation_id = _evaluation(engine)
    assert _claim(engine, evaluation_id, "stopping")
    with session_scope(engine) as session:
        assert release_evaluation(evaluation_id, session=session, owner="stopping")
    found = _read(engine, evaluation_id)
    assert (found.state, found.attempts, found.lease_until) == ("pending", 0, None)
    assert _claim(engine, evaluation_id, "next", now=NOW + timedelta(seconds=1))


def test_evaluations_whose_runners_keep_dying_end_failed_with_the_reason(
    engine: Engine,
) -> None:
    evaluation_id = _evaluation(engine)
    alive = _evaluation(engine)
    moment = NOW
    for attempt in range(3):
        assert _claim(engine, evaluation_id, f"crash-{attempt}", now=moment)
        moment += timedelta(seconds=LEASE + 1)
    assert _claim(engine, alive, "alive", now=moment)
    with session_scope(engine) as session:
        # The third lease has run out: no fourth attempt.
        assert claimable_evaluation_ids(session=session, now=moment) == []
        assert fail_abandoned_evaluations(session=session, now=moment) == [evaluation_id]
    found = _read(engine, evaluation_id)
    assert (found.state, found.attempts) == ("failed", 3)
    assert found.error is not None
    assert "gave up after 3 attempts" in found.error
    assert _read(engine, alive).state == "running"
