"""``make demo``: the whole loop, offline, step by step, against the SANDBOX upstream.

A sandbox upstream (fake chat answers, fake fine-tuning: nothing here is OpenAI) and a real
``stillroom serve`` on a temporary SQLite file. Traffic through the alias ``support`` is
captured, a rule approves it, a cycle starts once enough approved examples arrived, trains a
sandbox ``ft:`` student, evaluates it against the teacher, promotes it (canary, then full),
and the same alias is then answered by the student while shadow traffic is still captured.
``make demo-local`` (``tests.sandbox.demo_local``) trains a real student instead.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from tests.sandbox import SandboxConfig, running_sandbox
from tests.sandbox._demo import (
    ADMIN_KEY,
    ALIAS,
    BOLD,
    GREEN,
    RED,
    RESET,
    SANDBOX_KEY,
    SERVER_CONFIG,
    TEACHER,
    Stillroom,
    follow_cycle,
    note,
    say,
    show_decision,
)

CONFIG = """
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


def run(threshold: int, keep: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="stillroom-demo-"))
    print(
        f"{BOLD}{RED}SANDBOX DEMO{RESET}{BOLD}: the upstream is stillroom's offline sandbox, "
        f"not OpenAI. No key, no network.{RESET}"
    )
    with running_sandbox(SandboxConfig(step_seconds=1.0, epochs=3)) as upstream:
        say(f"stillroom serve on a SQLite file in {workdir}, upstream = sandbox {upstream}")
        config = SERVER_CONFIG.format(
            admin=ADMIN_KEY, upstream=upstream, upstream_key=SANDBOX_KEY, workdir=workdir
        ) + CONFIG.format(threshold=threshold)
        server = Stillroom(workdir, config)
        started = time.monotonic()
        try:
            say(f"Alias '{ALIAS}' → teacher {TEACHER}")
            server.route_to_teacher()
            say(f"{threshold} requests through the alias with the openai SDK")
            note(f"served by: {server.ask(1, threshold)}")
            say("Responses API clients through the same alias (client.responses.create)")
            note(f"served by: {server.ask_responses(1, 3)}")
            time.sleep(0.5)
            responses = server.admin("GET", "/admin/captures", params={"limit": 500})["data"]
            note(f"captured as responses: {sum(c.get('api') == 'responses' for c in responses)}")
            note(
                f"captured: {server.admin('GET', '/admin/stats')['captures']}, "
                f"approved by the rule: {server.approved()}"
            )
            say("A cycle starts by itself at the threshold and runs step by step")
            cycle = follow_cycle(server, started, canary=lambda n: server.ask(n, 8))
            if cycle["state"] != "done":
                raise SystemExit(f"{RED}cycle {cycle['state']}: {cycle['reason']}{RESET}")
            show_decision(server, cycle)
            say("Same alias, same SDK call: answered by the student, shadowed to the teacher")
            time.sleep(1.5)  # every process picks the new route up at its next poll (1 s)
            before = server.admin("GET", "/admin/stats")["captures"]
            note(f"served by: {server.ask(5000, 10)}")
            time.sleep(1.0)
            shadows = server.admin(
                "GET", "/admin/captures", params={"tags": "shadow", "limit": 100}
            )
            note(
                f"captures since: {server.admin('GET', '/admin/stats')['captures'] - before}, "
                f"shadow answers by the teacher so far: {len(shadows['data'])}"
            )
            say(f"{GREEN}Loop closed{RESET}{BOLD} in {time.monotonic() - started:.0f} s")
        finally:
            server.stop()
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
