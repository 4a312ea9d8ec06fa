"""Dataset data access, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from storage import (
    CaptureFilter,
    Dataset,
    answers_for_prompts,
    contested_prompts,
    delete_dataset,
    duplicate_group_members,
    duplicate_groups,
    get_dataset,
    insert_dataset,
    insert_dataset_examples,
    list_datasets,
    new_dataset_id,
    newest_corrections,
    newest_edits,
    next_dataset_version,
    read_examples_page,
    select_dataset_candidates,
    session_scope,
)
from tests.finetune._dataset_helpers import (
    add_edit,
    add_feedback,
    answer,
    capture,
    question,
    store,
)

ASK = [{"role": "user", "content": "Reset my password"}]


def _dataset(engine: Engine, name: str = "d") -> Dataset:
    with session_scope(engine) as session:
        version = next_dataset_version(name, session=session)
        return insert_dataset(
            Dataset(
                id=new_dataset_id(),
                name=name,
                version=version,
                filter={},
                split={"train": 1.0, "validation": 0.0, "test": 0.0},
            ),
            session=session,
        )


def _example(dataset_id: str, n: int, split: str, example: Any) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "capture_id": f"cap_{n:020d}",
        "position": n,
        "split": split,
        "prompt_hash": f"{n:064x}",
        "example": example,
    }


def test_candidates_are_light_rows_of_the_selection_oldest_first(engine: Engine) -> None:
    store(engine, [question(2), question(1), question(3) | {"review_status": "pending"}])
    with session_scope(engine) as session:
        rows = select_dataset_candidates(CaptureFilter(status=["approved"]), session=session)
    assert [row.id for row in rows] == [question(1)["id"], question(2)["id"]]
    assert set(rows[0]._fields) == {
        "id", "created_at", "status_code", "error_kind", "abandoned", "error",
        "review_status", "rating", "prompt_hash",
    }  # fmt: skip


def test_examples_keep_their_json_exactly_and_page_by_position(engine: Engine) -> None:
    dataset = _dataset(engine)
    awkward = {"messages": [{"role": "user", "content": 'tab\t, "quote", back\\slash,\nnew ☃'}]}
    rows = [
        _example(dataset.id, n, "train" if n % 2 else "test", awkward | {"n": n}) for n in range(7)
    ]
    with session_scope(engine) as session:
        insert_dataset_examples(rows, session=session)
    with session_scope(engine) as session:
        first = read_examples_page(dataset.id, "train", session=session, limit=2)
        rest = read_examples_page(
            dataset.id, "train", session=session, after_position=first[-1].position
        )
        test = read_examples_page(dataset.id, "test", session=session)
    assert [row.position for row in first + rest] == [1, 3, 5]
    assert [row.position for row in test] == [0, 2, 4, 6]
    assert first[0].example == awkward | {"n": 1}
    assert test[0].prompt_hash == f"{0:064x}"


def test_versions_count_per_name_and_delete_takes_only_its_examples(engine: Engine) -> None:
    first, second, other = _dataset(engine, "a"), _dataset(engine, "a"), _dataset(engine, "b")
    assert (first.version, second.version, other.version) == (1, 2, 1)
    with session_scope(engine) as session:
        insert_dataset_examples([_example(first.id, 1, "train", {})], session=session)
        insert_dataset_examples([_example(second.id, 1, "train", {})], session=session)
    with session_scope(engine) as session:
        found = get_dataset(first.id, session=session)
        assert found is not None
        delete_dataset(found, session=session)
    with session_scope(engine) as session:
        assert [d.id for d in list_datasets(session=session)] == [other.id, second.id]
        assert [d.id for d in list_datasets(session=session, name="a")] == [second.id]
        assert read_examples_page(first.id, "train", session=session) == []
        assert len(read_examples_page(second.id, "train", session=session)) == 1


def test_duplicate_groups_count_and_order_by_size(engine: Engine) -> None:
    hi = [{"role": "user", "content": "Hi"}]
    store(
        engine,
        [
            *(capture(n, ASK, answer(str(n))) for n in (1, 2, 3)),
            capture(4, hi, answer("Hello")),
            capture(5, hi, answer("Hey")),
            question(6),
        ],
    )
    everything = CaptureFilter()
    with session_scope(engine) as session:
        groups, total = duplicate_groups(everything, session=session)
        members = duplicate_group_members(everything, [groups[1].prompt_hash], session=session)
        page, _ = duplicate_groups(everything, session=session, limit=1, offset=1)
    assert total == 2
    assert [row.size for row in groups] == [3, 2]
    assert [row.id for row in members] == [f"cap_{4:020d}", f"cap_{5:020d}"]
    assert [row.prompt_hash for row in page] == [groups[1].prompt_hash]


def test_edits_corrections_and_feedback_lookups(engine: Engine) -> None:
    first, second, third = (capture(n, ASK, answer(f"answer {n}")) for n in (1, 2, 3))
    store(
        engine,
        [
            first | {"feedback": "positive"},
            second | {"feedback": "negative", "review_status": "rejected"},
            third | {"status_code": 500},
            question(4) | {"feedback": "positive"},
        ],
    )
    add_edit(engine, first["id"], answer("older edit"))
    add_edit(engine, first["id"], answer("newest edit"))
    add_feedback(engine, second["id"], thumbs=-1, corrected=answer("corrected"))
    with session_scope(engine) as session:
        ids = [first["id"], second["id"]]
        assert newest_edits(ids, session=session) == {first["id"]: answer("newest edit")}
        assert newest_corrections(ids, session=session) == {second["id"]: answer("corrected")}
        assert contested_prompts(session=session) == {first["prompt_hash"]}
        unrejected = answers_for_prompts([first["prompt_hash"]], session=session)
        voted = answers_for_prompts(
            [first["prompt_hash"]],
            session=session,
            feedback=["negative"],
            include_rejected=True,
        )
    assert [(row.id, bool(row.edited)) for row in unrejected] == [(first["id"], True)]
    assert [row.id for row in voted] == [second["id"]]
    assert voted[0].response["choices"][0]["message"] == answer("answer 2")
