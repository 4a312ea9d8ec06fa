"""How a job's files travel through an ``artifact_uri`` (a ``file://`` store here): the backend
never sees a final status before the outputs, and never loses what it wrote itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.training.local import JobFolder
from finetune.training.local._transfer import JobStore, fetch_checkpoints, pull, push

pytest.importorskip("fsspec", reason="the train extra is not installed (make install-train)")


def _node(path: Path) -> JobFolder:
    folder = JobFolder(path)
    path.mkdir()
    folder.write_status("running")
    folder.event("info", "Created local fine-tuning job ftjob-x")
    folder.event("info", "Training started")
    folder.append(folder.metrics_file, {"step": 1, "loss": 2.5})
    checkpoint = folder.checkpoints_dir / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_model.safetensors").write_bytes(b"weights")
    (checkpoint / "trainer_state.json").write_text('{"global_step": 1}')
    return folder


def test_a_final_status_reaches_the_backend_only_after_the_outputs(tmp_path: Path) -> None:
    node = _node(tmp_path / "node")
    store = JobStore(f"file://{tmp_path / 'store'}/ftjob-x")
    pushed: set[str] = set()
    node.adapter_dir.mkdir()
    (node.adapter_dir / "adapter_model.safetensors").write_bytes(b"adapter")
    node.write_status("succeeded", fine_tuned_model="ft:x")
    push(store, node, pushed)  # a periodic push, the worker done meanwhile
    assert pushed == {"checkpoint-1"}
    server = JobFolder(tmp_path / "server")
    server.path.mkdir()
    server.write_status("queued", created_at=1.0)
    pull(store, server)
    assert server.status()["state"] == "queued"
    assert [step for step, _ in server.checkpoints()] == [1]
    # Only the checkpoint's state comes back: the weights stay in the store for a resume.
    assert sorted(p.name for p in (server.checkpoints_dir / "checkpoint-1").iterdir()) == [
        "trainer_state.json"
    ]
    assert [e["message"] for e in server.events()][-1] == "Training started"
    push(store, node, pushed, final=True)
    pull(store, server)
    assert server.status()["state"] == "succeeded"
    assert server.status()["created_at"] == 1.0  # the backend's own field stays
    assert (server.adapter_dir / "adapter_model.safetensors").read_bytes() == b"adapter"


def test_a_status_the_backend_ended_is_not_overwritten_by_the_store(tmp_path: Path) -> None:
    node = _node(tmp_path / "node")
    store = JobStore(f"file://{tmp_path / 'store'}/ftjob-x")
    push(store, node, set())
    server = JobFolder(tmp_path / "server")
    server.path.mkdir()
    server.write_status("cancelled")
    server.event("info", "Job cancelled")
    pull(store, server)
    assert server.status()["state"] == "cancelled"
    assert [e["message"] for e in server.events()] == ["Job cancelled"]


def test_a_resumed_node_gets_the_whole_checkpoints_back(tmp_path: Path) -> None:
    node = _node(tmp_path / "node")
    store = JobStore(f"file://{tmp_path / 'store'}/ftjob-x")
    push(store, node, set())
    again = JobFolder(tmp_path / "again")
    again.path.mkdir()
    fetch_checkpoints(store, again)
    checkpoint = again.checkpoints_dir / "checkpoint-1"
    assert (checkpoint / "adapter_model.safetensors").read_bytes() == b"weights"
    assert [step for step, _ in again.checkpoints()] == [1]
