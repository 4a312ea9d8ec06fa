"""``stillroom jobs``: launch, list, show, cancel and sync training jobs from a terminal.

The verbs call the same ``finetune`` training services as the admin API, against the database
and backends from the settings. ``launch --wait`` follows the job with a progress bar (on
stderr, so stdout stays the result alone).
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from typing import Any

import click
import orjson
from sqlalchemy import Engine

from finetune import (
    DatasetError,
    Hyperparameters,
    JobDetail,
    TrainingConfig,
    TrainingError,
    cancel_job,
    job_detail,
    launch_job,
    list_jobs,
    resume_open_jobs,
    sync_job,
    wait_for_job,
)
from proxy._settings import Settings
from proxy.admin._datasets import export_hook
from proxy.admin._training import backend_from_settings
from proxy.cli._support import cli_engine, cli_settings
from storage import TERMINAL_TRAINING_STATES, TrainingJob

_settings = cli_settings


def _engine(settings: Settings) -> AbstractContextManager[Engine]:
    return cli_engine(settings, (TrainingError, DatasetError))


def _line(job: TrainingJob) -> str:
    model = job.fine_tuned_model or "-"
    return (
        f"{job.id}  {job.state:<16} {job.dataset_id}  {job.spec.get('base_model')}"
        f"  {job.backend}:{job.backend_job_id or '-'}  {model}"
    )


def _show(detail: JobDetail) -> None:
    job = detail.job
    lines = [
        _line(job),
        f"spec:        {orjson.dumps(job.spec).decode()}",
        f"cycle:       {job.cycle_id or '-'}",
        f"files:       train={job.training_file_id or '-'} "
        f"validation={job.validation_file_id or '-'}",
        f"tokens:      {job.trained_tokens if job.trained_tokens is not None else '-'}",
        f"created:     {job.created_at:%Y-%m-%d %H:%M:%S}  updated {job.updated_at:%H:%M:%S}",
    ]
    if job.error:
        lines.append(f"error:       {job.error.get('message')}")
    click.echo("\n".join(lines))
    if detail.checkpoints:
        click.echo("checkpoints:")
        for checkpoint in detail.checkpoints:
            metrics = " ".join(f"{k}={v}" for k, v in sorted(checkpoint.metrics.items()))
            click.echo(f"  step {checkpoint.step:>6}  {checkpoint.model}  {metrics}")
    if detail.events:
        click.echo("events:")
        for event in detail.events:
            click.echo(f"  {event.created_at:%H:%M:%S}  {event.level:<5}  {event.message}")


def progress_percent(state: str, detail: JobDetail | None) -> int:
    """How far a job is, for the bar: phases, then training steps as the backend reports."""
    if state in TERMINAL_TRAINING_STATES:
        return 100
    if state != "running":
        return {"pending": 0, "starting": 2, "validating_files": 5, "queued": 10}.get(state, 0)
    for event in reversed(detail.events if detail else []):
        data = event.data or {}
        if isinstance(data.get("step"), int) and isinstance(data.get("total_steps"), int):
            return 10 + int(85 * data["step"] / max(data["total_steps"], 1))
    return 10


@click.group()
def jobs() -> None:
    """Training jobs: launch a dataset's fine-tune, follow it, cancel it."""


@jobs.command("list")
@click.option("--state", default=None, help="Only jobs in this state.")
@click.option("--dataset", "dataset_id", default=None, help="Only jobs of this dataset.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.pass_context
def jobs_list(ctx: click.Context, state: str | None, dataset_id: str | None, limit: int) -> None:
    """Jobs, newest first: id, state, dataset, base model, backend job, ft: model."""
    with _engine(_settings(ctx)) as engine:
        for job in list_jobs(engine, state=state, dataset_id=dataset_id, limit=limit):
            click.echo(_line(job))


@jobs.command("show")
@click.argument("job_id")
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str) -> None:
    """A job with its checkpoints (and metrics) and events."""
    with _engine(_settings(ctx)) as engine:
        _show(job_detail(engine, job_id))


def _follow(engine: Engine, settings: Settings, job: TrainingJob, poll_seconds: float) -> None:
    backend = backend_from_settings(settings, job.backend)
    with click.progressbar(length=100, label=job.state, file=sys.stderr) as bar:
        shown = 0

        def update(current: TrainingJob) -> None:
            nonlocal shown
            percent = progress_percent(current.state, job_detail(engine, current.id))
            bar.label = current.state
            bar.update(max(percent - shown, 0))
            shown = max(shown, percent)

        wait_for_job(engine, backend, job.id, poll_seconds=poll_seconds, on_update=update)


@jobs.command("launch")
@click.argument("dataset_id")
@click.option(
    "--base-model", required=True, help="Model to fine-tune, e.g. gpt-4o-mini-2024-07-18."
)
@click.option("--suffix", default=None, help="Part of the ft: model's name.")
@click.option("--method", type=click.Choice(["supervised", "dpo"]), default="supervised")
@click.option("--beta", type=float, default=None, help="DPO only.")
@click.option("--epochs", type=int, default=None, help="n_epochs [default: auto].")
@click.option("--batch-size", type=int, default=None, help="[default: auto]")
@click.option("--lr-multiplier", type=float, default=None, help="[default: auto]")
@click.option("--seed", type=int, default=None)
@click.option("--backend", default="openai", show_default=True)
@click.option("--cycle", "cycle_id", default=None, help="Cycle this job belongs to.")
@click.option("--key", "idempotency_key", default=None, help="Idempotency key of this launch.")
@click.option("--wait/--no-wait", default=False, help="Follow the job until it ends.")
@click.option("--poll-seconds", type=float, default=None, help="How often --wait syncs.")
@click.pass_context
def jobs_launch(ctx: click.Context, /, dataset_id: str, **options: Any) -> None:
    """Fine-tune DATASET_ID: export, validate, upload, start (once: again is the same job)."""
    settings = _settings(ctx)
    hyper = {
        "n_epochs": options["epochs"] or "auto",
        "batch_size": options["batch_size"] or "auto",
        "learning_rate_multiplier": options["lr_multiplier"] or "auto",
    }
    config = TrainingConfig(
        base_model=options["base_model"],
        suffix=options["suffix"],
        method=options["method"],
        beta=options["beta"],
        hyperparameters=Hyperparameters(**hyper),
        seed=options["seed"],
    )
    with _engine(settings) as engine:
        job = launch_job(
            engine,
            backend_from_settings(settings, options["backend"]),
            dataset_id,
            config,
            cycle_id=options["cycle_id"],
            idempotency_key=options["idempotency_key"],
            file_wait_seconds=settings.training_file_wait_seconds,
            redact=export_hook(settings),
        )
        if options["wait"] and job.state not in TERMINAL_TRAINING_STATES:
            _follow(
                engine, settings, job, options["poll_seconds"] or settings.training_poll_seconds
            )
        _show(job_detail(engine, job.id))


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job at its backend."""
    settings = _settings(ctx)
    with _engine(settings) as engine:
        job = job_detail(engine, job_id).job
        click.echo(_line(cancel_job(engine, backend_from_settings(settings, job.backend), job_id)))


@jobs.command("sync")
@click.argument("job_id", required=False)
@click.pass_context
def jobs_sync(ctx: click.Context, job_id: str | None) -> None:
    """Read a job (or, without JOB_ID, every open job) from its backend now."""
    settings = _settings(ctx)
    with _engine(settings) as engine:
        if job_id is None:
            found = resume_open_jobs(
                engine,
                lambda name: backend_from_settings(settings, name),
                file_wait_seconds=settings.training_file_wait_seconds,
                redact=export_hook(settings),
            )
        else:
            job = job_detail(engine, job_id).job
            found = [sync_job(engine, backend_from_settings(settings, job.backend), job_id)]
        for job in found:
            click.echo(_line(job))
