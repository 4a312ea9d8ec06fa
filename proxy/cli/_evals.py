"""``stillroom evals``: run a model (and its base) on a dataset's test split, list evaluations,
show one with its summary and worst examples.

The verbs call the same ``finetune`` services as the admin API, against the database and the
upstream from the settings. Progress bars go to stderr, so stdout stays the result alone.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AbstractContextManager
from typing import Any

import click
from sqlalchemy import Engine

from finetune import (
    EvaluationError,
    EvaluationReport,
    RunOptions,
    UpstreamCaller,
    create_evaluations,
    evaluation_report,
    get_dataset,
    list_evaluations,
    run_evaluation,
)
from proxy._settings import Settings
from proxy.admin._evals import upstream_client
from proxy.cli._support import cli_engine, cli_settings
from storage import Evaluation, EvaluationResult

_settings = cli_settings


def _engine(settings: Settings) -> AbstractContextManager[Engine]:
    return cli_engine(settings, (EvaluationError,))


def _figure(value: Any, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if percent else f"{value:g}"


def _line(evaluation: Evaluation) -> str:
    summary = evaluation.summary or {}
    rubric = (summary.get("rubric") or {}).get("mean")
    win_rate = (summary.get("pairwise") or {}).get("win_rate")
    return (
        f"{evaluation.id}  {evaluation.state:<9}  {evaluation.role:<9}  {evaluation.model}"
        f"  dataset={evaluation.dataset_id}  rubric={_figure(rubric)}"
        f"  win_rate={_figure(win_rate, percent=True)}"
    )


def _summary_lines(evaluation: Evaluation) -> list[str]:
    summary = evaluation.summary or {}
    lines = [_line(evaluation), f"judge:       {evaluation.judge_model}"]
    if evaluation.error:
        lines.append(f"error:       {evaluation.error}")
    if not summary:
        return lines
    rubric, pairwise = summary["rubric"], summary["pairwise"]
    lines += [
        f"examples:    {summary['examples']}  (model errors {summary['errors']},"
        f" judge errors {summary['judge_errors']})",
        f"rubric:      mean {_figure(rubric['mean'])} over {rubric['scored']}  "
        + " ".join(f"{score}:{count}" for score, count in rubric["histogram"].items()),
        f"pairwise:    win rate {_figure(pairwise['win_rate'], percent=True)}"
        f"  ({pairwise['wins']} won, {pairwise['ties']} tied, {pairwise['losses']} lost)",
        f"similarity:  {_figure(summary['similarity_mean'])}",
    ]
    for name, check in summary["checks"].items():
        lines.append(
            f"check:       {name:<20} {check['passed']}/{check['applied']}"
            f"  {_figure(check['rate'], percent=True)}"
        )
    return lines


def _worst_lines(results: list[EvaluationResult]) -> list[str]:
    lines = ["worst examples:"] if results else []
    for result in results:
        answer = (result.candidate_answer or {}).get("content") or result.error or ""
        why = result.rubric_reason or result.judge_error or ""
        lines.append(
            f"  #{result.position}  {result.capture_id}  score={_figure(result.rubric_score)}"
            f"  pairwise={result.pairwise_outcome or '-'}  {str(answer)[:60]!r}  {why[:80]}"
        )
    return lines


def _report(report: EvaluationReport) -> None:
    lines = _summary_lines(report.evaluation)
    if report.comparison is not None and report.base is not None:
        lines.append(f"against base {report.base.model} ({report.base.id}):")
        for name in ("rubric_mean", "win_rate", "similarity_mean", "errors"):
            figure = report.comparison[name]
            lines.append(
                f"  {name:<16} {_figure(figure['candidate'])} vs {_figure(figure['base'])}"
                f"  delta {_figure(figure['delta'])}"
            )
    lines += _worst_lines(report.worst)
    click.echo("\n".join(lines))


@click.group()
def evals() -> None:
    """Evaluations: a model's answers on a dataset's test split, scored against the teacher's."""


@evals.command("run")
@click.argument("dataset_id")
@click.argument("model")
@click.option("--base-model", help="Evaluate this model too, so the gain shows.")
@click.option("--judge-model", help="[default: the judge_model setting]")
@click.option("--concurrency", type=click.IntRange(1, 256), help="Upstream calls in flight.")
@click.option("--seed", type=int, default=0, show_default=True, help="Pairwise order seed.")
@click.option("--worst", type=click.IntRange(0, 100), default=5, show_default=True)
@click.pass_context
def evals_run(
    ctx: click.Context,
    dataset_id: str,
    model: str,
    base_model: str | None,
    judge_model: str | None,
    concurrency: int | None,
    seed: int,
    worst: int,
) -> None:
    """Run MODEL (and --base-model) on DATASET_ID's test split through the upstream, and
    print the report."""
    settings = _settings(ctx)
    options = RunOptions(concurrency=concurrency or settings.eval_concurrency, seed=seed)
    with _engine(settings) as engine:
        created = create_evaluations(
            engine,
            dataset_id,
            model,
            base_model=base_model,
            judge_model=judge_model or settings.judge_model,
            config=options.as_config(),
        )
        asyncio.run(_run_all(engine, settings, created, options))
        reports = [evaluation_report(engine, e.id, worst=worst) for e in created[:1]]
    for report in reports:
        _report(report)


async def _run_all(
    engine: Engine, settings: Settings, created: list[Evaluation], options: RunOptions
) -> None:
    client = upstream_client(settings)
    caller = UpstreamCaller(client, options)
    label = " and ".join(e.model for e in created)
    examples = get_dataset(engine, created[0].dataset_id).counts.get("test", 0)
    try:
        with click.progressbar(
            length=examples * len(created), label=f"evaluating {label}", file=sys.stderr
        ) as bar:
            await asyncio.gather(
                *(
                    run_evaluation(
                        engine, client, e.id, progress=lambda *_: bar.update(1), caller=caller
                    )
                    for e in created
                )
            )
    finally:
        await client.close()


@evals.command("list")
@click.option("--dataset", "dataset_id", help="Only evaluations on this dataset.")
@click.pass_context
def evals_list(ctx: click.Context, dataset_id: str | None) -> None:
    """Evaluations, newest first."""
    with _engine(_settings(ctx)) as engine:
        found = list_evaluations(engine, dataset_id=dataset_id)
    for evaluation in found:
        click.echo(_line(evaluation))


@evals.command("show")
@click.argument("evaluation_id")
@click.option("--worst", type=click.IntRange(0, 100), default=10, show_default=True)
@click.pass_context
def evals_show(ctx: click.Context, evaluation_id: str, worst: int) -> None:
    """An evaluation's summary, its comparison with the base model, and its worst examples."""
    with _engine(_settings(ctx)) as engine:
        report = evaluation_report(engine, evaluation_id, worst=worst)
    _report(report)
