"""The things the benchmark measures: the mock itself, stillroom on two databases, LiteLLM."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import (
    Child,
    Fleet,
    StartError,
    free_port,
    log_tail,
    metric_samples,
    read_ready_line,
    run_logged,
    wait_until_healthy,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LITELLM_VENV = REPO_ROOT / ".bench-venv" / "litellm"
LITELLM_PIN = "1.106.2"
STARTUP_TIMEOUT_S = 90.0


@dataclass
class Target:
    """A running server that answers POST /v1/chat/completions."""

    key: str
    label: str
    base_url: str
    child: Child
    """The process tree whose CPU time and memory are measured."""
    version: str
    startup_s: float | None = None
    metrics_url: str | None = None

    @property
    def completions_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"

    @property
    def pid(self) -> int:
        return self.child.pid


@dataclass(frozen=True)
class Unavailable:
    """A target that could not be measured, and why."""

    key: str
    label: str
    reason: str


def start_mock(fleet: Fleet, cpus: set[int] | None) -> Target:
    child = fleet.spawn(
        "mock-upstream",
        [sys.executable, "-m", "bench.mock_upstream", "--host", "127.0.0.1", "--port", "0"],
        cpus=cpus,
        cwd=REPO_ROOT,
        stdout_pipe=True,
    )
    port = int(read_ready_line(child, "READY ", timeout=20.0).split()[1])
    return Target(
        key="direct",
        label="direct to mock",
        base_url=f"http://127.0.0.1:{port}",
        child=child,
        version="bench.mock_upstream",
        startup_s=None,
    )


def start_floor(
    fleet: Fleet, *, key: str, label: str, mock: Target, cpus: set[int] | None, workers: int = 1
) -> Target:
    """The naive pass-through (``bench.floor``) in front of the mock, on the target's CPUs."""
    started = time.monotonic()
    argv = [sys.executable, "-m", "bench.floor", "--upstream", mock.base_url, "--port", "0"]
    child = fleet.spawn(
        key,
        [*argv, "--workers", str(workers)],
        cpus=cpus,
        cwd=REPO_ROOT,
        stdout_pipe=True,
    )
    port = int(read_ready_line(child, "READY ", timeout=20.0).split()[1])
    return Target(
        key=key,
        label=label,
        base_url=f"http://127.0.0.1:{port}",
        child=child,
        version="bench.floor",
        startup_s=time.monotonic() - started,
    )


def stillroom_binary() -> Path | None:
    beside_python = Path(sys.executable).parent / "stillroom"
    if beside_python.exists():
        return beside_python
    found = shutil.which("stillroom")
    return Path(found) if found else None


def stillroom_version() -> str:
    try:
        return importlib.metadata.version("stillroom")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def start_stillroom(
    fleet: Fleet,
    *,
    key: str,
    label: str,
    database_url: str,
    mock: Target,
    workdir: Path,
    cpus: set[int] | None,
    workers: int = 1,
    uncaptured: bool = False,
) -> Target:
    """``stillroom serve`` in front of the mock; ``uncaptured``: as ``bench.uncaptured`` runs
    it, every capture dropped at the hand-off."""
    env = dict(os.environ)
    if uncaptured:
        program = [sys.executable, "-m", "bench.uncaptured"]
        # Found from the repository, whatever the working folder.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    else:
        binary = stillroom_binary()
        if binary is None:
            raise StartError("no `stillroom` executable beside this Python or on PATH")
        program = [str(binary)]
    port = free_port()
    spool = workdir / f"spool-{key}"
    spool.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "STILLROOM_DATABASE_URL": database_url,
            "STILLROOM_UPSTREAM_BASE_URL": f"{mock.base_url}/v1",
            "STILLROOM_UPSTREAM_API_KEY": "sk-bench-upstream",
            "STILLROOM_SPOOL_DIR": str(spool),
            "STILLROOM_LOG_LEVEL": "WARNING",
        }
    )
    argv = [*program, "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers)]
    child = fleet.spawn(key, argv, env=env, cpus=cpus, cwd=workdir)
    base_url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    wait_until_healthy(child, f"{base_url}/healthz", STARTUP_TIMEOUT_S)
    if workers > 1:
        # /healthz answers once the first worker is up; every one must be before measuring.
        _wait_for_workers(child, f"{base_url}/metrics", workers, STARTUP_TIMEOUT_S)
    startup = time.monotonic() - started
    return Target(
        key=key,
        label=label,
        base_url=base_url,
        child=child,
        version=stillroom_version(),
        startup_s=startup,
        metrics_url=f"{base_url}/metrics",
    )


def _wait_for_workers(child: Child, metrics_url: str, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = metric_samples(metrics_url, "stillroom_worker_requests")
        if up is not None and len(up) >= workers:
            return
        if not child.alive():
            break
        time.sleep(0.2)
    raise StartError(f"{child.name}: fewer than {workers} workers up:\n{log_tail(child.log)}")


def ensure_litellm(log: Path, allow_install: bool) -> tuple[Path, str]:
    """The litellm executable in its own venv, installing it when missing; and its version."""
    python = LITELLM_VENV / "bin" / "python"
    binary = LITELLM_VENV / "bin" / "litellm"
    if not binary.exists():
        if not allow_install:
            raise StartError(f"{binary} is missing and installing was turned off")
        print(f"  installing LiteLLM into {LITELLM_VENV} (log: {log}) ...", flush=True)
        base_python = shutil.which("python3") or sys.executable
        if not python.exists() and not run_logged(
            [base_python, "-m", "venv", str(LITELLM_VENV)], log, timeout=300
        ):
            raise StartError(f"could not create {LITELLM_VENV}:\n{log_tail(log)}")
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if not run_logged([*pip, f"litellm[proxy]=={LITELLM_PIN}"], log, timeout=1200):
            print(f"  litellm=={LITELLM_PIN} refused; trying the newest release", flush=True)
            if not run_logged([*pip, "litellm[proxy]"], log, timeout=1200):
                raise StartError(f"pip could not install litellm[proxy]:\n{log_tail(log)}")
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0 or not binary.exists():
        raise StartError(f"litellm is not importable in {LITELLM_VENV}: {probe.stderr[-400:]}")
    return binary, probe.stdout.strip()


def litellm_config(mock: Target) -> str:
    """Proxy config: one model at the mock, no master key, no database, logging kept quiet."""
    return (
        "model_list:\n"
        "  - model_name: gpt-4o-mini\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o-mini\n"
        f"      api_base: {mock.base_url}/v1\n"
        "      api_key: sk-bench-upstream\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
        "  turn_off_message_logging: true\n"
        "  callbacks: []\n"
        "  success_callback: []\n"
        "  failure_callback: []\n"
        "general_settings:\n"
        "  disable_spend_logs: true\n"
        "  disable_error_logs: true\n"
        # Like stillroom in pass-through mode, LiteLLM then checks no client key.
        "  dangerously_permit_weak_or_unset_master_key: true\n"
    )


def start_litellm(
    fleet: Fleet, *, mock: Target, workdir: Path, cpus: set[int] | None, allow_install: bool
) -> Target:
    binary, version = ensure_litellm(workdir / "litellm-install.log", allow_install)
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(mock))
    env = dict(os.environ)
    # Usage telemetry is opt-in through LITELLM_TELEMETRY_* (and a no-op flag in older
    # releases), so keeping those variables out is what turns it off.
    for leaked in ("DATABASE_URL", "LITELLM_MASTER_KEY", "LITELLM_TELEMETRY_GROUPS"):
        env.pop(leaked, None)
    env.update(
        {
            # No fetch of the model price map from the internet at import time.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "DISABLE_ADMIN_UI": "True",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        }
    )
    port = free_port()
    argv = [
        str(binary),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    child = fleet.spawn("litellm", argv, env=env, cpus=cpus, cwd=workdir)
    base_url = f"http://127.0.0.1:{port}"
    startup = wait_until_healthy(child, f"{base_url}/health/liveliness", STARTUP_TIMEOUT_S)
    return Target(
        key="litellm",
        label=f"LiteLLM {version}",
        base_url=base_url,
        child=child,
        version=version,
        startup_s=startup,
    )
