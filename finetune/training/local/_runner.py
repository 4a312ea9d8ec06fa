"""Where a local job's worker runs: the seam between ``LocalBackend`` and a runner.

The backend owns the job folder and its life (start, status, resume, cancel); a runner only
starts the worker for a folder, tells whether it is gone, and stops it. Two runners:

    process   a process on this machine (``_runner_process``), the default
    ray       a Ray Job on an existing cluster (``_runner_ray``)

Both start the same command, built here: the worker module, or ``accelerate launch`` around it
when a job has more than one GPU.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from finetune.training.local._config import LocalTrainingConfig
from finetune.training.local._folder import JobFolder

SPAWN_SECONDS = 30.0
"""A job whose worker has shown no sign of life this long after it was started never got it."""

PACKAGE_ROOT = Path(__file__).resolve().parents[3]
"""The folder holding the ``finetune`` package: on the worker's PYTHONPATH."""

WORKER_MODULE = "finetune.training.local.worker"


@dataclass(frozen=True, slots=True)
class Gone:
    """The worker is no longer running: ``reason`` says how it ended when it wrote no final
    status; ``stopped`` when it was stopped from outside stillroom (the job is then cancelled,
    not resumed)."""

    reason: str
    stopped: bool = False


class Runner(Protocol):
    def launch(self, folder: JobFolder, *, attempt: int) -> None:
        """Start the worker for ``folder`` (``attempt`` 0, or the n-th resume); refuse with
        ``BackendRefused`` when it cannot start."""
        ...

    def observe(self, folder: JobFolder) -> Gone | None:
        """Bring what the worker wrote into the folder (where it does not write there itself),
        and say whether it is gone; None while it runs, is being started, or cannot be asked."""
        ...

    def stop(self, folder: JobFolder, *, grace_seconds: float) -> None:
        """Ask the worker to stop, force it after ``grace_seconds``, and wait until it is gone."""
        ...


def worker_command(python: str, num_gpus: int) -> list[str]:
    """The worker's command line, less the job folder that follows it: with more than one GPU,
    ``accelerate launch`` starts one worker process per GPU (DDP); the worker writes the
    folder from its first process only."""
    if num_gpus > 1:
        return [
            python,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_machines",
            "1",
            "--num_processes",
            str(num_gpus),
            "-m",
            WORKER_MODULE,
        ]
    return [python, "-m", WORKER_MODULE]


def shell_command(argv: list[str]) -> str:
    return shlex.join(argv)


def worker_env(config: LocalTrainingConfig) -> dict[str, str]:
    """What the worker needs in its environment, beyond what it inherits."""
    env = {"PYTHONUNBUFFERED": "1"}
    if not config.allow_downloads:
        env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return env


def python_path() -> str:
    return os.pathsep.join([str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def make_runner(config: LocalTrainingConfig) -> Runner:
    if config.runner == "ray":
        from finetune.training.local._runner_ray import RayRunner

        return RayRunner(config)
    from finetune.training.local._runner_process import ProcessRunner

    return ProcessRunner(config)
