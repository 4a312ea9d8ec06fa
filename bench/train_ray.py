"""``python -m bench.train_ray``: what the local backend's ``ray`` runner costs, on this machine.

Starts a throwaway Ray head (free ports, its own temp dir), trains the tiny test model through
the backend with ``runner = "ray"`` (``--mode shared``: the job root shared with the node, or
``--mode uri``: the outputs through a ``file://`` artifact_uri) and prints a JSON summary: the
head's start, the submit call, submit to the Ray job RUNNING and to the worker's first status,
the job's wall time (submit to succeeded), the same tiny job with the process runner for
comparison, and the head's stop.

    python -m bench.train_ray --mode shared --examples 16 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from finetune import BackendConfig, Hyperparameters, JobSpec, TrainingConfig, make_backend
from finetune.training.local import LocalBackend
from tests.ray_head import start_head
from tests.tinymodel import build_tiny_model, chat_examples


def _job(backend: LocalBackend, model: Path, examples: int, epochs: int) -> dict[str, float]:
    train_id = backend.upload(
        b"".join(orjson.dumps(row) + b"\n" for row in chat_examples(examples)),
        filename="train.jsonl",
    )
    spec = JobSpec(
        config=TrainingConfig(
            base_model=str(model),
            hyperparameters=Hyperparameters(n_epochs=epochs, batch_size=4),
        ),
        training_file=train_id,
    )
    began = time.monotonic()
    job_id = backend.start(spec).backend_job_id
    submitted = time.monotonic() - began
    figures = {"submit_call_s": submitted}
    client: Any = None
    if backend.config.runner == "ray":
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(str(backend.config.address))
    while True:
        state = backend.status(job_id).state
        now = time.monotonic() - began
        if (
            client is not None
            and "ray_running_s" not in figures
            and client.get_job_status(job_id) in (JobStatus.RUNNING, JobStatus.SUCCEEDED)
        ):
            figures["ray_running_s"] = now
        if state != "queued" and "worker_running_s" not in figures:
            figures["worker_running_s"] = now
        if state in ("succeeded", "failed", "cancelled"):
            figures["wall_s"] = now
            break
        time.sleep(0.1)
    if state != "succeeded":
        raise SystemExit(f"the job {state}: {backend.job_folder(job_id).log_tail(20)}")
    return {key: round(value, 2) for key, value in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("shared", "uri"), default="shared")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as scratch:
        root = Path(scratch)
        model = build_tiny_model(root / "tiny-qwen2")
        process = make_backend("process", BackendConfig(kind="local", root=str(root / "process")))
        assert isinstance(process, LocalBackend)
        baseline = _job(process, model, args.examples, args.epochs)
        head = start_head()
        try:
            settings: dict[str, Any] = {"runner": "ray", "address": head.address}
            if args.mode == "uri":
                settings["artifact_uri"] = f"file://{root / 'store'}"
            ray = make_backend(
                "ray", BackendConfig(kind="local", root=str(root / "ray"), **settings)
            )
            assert isinstance(ray, LocalBackend)
            on_ray = _job(ray, model, args.examples, args.epochs)
            again = _job(ray, model, args.examples, args.epochs)  # the code package cached
        finally:
            stopped = head.stop()
    summary = {
        "mode": args.mode,
        "head_start_s": round(head.started_in, 2),
        "first_job": on_ray,
        "second_job": again,
        "process_runner": baseline,
        "head_stop_s": round(stopped, 2),
    }
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
