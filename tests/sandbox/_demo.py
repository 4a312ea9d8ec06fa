"""What ``make demo`` and ``make demo-local`` share: the ``stillroom serve`` they start on a
temporary SQLite file, the client traffic they send through the alias with the ``openai`` SDK,
the cycle they follow step by step, and how they print it all.

Every process a demo starts is started in a session of its own and stopped by its id (its
process group: a server's own children go with it), on success, failure and Ctrl-C alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai

TEACHER = "gpt-4o-2024-08-06"
ALIAS = "support"
ADMIN_KEY = "demo-admin-key"
CLIENT_KEY = "sk-" + "demo-client"
SANDBOX_KEY = "sk-" + "sandbox-accepts-any-key"
STILLROOM = str(Path(sys.executable).with_name("stillroom"))
SYSTEM_PROMPT = "You are a terse maths helper."

SERVER_CONFIG = """
admin_key = "{admin}"
upstream_base_url = "{upstream}"
upstream_api_key = "{upstream_key}"
database_url = "sqlite:///{workdir}/stillroom.db"
spool_dir = "{workdir}/spool"
log_format = "text"
log_level = "WARNING"
cycle_poll_seconds = 0.5
eval_poll_seconds = 0.5
training_poll_seconds = 1.0

[[rules]]
name = "approve clean answers"
action = "approve"
when = {{ error = false, finish_reason = ["stop"] }}
"""
"""The top of both demos' config files; each adds its gate, canary, cycle and the rest."""

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def say(text: str) -> None:
    print(f"\n{BOLD}▶ {text}{RESET}", flush=True)


def note(text: str) -> None:
    print(f"  {text}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_process(
    command: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None, cwd: Path
) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own (Ctrl-C reaches the demo alone, which then stops
    it), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )


def stop_process(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM to the process's group, SIGKILL to it if it is still there after ``grace``."""
    if process.poll() is not None:
        return
    signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        process.wait(10)


def signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def wait_until(
    ready: Callable[[], bool], what: str, *, process: Any, log: Path, timeout: float
) -> None:
    """Until ``ready()``; stops the demo with the log's end when the process died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited ({process.returncode}); its log ends:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if ready():
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start within {timeout:.0f} s; see {log}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Stillroom:
    """``stillroom --config stillroom.toml serve`` in ``workdir``, its admin API and a client."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        (workdir / "stillroom.toml").write_text(config)
        self.log_path = workdir / "server.log"
        self.port = free_port()
        # The config file alone: no STILLROOM_ setting of the caller's shell (a database URL
        # above all) may point the demo at anything of theirs.
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("STILLROOM_", "OPENAI_"))
        }
        self.process = start_process(
            [STILLROOM, "--config", "stillroom.toml", "serve", "--port", str(self.port)],
            self.log_path,
            env=environment,
            cwd=workdir,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(
            base_url=self.base, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key=CLIENT_KEY)
        wait_until(
            lambda: httpx.get(self.base + "/readyz", timeout=1).status_code == 200,
            "stillroom serve",
            process=self.process,
            log=self.log_path,
            timeout=60,
        )

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def route_to_teacher(self) -> None:
        self.admin(
            "POST",
            "/admin/aliases",
            json={"name": ALIAS, "targets": [{"model": TEACHER, "weight": 100, "role": "teacher"}]},
        )

    def ask(self, first: int, count: int, **options: Any) -> dict[str, int]:
        """``count`` questions through the alias; how many each model answered."""
        served: dict[str, int] = {}
        for n in range(first, first + count):
            answer = self.question(n, **options)
            served[answer.model] = served.get(answer.model, 0) + 1
        return served

    def question(self, n: int, **options: Any) -> Any:
        return self.client.chat.completions.create(
            model=ALIAS,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"What is {n} squared?"},
            ],
            **options,
        )

    def ask_responses(self, first: int, count: int) -> dict[str, int]:
        """Responses API clients (``client.responses.create``), each with a follow-up turn
        that names the first by ``previous_response_id``."""
        served: dict[str, int] = {}
        for n in range(first, first + count):
            answer = self.client.responses.create(
                model=ALIAS, instructions=SYSTEM_PROMPT, input=f"What is {n} cubed?"
            )
            again = self.client.responses.create(
                model=ALIAS, input="And halved?", previous_response_id=answer.id
            )
            for model in (answer.model, again.model):
                served[model] = served.get(model, 0) + 1
        return served

    def approved(self) -> int:
        found = self.admin("GET", "/admin/captures", params={"status": "approved", "limit": 500})
        return len(found["data"])

    def stop(self) -> None:
        self.http.close()
        stop_process(self.process, grace=30)


def follow_cycle(
    server: Stillroom,
    started: float,
    *,
    canary: Callable[[int], dict[str, int]],
    watch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Print each step of the alias's cycle as it ends, until the cycle does; ``canary(n)``
    sends client traffic while the canary runs, ``watch(cycle)`` sees every round."""
    seen: set[tuple[str, str]] = set()
    asked = 1000
    while True:
        cycles = server.admin("GET", "/admin/cycles", params={"alias": ALIAS})["data"]
        if not cycles:
            time.sleep(0.3)
            continue
        cycle: dict[str, Any] = cycles[0]
        if watch is not None:
            watch(cycle)
        for step in cycle["steps"]:
            key = (step["step"], step["state"])
            if step["state"] != "running" and key not in seen:
                seen.add(key)
                mark = GREEN + "✓" if step["state"] == "done" else RED + "✗"
                note(f"{mark}{RESET} {step['step']:<11} {DIM}{step.get('detail') or ''}{RESET}")
        if cycle["state"] in ("done", "failed", "cancelled"):
            note(f"{DIM}{time.monotonic() - started:.1f} s since the first request{RESET}")
            return cycle
        if cycle["state"] == "promoting" and cycle["promotion_id"]:
            served = canary(asked)
            asked += 8
            note(f"{DIM}canary traffic: {served}{RESET}")
        time.sleep(0.5)


def show_decision(server: Stillroom, cycle: Mapping[str, Any]) -> None:
    """The gate's reasons, the student's figures beside its base model's, and the alias now."""
    say("The gate's decision")
    for reason in cycle["gate"]["reasons"]:
        note(reason)
    evaluation = server.admin("GET", f"/admin/evals/{cycle['evaluation_id']}")
    for figure, values in (evaluation.get("comparison") or {}).items():
        if isinstance(values, dict) and "candidate" in values:
            note(f"{figure:<28} student {values['candidate']}  base {values['base']}")
    say(f"The alias '{ALIAS}' now")
    alias = server.admin("GET", f"/admin/aliases/{ALIAS}")
    for target in alias["targets"]:
        where = f"@{target['upstream']}" if target.get("upstream", "default") != "default" else ""
        note(f"{target['role']:<8} {target['model'] + where:<52} weight {target['weight']:g}")
    note(f"shadow rate to the teacher: {alias['shadow_rate']:g}")
    for event in server.admin("GET", f"/admin/aliases/{ALIAS}/history")[:3][::-1]:
        note(
            f"{DIM}{event['action']:<9} v{event['from_version'] or '-'}→"
            f"v{event['to_version']} by {event['actor']}: {event['reason'] or '-'}{RESET}"
        )
