"""The ``ray`` runner: the worker as a Ray Job on an existing cluster, through its Jobs API.

    submission id   the job id (its n-th resume: ``<job id>-resume-<n>``), in ``ray-job``
    entrypoint      the worker on the job folder (``cluster_root``: a shared file system), or
                    the relay, which runs it on a scratch folder and pushes to ``artifact_uri``
    runtime_env     the worker's environment; this server's own packages (``ship_code``); with
                    ``artifact_uri`` the job's inputs as ``working_dir``; then ``runtime_env``
    resources       ``num_cpus``, ``num_gpus`` and ``resources``, reserved for the entrypoint

Ray's states meet the worker's own status.json: while the Ray job is PENDING or RUNNING the
worker's state (queued, running) stands; a Ray job that ended (SUCCEEDED, FAILED, STOPPED)
with no final status from the worker is a dead worker (resumed, or failed with Ray's message),
or a cancel when it was STOPPED. Each look copies the job's log into ``worker.log``. ray is
imported here only, when the runner first talks to the cluster.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from finetune.training._protocol import BackendRefused, BackendUnavailable
from finetune.training.local._config import LocalTrainingConfig
from finetune.training.local._folder import JobFolder
from finetune.training.local._runner import (
    PACKAGE_ROOT,
    SPAWN_SECONDS,
    Gone,
    shell_command,
    worker_command,
    worker_env,
)
from finetune.training.local._transfer import JobStore, pull
from finetune.training.local.relay import INPUTS

_STOP_SECONDS = 15.0
"""After Ray's own SIGKILL, how long a stopped job may take to show as ended."""


def submission_id(job_id: str, attempt: int) -> str:
    return job_id if attempt == 0 else f"{job_id}-resume-{attempt}"


class RayRunner:
    def __init__(self, config: LocalTrainingConfig) -> None:
        self.config = config
        self.address = str(config.address)
        self._client: Any = None

    def client(self) -> Any:
        """The Jobs API client, made on first use (it asks the cluster for its version)."""
        if self._client is None:
            self._client = _jobs_client(self.address, self.config.request_timeout_seconds)
        return self._client

    def runtime_env(self) -> dict[str, Any]:
        config = self.config
        extra = dict(config.runtime_env)
        env = {
            "TOKENIZERS_PARALLELISM": "false",
            # Read by the job's supervisor: SIGTERM, then SIGKILL this much later.
            "RAY_JOB_STOP_WAIT_TIME_S": str(max(1, math.ceil(config.cancel_grace_seconds))),
            **worker_env(config),
            **(extra.pop("env_vars", None) or {}),
        }
        found: dict[str, Any] = {**extra, "env_vars": env}
        if config.ship_code:
            found["py_modules"] = [
                str(PACKAGE_ROOT / "finetune"),
                str(PACKAGE_ROOT / "storage"),
                *(extra.get("py_modules") or []),
            ]
            found["excludes"] = ["__pycache__", "*.pyc", *(extra.get("excludes") or [])]
        return found

    def entrypoint(self, folder: JobFolder) -> list[str]:
        python = self.config.python or "python"
        command = worker_command(python, self.config.num_gpus)
        if self.config.artifact_uri:
            uri = f"{self.config.artifact_uri.rstrip('/')}/{folder.job_id}"
            return [python, "-m", "finetune.training.local.relay", uri, "--", *command]
        root = self.config.cluster_root or str(folder.path.parent)
        return [*command, f"{root.rstrip('/')}/{folder.job_id}"]

    def launch(self, folder: JobFolder, *, attempt: int) -> None:
        sid = submission_id(folder.job_id, attempt)
        # Written first: a server that dies while submitting finds the job by this id.
        folder.write_json(
            folder.ray_job_file,
            {"submission_id": sid, "address": self.address, "submitted_at": time.time()},
        )
        runtime_env = self.runtime_env()
        staging = None
        try:
            if self.config.artifact_uri:
                staging = Path(tempfile.mkdtemp(prefix=f"{folder.job_id}-"))
                for name in INPUTS:
                    if (folder.path / name).is_file():
                        shutil.copyfile(folder.path / name, staging / name)
                runtime_env["working_dir"] = str(staging)
            metadata = {"stillroom_job": folder.job_id, **(folder.spec().get("metadata") or {})}
            try:
                self.client().submit_job(
                    entrypoint=shell_command(self.entrypoint(folder)),
                    submission_id=sid,
                    runtime_env=runtime_env,
                    metadata={str(k): str(v) for k, v in metadata.items()},
                    entrypoint_num_cpus=self.config.num_cpus,
                    entrypoint_num_gpus=self.config.num_gpus or None,
                    entrypoint_resources=self.config.resources or None,
                )
            except OSError as exc:
                # Unreachable, or no answer in time: transient, and the job may have been
                # taken all the same. It must not train unseen, so it is stopped if it is
                # there (a timeout or 404 here is fine); the launch can be tried again.
                if self._client is not None:
                    with contextlib.suppress(Exception):
                        self._client.stop_job(sid)
                raise BackendUnavailable(
                    f"cannot reach the Ray cluster at {self.address} to submit job {sid}: {exc}",
                    code="cluster_unreachable",
                ) from exc
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            raise BackendRefused(
                f"the Ray cluster at {self.address} did not take job {sid}: {exc}",
                code="start_failed",
            ) from exc
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def observe(self, folder: JobFolder) -> Gone | None:
        record = folder.ray_job()
        sid = record.get("submission_id")
        if not sid:
            created = float(folder.status().get("created_at") or 0)
            if time.time() - created < SPAWN_SECONDS:
                return None
            return Gone("the job was never submitted to the Ray cluster")
        if record.get("ended"):
            return _gone(record)
        try:
            info = self.client().get_job_info(sid)
            log = self.client().get_job_logs(sid)
        except RuntimeError as exc:
            if "404" not in str(exc):
                return None
            if time.time() - float(record.get("submitted_at") or 0) < SPAWN_SECONDS:
                return None  # being submitted
            return _gone(
                self._end(
                    folder, record, "LOST", f"the Ray cluster at {self.address} has no such job"
                )
            )
        except OSError:
            return None  # the cluster cannot be reached: the job stays as last seen
        temporary = folder.log_file.with_name(f".{folder.log_file.name}.ray")
        temporary.write_text(log)
        os.replace(temporary, folder.log_file)
        if self.config.artifact_uri:
            try:
                pull(JobStore(f"{self.config.artifact_uri.rstrip('/')}/{folder.job_id}"), folder)
            except Exception:  # noqa: BLE001 - a store that fails now is asked again next look
                return None  # and an ended job is only recorded once its files are here
        if not info.status.is_terminal():
            return None
        return _gone(self._end(folder, record, str(info.status.value), info.message or ""))

    def _end(
        self, folder: JobFolder, record: dict[str, Any], state: str, message: str
    ) -> dict[str, Any]:
        """Recorded once: later looks at an ended job ask the cluster nothing."""
        record = {**record, "ended": state, "message": message, "ended_at": time.time()}
        folder.write_json(folder.ray_job_file, record)
        return record

    def stop(self, folder: JobFolder, *, grace_seconds: float) -> None:
        sid = folder.ray_job().get("submission_id")
        if not sid or folder.ray_job().get("ended"):
            return
        try:
            self.client().stop_job(sid)
        except RuntimeError as exc:
            if "404" in str(exc):
                return
            raise BackendRefused(
                f"the Ray cluster at {self.address} did not stop job {sid}: {exc}",
                code="cancel_failed",
            ) from exc
        except OSError as exc:
            raise BackendUnavailable(
                f"cannot reach the Ray cluster at {self.address} to stop job {sid}: {exc}",
                code="cluster_unreachable",
            ) from exc
        deadline = time.monotonic() + max(1.0, grace_seconds) + _STOP_SECONDS
        while time.monotonic() < deadline and self.observe(folder) is None:
            time.sleep(0.2)


def _jobs_client(address: str, timeout: float) -> Any:
    """Ray's Jobs API client with a timeout on each request (its own has none: a dashboard that
    never answers would hold the caller, a server's cycle, for ever)."""
    from ray.job_submission import JobSubmissionClient

    class BoundedJobsClient(JobSubmissionClient):  # type: ignore[misc]
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout)
            return super()._do_request(method, endpoint, **kwargs)

    return BoundedJobsClient(address)


def _gone(record: dict[str, Any]) -> Gone:
    message = record.get("message")
    return Gone(
        f"the Ray job {record['submission_id']} ended {record['ended']} with no final status "
        "from the worker" + (f": {message}" if message else ""),
        stopped=record["ended"] == "STOPPED",
    )
