"""``make demo``: the whole loop, offline, step by step, against the SANDBOX upstream.

A sandbox upstream (fake chat answers, fake fine-tuning: nothing here is OpenAI) and a real
``stillroom serve`` on a temporary SQLite file. Traffic through the alias ``support`` is
captured, a rule approves it, a cycle starts once enough approved examples arrived, trains a
sandbox ``ft:`` student, evaluates it against the teacher, promotes it (canary, then full),
and the same alias is then answered by the student while shadow traffic is still captured.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.sandbox import SandboxConfig, running_sandbox

TEACHER = "gpt-4o-2024-08-06"
ALIAS = "support"
ADMIN_KEY = "demo-admin-key"
CLIENT_KEY = "sk-" + "demo-client"
SANDBOX_KEY = "sk-" + "sandbox-accepts-any-key"
STILLROOM = str(Path(sys.executable).with_name("stillroom"))

CONFIG = """
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

[gate]
min_examples = 5

[canary]
canary_percent = 25
full_after_requests = 10
full_after_seconds = 600
min_requests_to_judge = 10
shadow_rate_after = 0.5

[cycles.support]
min_new_examples = {threshold}
min_examples = 20
split = [0.7, 0.1, 0.2]

[cycles.support.training]
base_model = "gpt-4o-mini"
suffix = "support"
"""

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def say(text: str) -> None:
    print(f"\n{BOLD}▶ {text}{RESET}", flush=True)


def note(text: str) -> None:
    print(f"  {text}", flush=True)


class Demo:
    def __init__(self, workdir: Path, upstream: str, threshold: int) -> None:
        self.workdir = workdir
        config = workdir / "stillroom.toml"
        config.write_text(
            CONFIG.format(
                admin=ADMIN_KEY,
                upstream=upstream,
                upstream_key=SANDBOX_KEY,
                workdir=workdir,
                threshold=threshold,
            )
        )
        self.log = (workdir / "server.log").open("wb")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = subprocess.Popen(
            [STILLROOM, "--config", str(config), "serve", "--port", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(
            base_url=self.base, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key=CLIENT_KEY)
        self._wait_ready()

    def _wait_ready(self) -> None:
        for _ in range(200):
            if self.server.poll() is not None:
                raise SystemExit((self.workdir / "server.log").read_text())
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("stillroom did not start; see " + str(self.workdir / "server.log"))

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def ask(self, first: int, count: int) -> dict[str, int]:
        served: dict[str, int] = {}
        for n in range(first, first + count):
            answer = self.client.chat.completions.create(
                model=ALIAS,
                messages=[
                    {"role": "system", "content": "You are a terse maths helper."},
                    {"role": "user", "content": f"What is {n} squared?"},
                ],
            )
            served[answer.model] = served.get(answer.model, 0) + 1
        return served

    def ask_responses(self, first: int, count: int) -> dict[str, int]:
        """Responses API clients (``client.responses.create``), each with a follow-up turn
        that names the first by ``previous_response_id``."""
        served: dict[str, int] = {}
        for n in range(first, first + count):
            answer = self.client.responses.create(
                model=ALIAS,
                instructions="You are a terse maths helper.",
                input=f"What is {n} cubed?",
            )
            again = self.client.responses.create(
                model=ALIAS, input="And halved?", previous_response_id=answer.id
            )
            for model in (answer.model, again.model):
                served[model] = served.get(model, 0) + 1
        return served

    def stop(self) -> None:
        self.server.send_signal(signal.SIGTERM)
        self.server.wait(30)
        self.log.close()


def follow_cycle(demo: Demo, started: float) -> dict[str, Any]:
    seen: set[tuple[str, str]] = set()
    asked = 1000
    while True:
        cycles = demo.admin("GET", "/admin/cycles", params={"alias": ALIAS})["data"]
        if not cycles:
            time.sleep(0.3)
            continue
        cycle = cycles[0]
        for step in cycle["steps"]:
            key = (step["step"], step["state"])
            if step["state"] != "running" and key not in seen:
                seen.add(key)
                mark = GREEN + "✓" if step["state"] == "done" else RED + "✗"
                note(f"{mark}{RESET} {step['step']:<11} {DIM}{step.get('detail') or ''}{RESET}")
        if cycle["state"] in ("done", "failed", "cancelled"):
            note(f"{DIM}{time.monotonic() - started:.1f} s since the first request{RESET}")
            return dict(cycle)
        if cycle["state"] == "promoting" and cycle["promotion_id"]:
            served = demo.ask(asked, 8)
            asked += 8
            note(f"{DIM}canary traffic: {served}{RESET}")
        time.sleep(0.5)


def run(threshold: int, keep: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="stillroom-demo-"))
    print(
        f"{BOLD}{RED}SANDBOX DEMO{RESET}{BOLD}: the upstream is stillroom's offline sandbox, "
        f"not OpenAI. No key, no network.{RESET}"
    )
    with running_sandbox(SandboxConfig(step_seconds=1.0, epochs=3)) as upstream:
        say(f"stillroom serve on a SQLite file in {workdir}, upstream = sandbox {upstream}")
        demo = Demo(workdir, upstream, threshold)
        started = time.monotonic()
        try:
            say(f"Alias '{ALIAS}' → teacher {TEACHER}")
            demo.admin(
                "POST",
                "/admin/aliases",
                json={
                    "name": ALIAS,
                    "targets": [{"model": TEACHER, "weight": 100, "role": "teacher"}],
                },
            )
            say(f"{threshold} requests through the alias with the openai SDK")
            note(f"served by: {demo.ask(1, threshold)}")
            say("Responses API clients through the same alias (client.responses.create)")
            note(f"served by: {demo.ask_responses(1, 3)}")
            time.sleep(0.5)
            responses = demo.admin("GET", "/admin/captures", params={"limit": 500})["data"]
            note(f"captured as responses: {sum(c.get('api') == 'responses' for c in responses)}")
            approved = demo.admin(
                "GET", "/admin/captures", params={"status": "approved", "limit": 500}
            )
            note(
                f"captured: {demo.admin('GET', '/admin/stats')['captures']}, "
                f"approved by the rule: {len(approved['data'])}"
            )
            say("A cycle starts by itself at the threshold and runs step by step")
            cycle = follow_cycle(demo, started)
            if cycle["state"] != "done":
                raise SystemExit(f"{RED}cycle {cycle['state']}: {cycle['reason']}{RESET}")
            say("The gate's decision")
            for reason in cycle["gate"]["reasons"]:
                note(reason)
            evaluation = demo.admin("GET", f"/admin/evals/{cycle['evaluation_id']}")
            for figure, values in (evaluation.get("comparison") or {}).items():
                if isinstance(values, dict) and "candidate" in values:
                    note(f"{figure:<28} student {values['candidate']}  base {values['base']}")
            say(f"The alias '{ALIAS}' now")
            alias = demo.admin("GET", f"/admin/aliases/{ALIAS}")
            for target in alias["targets"]:
                note(f"{target['role']:<8} {target['model']:<44} weight {target['weight']:g}")
            note(f"shadow rate to the teacher: {alias['shadow_rate']:g}")
            for event in demo.admin("GET", f"/admin/aliases/{ALIAS}/history")[:3][::-1]:
                note(
                    f"{DIM}{event['action']:<9} v{event['from_version'] or '-'}→"
                    f"v{event['to_version']} by {event['actor']}: {event['reason'] or '-'}{RESET}"
                )
            say("Same alias, same SDK call: answered by the student, shadowed to the teacher")
            time.sleep(1.5)  # every process picks the new route up at its next poll (1 s)
            before = demo.admin("GET", "/admin/stats")["captures"]
            note(f"served by: {demo.ask(5000, 10)}")
            time.sleep(1.0)
            shadows = demo.admin("GET", "/admin/captures", params={"tags": "shadow", "limit": 100})
            note(
                f"captures since: {demo.admin('GET', '/admin/stats')['captures'] - before}, "
                f"shadow answers by the teacher so far: {len(shadows['data'])}"
            )
            say(f"{GREEN}Loop closed{RESET}{BOLD} in {time.monotonic() - started:.0f} s")
        finally:
            demo.stop()
    if keep:
        note(f"kept: {workdir} (stillroom.db, server.log)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.demo", description=__doc__)
    parser.add_argument("--threshold", type=int, default=60, help="approved examples per cycle")
    parser.add_argument("--keep", action="store_true", help="keep the database and the log")
    options = parser.parse_args()
    run(options.threshold, options.keep)


if __name__ == "__main__":
    main()
