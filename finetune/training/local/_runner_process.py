"""The ``process`` runner: the worker is a process of this machine, in a session of its own.

Its pid (and the kernel's start time of it, telling a live worker from a reused pid) is the
``pid`` file of the job folder, so a restarted server finds it again. Stop sends SIGTERM to the
worker's process group, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from finetune.training.local._config import LocalTrainingConfig
from finetune.training.local._folder import JobFolder, process_alive, process_start_time
from finetune.training.local._runner import (
    SPAWN_SECONDS,
    Gone,
    python_path,
    worker_command,
    worker_env,
)

_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""Workers this process started: polled so that a finished one leaves no zombie behind."""


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def _signal_group(pid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class ProcessRunner:
    def __init__(self, config: LocalTrainingConfig) -> None:
        self.config = config

    def launch(self, folder: JobFolder, *, attempt: int) -> None:
        env = dict(os.environ) | worker_env(self.config)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env["PYTHONPATH"] = python_path()
        command = worker_command(self.config.python or sys.executable, self.config.num_gpus)
        with folder.log_file.open("ab") as log:
            child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [*command, str(folder.path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=folder.path,
                start_new_session=True,
            )
        _CHILDREN[child.pid] = child
        folder.pid_file.write_text(f"{child.pid} {process_start_time(child.pid) or ''}\n")

    def _alive(self, folder: JobFolder) -> bool:
        _reap()
        found = folder.pid()
        if found is None:
            # Being started (the pid is written just after the worker starts), unless long ago.
            created = folder.status().get("created_at") or 0
            return time.time() - float(created) < SPAWN_SECONDS
        return process_alive(*found)

    def observe(self, folder: JobFolder) -> Gone | None:
        if self._alive(folder):
            return None
        pid = folder.pid()
        return Gone(
            f"the training worker (pid {pid[0] if pid else '?'}) ended without a final status: "
            "killed (kill -9, or out of memory)"
        )

    def stop(self, folder: JobFolder, *, grace_seconds: float) -> None:
        found = folder.pid()
        if found is None or not process_alive(*found):
            return
        _signal_group(found[0], signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while self._alive(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._alive(folder):
            _signal_group(found[0], signal.SIGKILL)
            while self._alive(folder) and time.monotonic() < deadline + 5:
                time.sleep(0.05)
