"""The local backend's ``ray`` runner, for real: a Ray head started here on free ports, tiny LoRA
SFT jobs submitted to it through the backend (with the job root shared, and with the outputs
travelling through an ``artifact_uri``), a cancel, and failures that carry their reason."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from finetune import (
    BackendConfig,
    BackendUnavailable,
    Hyperparameters,
    JobSpec,
    TrainingConfig,
)
from finetune import make_backend as make_training_backend
from finetune.training.local import LocalBackend
from tests.ray_head import RayHead, free_port, ray_head
from tests.tinymodel import build_tiny_model, chat_examples

pytest.importorskip("trl", reason="the train extra is not installed (make install-train)")
pytest.importorskip("ray", reason="ray is not installed: the train extra has ray[default]")

TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    with ray_head(num_cpus=8) as started:
        yield started


def _backend(root: Path, address: str, **settings: Any) -> LocalBackend:
    config = BackendConfig(
        kind="local",
        root=str(root),
        runner="ray",
        address=address,
        logging_steps=1,
        save_total_limit=1,
        cancel_grace_seconds=2,
        **settings,
    )
    backend = make_training_backend("ray", config)
    assert isinstance(backend, LocalBackend)
    return backend


def _start(
    backend: LocalBackend, model: Path, rows: list[dict[str, Any]], *, epochs: int, tag: str
) -> str:
    train_id = backend.upload(
        b"".join(orjson.dumps(row) + b"\n" for row in rows), filename="train.jsonl"
    )
    config = TrainingConfig(
        base_model=str(model),
        suffix="ray",
        hyperparameters=Hyperparameters(n_epochs=epochs, batch_size=4, learning_rate_multiplier=50),
    )
    spec = JobSpec(config=config, training_file=train_id, metadata={"stillroom_job_id": tag})
    return backend.start(spec).backend_job_id


def _wait(backend: LocalBackend, job_id: str, *, until: tuple[str, ...] = TERMINAL) -> str:
    deadline = time.monotonic() + 240
    state = "?"
    while time.monotonic() < deadline:
        state = backend.status(job_id).state
        if state in until:
            return state
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {state}; log:\n{_log(backend, job_id)}")


def _log(backend: LocalBackend, job_id: str) -> str:
    return backend.job_folder(job_id).log_tail(40)


@pytest.fixture(scope="module")
def jobs(head: RayHead, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The module's jobs but the resumed one, submitted at once so that they overlap on the head."""
    model = build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2")
    shared = _backend(tmp_path_factory.mktemp("shared"), head.address)
    store = tmp_path_factory.mktemp("store")
    resumable = _backend(
        tmp_path_factory.mktemp("resumable"),
        head.address,
        artifact_uri=f"file://{store}",
        save_steps=4,
    )
    nothing_to_learn = [
        {"messages": e["messages"][:3]}
        for e in chat_examples(6)
        if e["messages"][2].get("weight") == 0
    ]
    submitted = time.monotonic()
    return {
        "model": model,
        "store": store,
        "submitted": submitted,
        "shared": (shared, _start(shared, model, chat_examples(16), epochs=2, tag="shared")),
        "long": (shared, _start(shared, model, chat_examples(40), epochs=50, tag="long")),
        "empty": (shared, _start(shared, model, nothing_to_learn, epochs=1, tag="empty")),
        # Its job starts in its test: submitted here, it could end before the test came to it.
        "resumable": resumable,
    }


def _losses(backend: LocalBackend, job_id: str) -> list[float]:
    return [m["loss"] for m in backend.job_folder(job_id).metrics() if "loss" in m]


def test_a_new_backend_reattaches_and_cancel_stops_the_ray_job(
    jobs: dict[str, Any], head: RayHead
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    first, job_id = jobs["long"]
    assert _wait(first, job_id, until=("running", *TERMINAL)) == "running", _log(first, job_id)
    # A restarted server: a new backend object finds the Ray job by the id in the folder.
    again = _backend(first.root, head.address)
    assert again.status(job_id).state == "running"
    assert again.find_job({"stillroom_job_id": "long"}) is not None
    assert again.cancel(job_id).state == "cancelled"
    assert JobSubmissionClient(head.address).get_job_status(job_id) == JobStatus.STOPPED
    assert first.status(job_id).state == "cancelled"
    assert again.events(job_id)[-1].message == "Job cancelled"


def test_a_ray_job_on_a_shared_root_trains_an_adapter_into_the_job_folder(
    jobs: dict[str, Any], head: RayHead
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    backend, job_id = jobs["shared"]
    assert _wait(backend, job_id) == "succeeded", _log(backend, job_id)
    status = backend.status(job_id)
    assert status.fine_tuned_model == f"ft:tiny-qwen2:local:ray:{job_id}"
    assert backend.find_job({"stillroom_job_id": "shared"}) == status
    losses = _losses(backend, job_id)
    assert len(losses) == 8  # 16 examples, batch 4, 2 epochs
    assert losses[-1] < losses[0] - 0.2
    adapter = backend.artifacts(job_id)["adapter"]
    assert (adapter / "adapter_model.safetensors").is_file()
    # The Ray job is the job's own id, and its log is the folder's worker.log.
    assert backend.job_folder(job_id).ray_job()["submission_id"] == job_id
    client = JobSubmissionClient(head.address)
    deadline = time.monotonic() + 30
    while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED
    assert client.get_job_info(job_id).metadata["stillroom_job_id"] == "shared"
    backend.status(job_id)
    log = backend.job_folder(job_id).log_file.read_text()
    assert f"finetune.training.local.worker {backend.root}/{job_id}" in log


def test_a_job_that_fails_on_the_cluster_carries_the_workers_reason(
    jobs: dict[str, Any], head: RayHead
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    backend, job_id = jobs["empty"]
    assert _wait(backend, job_id) == "failed"
    error = backend.status(job_id).error
    assert error is not None
    assert error["code"] == "no_trainable_examples"
    assert "no training example has an assistant token" in error["message"]
    client = JobSubmissionClient(head.address)
    deadline = time.monotonic() + 30
    while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_job_status(job_id) == JobStatus.FAILED
    backend.status(job_id)
    assert "JobFailed: no training example" in _log(backend, job_id)  # Ray's log, copied


def test_a_worker_that_cannot_start_fails_with_rays_reason(
    jobs: dict[str, Any], head: RayHead, tmp_path: Path
) -> None:
    backend = _backend(tmp_path, head.address, python="/nonexistent/python3")
    job_id = _start(backend, jobs["model"], chat_examples(4), epochs=1, tag="broken")
    assert _wait(backend, job_id) == "failed"
    error = backend.status(job_id).error
    assert error is not None
    assert error["code"] == "worker_died"
    assert f"the Ray job {job_id} ended FAILED with no final status" in error["message"]
    assert "exit code 127" in error["message"]
    assert "/nonexistent/python3" in error["message"]  # the log's tail


def test_an_unreachable_cluster_is_unavailable_to_a_launch_which_leaves_nothing(
    jobs: dict[str, Any], tmp_path: Path
) -> None:
    backend = _backend(tmp_path, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(BackendUnavailable, match="cannot reach the Ray cluster") as refused:
        _start(backend, jobs["model"], chat_examples(4), epochs=1, tag="nowhere")
    assert refused.value.code == "cluster_unreachable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"]


@pytest.fixture
def silent_cluster() -> Iterator[str]:
    """An address that takes connections (the kernel's backlog) and never answers a request."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_cluster_that_never_answers_is_unavailable_once_its_timeout_passes(
    jobs: dict[str, Any], tmp_path: Path, silent_cluster: str
) -> None:
    backend = _backend(tmp_path, silent_cluster, request_timeout_seconds=0.5)
    with pytest.raises(BackendUnavailable, match="cannot reach the Ray cluster") as refused:
        _start(backend, jobs["model"], chat_examples(4), epochs=1, tag="unanswered")
    assert refused.value.code == "cluster_unreachable"
    assert "timed out" in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["files"]


def test_a_job_whose_cluster_stops_answering_stays_as_last_seen_and_its_cancel_is_unavailable(
    jobs: dict[str, Any], silent_cluster: str
) -> None:
    shared, _ = jobs["shared"]
    job_id = _start(shared, jobs["model"], chat_examples(4), epochs=1, tag="unanswered")
    # The same job folders, seen by a server whose cluster address no longer answers.
    cut_off = _backend(shared.root, silent_cluster, request_timeout_seconds=0.5)
    seen = cut_off.status(job_id).state
    assert seen in ("queued", "running")
    assert seen == shared.job_folder(job_id).status()["state"]
    with pytest.raises(BackendUnavailable, match="cannot reach the Ray cluster") as refused:
        cut_off.cancel(job_id)
    assert refused.value.code == "cluster_unreachable"
    assert _wait(shared, job_id) == "succeeded", _log(shared, job_id)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):  # the relay ended meanwhile
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _command_line(pid: int | str) -> list[bytes]:
    """A process's arguments; none for one that is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _relay_pid(job_id: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            command = _command_line(entry.name)
            if b"finetune.training.local.relay" in command and any(
                part.endswith(job_id.encode()) for part in command
            ):
                return int(entry.name)
    return None


def test_without_a_shared_root_a_killed_worker_resumes_from_the_store_and_the_outputs_come_back(
    jobs: dict[str, Any], head: RayHead
) -> None:
    """The relay on the node pushes a checkpoint to the store when its worker is killed; the
    backend submits a new Ray job, whose relay fetches it; the adapter comes back at the end."""
    from ray.job_submission import JobSubmissionClient

    backend = jobs["resumable"]
    job_id = _start(backend, jobs["model"], chat_examples(16), epochs=8, tag="resumed")
    deadline = time.monotonic() + 120
    scratch = None
    while scratch is None and time.monotonic() < deadline:
        assert backend.status(job_id).state not in TERMINAL, _log(backend, job_id)
        relay = _relay_pid(job_id)
        workers = _children(relay) if relay else []
        # A worker just forked (or exiting) does not show its own command line yet.
        command = _command_line(workers[0]) if workers else []
        if len(command) >= 2:
            folder = Path(command[-2].decode())
            if _early_checkpoint(folder):
                scratch = folder
                os.kill(workers[0], signal.SIGKILL)
        time.sleep(0.05)
    assert scratch is not None, "the worker saved no checkpoint on its node"
    assert _wait(backend, job_id) == "succeeded", _log(backend, job_id)
    folder = backend.job_folder(job_id)
    assert folder.status()["resumes"] == 1
    assert folder.ray_job()["submission_id"] == f"{job_id}-resume-1"
    messages = [e.message for e in backend.events(job_id)]
    resumed = [m for m in messages if "resuming from the checkpoint at step" in m]
    assert len(resumed) == 1
    assert resumed[0].startswith(f"The Ray job {job_id} ended FAILED with no final status")
    assert any(m.startswith("Resuming from the checkpoint at step") for m in messages)
    steps = [m["step"] for m in folder.metrics() if "loss" in m]
    assert steps[-1] == 32  # 16 examples, batch 4, 8 epochs
    assert steps.count(1) == 1  # the new Ray job carried on from the checkpoint
    assert (backend.artifacts(job_id)["adapter"] / "adapter_model.safetensors").is_file()
    losses = [m["loss"] for m in folder.metrics() if "loss" in m]
    assert losses[-1] < losses[0] - 0.2
    assert [c.step for c in backend.checkpoints(job_id)] == [32]
    stored = jobs["store"] / job_id
    adapter = backend.artifacts(job_id)["adapter"] / "adapter_model.safetensors"
    assert adapter.read_bytes() == (stored / "adapter" / "adapter_model.safetensors").read_bytes()
    assert messages[0] == f"Created local fine-tuning job {job_id}"
    # The node was never told where the job folder is: only the store's URI.
    entrypoint = JobSubmissionClient(head.address).get_job_info(f"{job_id}-resume-1").entrypoint
    assert str(backend.root) not in entrypoint
    assert f"finetune.training.local.relay file://{stored}" in entrypoint


def _early_checkpoint(folder: Path) -> bool:
    """A checkpoint saved with steps still to run: a kill now leaves work to resume (one first
    seen at the last step, on a loaded machine, would leave nothing to do)."""
    for state in folder.glob("checkpoints/checkpoint-*/trainer_state.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            saved = orjson.loads(state.read_bytes())
            if saved["max_steps"] - saved["global_step"] >= 8:
                return True
    return False
