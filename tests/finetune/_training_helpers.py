"""Datasets and a clean store for the training tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text

from storage import Dataset, insert_dataset, insert_dataset_examples, new_dataset_id, session_scope

SANDBOX_KEY = "sk-sandbox-not-a-key"


def clear_training(engine: Engine) -> None:
    """The shared PostgreSQL store is not emptied of training rows between tests."""
    with engine.begin() as connection:
        for table in ("training_checkpoints", "training_events", "training_jobs"):
            connection.execute(text(f"DELETE FROM {table}"))


def square_example(n: int, *, preference: bool = False) -> dict[str, Any]:
    """A chat example; with ``preference``, a frozen DPO pair beside it, as builds store them."""
    example: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "You answer arithmetic questions."},
            {"role": "user", "content": f"What is {n} squared?"},
            {"role": "assistant", "content": f"{n * n}"},
        ]
    }
    if preference:
        example["_preference"] = {
            "source": "edit",
            "preferred_output": [{"role": "assistant", "content": f"{n * n}"}],
            "non_preferred_output": [{"role": "assistant", "content": f"{n + n}"}],
        }
    return example


def training_dataset(
    engine: Engine, train: int = 12, validation: int = 2, *, preference: bool = False
) -> str:
    """A frozen dataset of arithmetic examples that passes validation (``train >= 10``)."""
    dataset_id = new_dataset_id()
    sides = ["train"] * train + ["validation"] * validation
    with session_scope(engine) as session:
        insert_dataset(
            Dataset(
                id=dataset_id,
                name=f"squares-{dataset_id[-6:]}",
                version=1,
                filter={},
                split={"train": 0.8, "validation": 0.1, "test": 0.1},
                counts={"total": len(sides)},
            ),
            session=session,
        )
    rows = [
        {
            "dataset_id": dataset_id,
            "capture_id": f"cap_{n:020d}",
            "position": n,
            "split": side,
            "prompt_hash": f"{n:064d}",
            "example": square_example(n, preference=preference),
        }
        for n, side in enumerate(sides)
    ]
    with session_scope(engine) as session:
        insert_dataset_examples(rows, session=session)
    return dataset_id
