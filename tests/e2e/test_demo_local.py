"""``make demo-local`` end to end, for real: a tiny model trained with LoRA by the local backend
on this machine, served by a real ``transformers serve``, evaluated, promoted, and then
answering the alias. Slow (about two minutes on two shared cores): every step runs for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.sandbox.demo_local import run

pytest.importorskip("trl", reason="the train extra is not installed (make install-train)")
pytest.importorskip("fastapi", reason="the train extra is not installed (make install-train)")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def test_the_local_demo_trains_serves_and_promotes_a_student_that_then_answers_the_alias(
    capsys: pytest.CaptureFixture[str],
) -> None:
    outcome = run(threshold=60, epochs=3, keep=False)
    printed = capsys.readouterr().out

    cycle = outcome.cycle
    assert cycle["state"] == "done"
    assert [step["state"] for step in cycle["steps"]] == ["done"] * 5
    student = cycle["student_model"]
    job = re.fullmatch(r"ft:tiny-qwen2:local:support:(ftjob-[0-9a-f]+)", student)
    assert job is not None, student
    assert cycle["gate"]["passed"] is True

    # The alias's answer came from the student, on the transformers upstream, by its path there.
    assert (outcome.served_model, outcome.served_upstream) == (student, "student")
    assert outcome.answer_model is not None
    assert outcome.answer_model.endswith(f"/training-jobs/{job.group(1)}/merged")
    # Every teacher answer starts "[gpt-4o-2024-08-06] On '": the trained student learnt to start
    # its answers so; the random base model writes nothing of the kind.
    assert outcome.answer is not None and outcome.answer.startswith("[gpt-")

    # The loss curve: one point per step of 3 epochs over 44 examples by 4, falling.
    losses = [loss for _, _, loss in outcome.losses]
    assert [step for step, _, _ in outcome.losses] == list(range(1, 34))
    third = len(losses) // 3
    assert sum(losses[-third:]) / third < sum(losses[:third]) / third - 0.2
    assert losses[-1] < losses[0] - 0.4
    assert "training loss, step 1 to 33:" in printed
    assert f"loss {losses[0]:.3f} → {losses[-1]:.3f} over 33 steps" in printed
    assert re.search(r"step  33/33  loss +[0-9.]+  █[▁-█]+", printed)
    assert "The gate is set permissive for this demo, on purpose." in printed

    # Every process it started (stillroom, transformers serve, the training worker) is gone.
    assert len(outcome.pids) == 3
    assert [pid for pid in outcome.pids if _alive(pid)] == []
