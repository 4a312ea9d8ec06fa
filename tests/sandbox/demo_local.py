"""``make demo-local``: the whole loop, offline, with a student trained and served on this
machine.

The teacher is the SANDBOX upstream (fake answers: nothing here is OpenAI). The student is a
tiny random-initialised Qwen2-shaped model (``tests.tinymodel``, built on the spot: no
download), fine-tuned with LoRA by the ``local`` training backend (TRL and PEFT in a worker
process) and served, merged, by a real ``transformers serve`` the demo starts without a model:
stillroom asks it to load each student by its folder's path. Traffic through the alias
``support`` is captured and approved, a cycle starts at the threshold, trains the student
(the loss curve drawn as it falls), evaluates it on the test split against the teacher's
answers beside its base model, passes the gate, goes through the canary, and the alias is then
answered by the student.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from finetune.training.local._folder import JobFolder, process_alive
from tests.sandbox import SandboxConfig, running_sandbox
from tests.sandbox._demo import (
    ADMIN_KEY,
    ALIAS,
    BOLD,
    DIM,
    GREEN,
    RED,
    RESET,
    SANDBOX_KEY,
    SERVER_CONFIG,
    TEACHER,
    Stillroom,
    follow_cycle,
    free_port,
    note,
    say,
    show_decision,
    signal_group,
    start_process,
    stop_process,
    wait_until,
)
from tests.sandbox._loss_curve import LiveCurve, chart, training_losses, validation_losses

TRANSFORMERS = str(Path(sys.executable).with_name("transformers"))
MAX_TOKENS = 48
"""Every client asks for at most this many tokens; the evaluation keeps the limit, so a student
that has not learnt to end its answer stops there."""

# The gate is permissive on purpose, and the demo says so: see GATE_NOTE.
CONFIG = """
[upstreams.student]
kind = "transformers"
base_url = "http://127.0.0.1:{student_port}/v1"

[training_backends.local]
kind = "local"
root = "{workdir}/training-jobs"
merge = true
logging_steps = 1
lora_dropout = 0.0
save_total_limit = 1

[cycles.support]
min_new_examples = {threshold}
min_examples = {threshold}
backend = "local"
student_upstream = "student"
split = [0.7, 0.1, 0.2]

[cycles.support.training]
base_model = "{base_model}"
suffix = "support"
hyperparameters = {{ n_epochs = {epochs}, batch_size = 4, learning_rate_multiplier = 50 }}

[cycles.support.gate]
min_examples = 5
max_error_rate = 0.0
min_rubric_mean = 1.0
min_win_rate = 0.0

[cycles.support.canary]
canary_percent = 50
full_after_requests = 6
full_after_seconds = 600
min_requests_to_judge = 6
shadow_rate_after = 0.5
"""

GATE_NOTE = (
    "The gate is set permissive for this demo, on purpose. A 2-layer model with random weights, "
    "trained for seconds on a CPU, cannot match the teacher: the sandbox judge scores an answer "
    "that differs from the teacher's 2 of 5 and flips a coin between two different answers. So "
    "this gate asks what such a student can honestly pass: it answered every test example "
    "(max_error_rate 0, at least 5 examples) and made no tool call where the teacher made none; "
    "its rubric mean (at least 1) and win rate (at least 0) pass whatever the judge says. The "
    "figures beside the base model's show what the training did."
)


@dataclass
class Outcome:
    """What the demo ended with, for its test."""

    cycle: dict[str, Any] = field(default_factory=dict)
    losses: list[tuple[int, int, float]] = field(default_factory=list)
    answer: str | None = None
    answer_model: str | None = None
    served_model: str | None = None
    served_upstream: str | None = None
    seconds: float = 0.0
    pids: list[int] = field(default_factory=list)
    """Every process the demo started, the training worker included: all stopped at the end."""


class LossWatch:
    """Follows the cycle's training job through the admin API and draws its loss curve."""

    def __init__(self, server: Stillroom, outcome: Outcome) -> None:
        self.server, self.outcome = server, outcome
        self.curve = LiveCurve()
        self.drawn = False

    def __call__(self, cycle: dict[str, Any]) -> None:
        job_id = cycle.get("training_job_id")
        if job_id is None or self.drawn:
            return
        job = self.server.admin("GET", f"/admin/jobs/{job_id}")
        self.outcome.losses = training_losses(job["events"])
        self.curve.update(self.outcome.losses)
        if job["state"] in ("succeeded", "failed", "cancelled"):
            self.curve.finish()
            self.drawn = True
            self._summary(job)

    def _summary(self, job: dict[str, Any]) -> None:
        losses = [loss for _, _, loss in self.outcome.losses]
        if not losses:
            return
        note(f"{BOLD}training loss, step 1 to {len(losses)}:{RESET}")
        for line in chart(losses):
            note(line)
        validation = ", ".join(f"{loss:.3f}" for _, loss in validation_losses(job["events"]))
        note(
            f"loss {losses[0]:.3f} → {losses[-1]:.3f} over {len(losses)} steps"
            + (f"; validation loss by epoch: {validation}" if validation else "")
        )


def run(threshold: int, epochs: int, keep: bool) -> Outcome:
    if not Path(TRANSFORMERS).is_file():
        raise SystemExit("no `transformers` command next to this Python: run make install-train")
    from tests.tinymodel import build_tiny_model  # torch: only once the train extra is known

    workdir = Path(tempfile.mkdtemp(prefix="stillroom-demo-local-"))
    outcome = Outcome()
    print(
        f"{BOLD}{RED}LOCAL DEMO{RESET}{BOLD}: the teacher is stillroom's offline SANDBOX upstream "
        f"(not OpenAI); the student is trained and served on this machine. No key, no "
        f"network.{RESET}"
    )
    student_port = free_port()
    student_log = workdir / "transformers-serve.log"
    say(f"transformers serve on 127.0.0.1:{student_port}, started without a model")
    command = [TRANSFORMERS, "serve", "--device", "cpu", "--host", "127.0.0.1"]
    command += ["--port", str(student_port), "--log-level", "warning"]
    student_server = start_process(
        command,
        student_log,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        cwd=workdir,
    )
    outcome.pids.append(student_server.pid)
    server: Stillroom | None = None
    try:
        say("A tiny Qwen2-shaped base model with random weights, built here (no download)")
        began = time.monotonic()
        base_model = build_tiny_model(workdir / "tiny-qwen2")
        note(
            f"{base_model}: 2 layers, hidden size 64, a {_vocab(base_model)}-token BPE "
            f"({time.monotonic() - began:.1f} s)"
        )
        with running_sandbox(SandboxConfig()) as upstream:
            say(f"stillroom serve on a SQLite file in {workdir}, teacher = sandbox {upstream}")
            config = SERVER_CONFIG.format(
                admin=ADMIN_KEY, upstream=upstream, upstream_key=SANDBOX_KEY, workdir=workdir
            ) + CONFIG.format(
                student_port=student_port,
                workdir=workdir,
                threshold=threshold,
                base_model=base_model,
                epochs=epochs,
            )
            server = Stillroom(workdir, config)
            outcome.pids.append(server.process.pid)
            note("training backend 'local': LoRA (rank 16) on CPU, merged after training")
            note(f"student upstream 'student': kind transformers, {student_port}")
            wait_until(
                lambda: httpx.get(f"http://127.0.0.1:{student_port}/health").status_code == 200,
                "transformers serve",
                process=student_server,
                log=student_log,
                timeout=120,
            )
            _loop(server, outcome, threshold)
    finally:
        if server is not None:
            _cancel_open_cycle(server)
            server.stop()
        stop_process(student_server)
        outcome.pids += _stop_workers(workdir / "training-jobs")
        if keep:
            note(f"kept: {workdir} (stillroom.db, the logs, the model and the job folders)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return outcome


def _loop(server: Stillroom, outcome: Outcome, threshold: int) -> None:
    started = time.monotonic()
    say(f"Alias '{ALIAS}' → teacher {TEACHER}")
    server.route_to_teacher()
    say(f"{threshold} requests through the alias with the openai SDK (max_tokens {MAX_TOKENS})")
    note(f"served by: {server.ask(1, threshold, max_tokens=MAX_TOKENS)}")
    time.sleep(0.5)
    note(
        f"captured: {server.admin('GET', '/admin/stats')['captures']}, "
        f"approved by the rule: {server.approved()}"
    )
    say("The gate of this demo")
    note(GATE_NOTE)
    say("A cycle starts by itself at the threshold; the student trains (loss as it goes)")
    cycle = follow_cycle(
        server,
        started,
        canary=lambda n: server.ask(n, 8, max_tokens=MAX_TOKENS),
        watch=LossWatch(server, outcome),
    )
    outcome.cycle = cycle
    if cycle["state"] != "done":
        raise SystemExit(f"{RED}cycle {cycle['state']}: {cycle['reason']}{RESET}")
    show_decision(server, cycle)
    say("Same alias, same SDK call, a question from the training data: the student answers")
    time.sleep(1.5)  # every process picks the new route up at its next poll (1 s)
    answer = server.question(3, max_tokens=MAX_TOKENS)
    outcome.answer = answer.choices[0].message.content
    outcome.answer_model = answer.model
    served = _capture_of(server, answer.id)
    outcome.served_model = served.get("served_model")
    outcome.served_upstream = served.get("upstream")
    teacher = _teacher_said(server, "What is 3 squared?")
    note(f"question: What is 3 squared?   (max_tokens {MAX_TOKENS})")
    note(f"teacher, when it was asked: {teacher!r}")
    note(f"student now: {GREEN}{outcome.answer!r}{RESET}")
    note(f"answer.model (as transformers serve wrote it): {outcome.answer_model}")
    note(f"stillroom's capture: served by {outcome.served_model} on '{outcome.served_upstream}'")
    outcome.seconds = time.monotonic() - started
    say(f"{GREEN}Loop closed{RESET}{BOLD} in {outcome.seconds:.0f} s")


def _capture_of(server: Stillroom, completion_id: str) -> dict[str, Any]:
    """The capture of the answer with that id (written a moment after the answer)."""
    for _ in range(50):
        for summary in server.admin("GET", "/admin/captures", params={"limit": 20})["data"]:
            if summary.get("completion_id") == completion_id:
                return dict(server.admin("GET", f"/admin/captures/{summary['id']}"))
        time.sleep(0.1)
    return {}


def _teacher_said(server: Stillroom, question: str) -> str | None:
    found = server.admin(
        "GET", "/admin/captures", params={"search": question, "alias": ALIAS, "limit": 50}
    )["data"]
    for summary in found:
        if summary["served_model"] == TEACHER and summary["last_user_text"] == question:
            return str(summary["answer_text"])
    return None


def _vocab(model: Path) -> int:
    return int(json.loads((model / "config.json").read_text())["vocab_size"])


def _cancel_open_cycle(server: Stillroom) -> None:
    """A cycle interrupted mid-way is cancelled: that stops its training worker, which runs in
    a session of its own and would outlive the server otherwise."""
    try:
        cycles = server.admin("GET", "/admin/cycles", params={"alias": ALIAS})["data"]
        for cycle in cycles:
            if cycle["state"] not in ("done", "failed", "cancelled"):
                server.admin("POST", f"/admin/cycles/{cycle['id']}/cancel", json={})
                note(f"{DIM}cancelled {cycle['id']}{RESET}")
    except (httpx.HTTPError, ValueError) as exc:
        note(f"{DIM}could not cancel the open cycle: {exc}{RESET}")


def _stop_workers(root: Path) -> list[int]:
    """Any training worker still alive (its job folder's pid) is stopped by its process group;
    returns the workers' pids."""
    pids = []
    for folder in sorted(root.glob("ftjob-*")) if root.is_dir() else []:
        found = JobFolder(folder).pid()
        if found is None:
            continue
        pids.append(found[0])
        if process_alive(*found):
            signal_group(found[0], signal.SIGKILL)
    return pids


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.demo_local", description=__doc__)
    parser.add_argument("--threshold", type=int, default=60, help="approved examples per cycle")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    options = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every process the demo started is stopped.
    previous: Callable[..., Any] | int | None = signal.signal(signal.SIGTERM, _interrupt)
    try:
        run(options.threshold, options.epochs, options.keep)
    except KeyboardInterrupt:
        print(f"\n{RED}interrupted{RESET}: every process the demo started is stopped")
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
