"""What the local backend's runners start, with no cluster and no GPU: the worker's command
(``accelerate launch`` for several GPUs), a Ray job's entrypoint and runtime environment, and
the worker's other GPU processes leaving the folder alone."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from finetune import BackendConfig, InvalidTrainingRequest, make_backend
from finetune.training.local import JobFolder, LocalTrainingConfig, worker
from finetune.training.local._runner import PACKAGE_ROOT, worker_command
from finetune.training.local._runner_ray import RayRunner


def test_one_gpu_or_none_runs_the_worker_module_itself() -> None:
    assert worker_command("/opt/py", 0) == ["/opt/py", "-m", "finetune.training.local.worker"]
    assert worker_command("/opt/py", 1) == worker_command("/opt/py", 0)


def test_several_gpus_start_one_worker_process_each_under_accelerate() -> None:
    assert worker_command("python", 4) == [
        "python",
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_machines",
        "1",
        "--num_processes",
        "4",
        "-m",
        "finetune.training.local.worker",
    ]


def _ray(**settings: object) -> RayRunner:
    return RayRunner(LocalTrainingConfig.model_validate({"runner": "ray", **settings}))


def test_a_ray_job_on_a_shared_root_runs_the_worker_where_the_nodes_mount_it() -> None:
    folder = JobFolder(Path("/srv/jobs/ftjob-abc"))
    runner = _ray(address="http://head:8265", cluster_root="/mnt/jobs/", num_gpus=2)
    assert runner.entrypoint(folder) == [
        *worker_command("python", 2),
        "/mnt/jobs/ftjob-abc",
    ]
    same_path = _ray(address="http://head:8265", python="/venv/bin/python")
    assert same_path.entrypoint(folder)[-1] == "/srv/jobs/ftjob-abc"
    assert same_path.entrypoint(folder)[0] == "/venv/bin/python"


def test_without_a_shared_root_the_relay_runs_the_worker_and_pushes_to_the_uri() -> None:
    folder = JobFolder(Path("/srv/jobs/ftjob-abc"))
    runner = _ray(address="http://head:8265", artifact_uri="s3://bucket/jobs/")
    assert runner.entrypoint(folder) == [
        "python",
        "-m",
        "finetune.training.local.relay",
        "s3://bucket/jobs/ftjob-abc",
        "--",
        "python",
        "-m",
        "finetune.training.local.worker",
    ]


def test_a_ray_jobs_runtime_env_ships_our_code_and_keeps_the_users_keys() -> None:
    runner = _ray(
        address="http://head:8265",
        cancel_grace_seconds=2.5,
        runtime_env={"env_vars": {"HF_HUB_OFFLINE": "0", "X": "1"}, "pip": ["s3fs"]},
    )
    env = runner.runtime_env()
    assert env["pip"] == ["s3fs"]
    assert env["py_modules"] == [str(PACKAGE_ROOT / "finetune"), str(PACKAGE_ROOT / "storage")]
    assert "__pycache__" in env["excludes"]
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "0"  # the user's word wins
    assert env["env_vars"]["X"] == "1"
    assert env["env_vars"]["TRANSFORMERS_OFFLINE"] == "1"
    assert env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"] == "3"
    unshipped = _ray(address="http://head:8265", ship_code=False).runtime_env()
    assert "py_modules" not in unshipped


def test_the_ray_runner_needs_an_address() -> None:
    with pytest.raises(InvalidTrainingRequest, match="needs address"):
        make_backend("cluster", BackendConfig(kind="local", runner="ray"))


def test_a_ray_backend_never_imports_ray_until_it_talks_to_the_cluster(tmp_path: Path) -> None:
    code = (
        "import sys, proxy._app, finetune\n"
        "from finetune import BackendConfig, make_backend\n"
        f"b = make_backend('c', BackendConfig(kind='local', root={str(tmp_path)!r}, "
        "runner='ray', address='http://127.0.0.1:1'))\n"
        "b.upload(b'{}', filename='x.jsonl')\n"
        "print(sorted({'ray', 'torch', 'fsspec'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("rank", "written"), [("1", False), ("0", True)])
def test_only_the_first_gpu_process_writes_the_job_folder(
    rank: str, written: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", rank)
    (tmp_path / "spec.json").write_text("{}")  # no settings: the job fails before training
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert worker.main([str(tmp_path)]) == 1
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert (tmp_path / "status.json").is_file() is written
    assert (tmp_path / "events.jsonl").is_file() is written
    if written:
        assert JobFolder(tmp_path).status()["error"]["message"] == "KeyError: 'settings'"
