"""Evaluation: a candidate answers a dataset's test split and is scored against the teacher by
LLM judges and deterministic checks; evaluations are leased, resumable and run by a worker.
"""

from finetune.evaluation._checks import (
    PASS_FAIL_CHECKS,
    run_checks,
)
from finetune.evaluation._evaluate import (
    EvaluationProgress,
    RunOptions,
    UpstreamCaller,
    retry_after_seconds,
)
from finetune.evaluation._judge import (
    BadVerdict,
    CallFailed,
    PairwiseVerdict,
    RubricVerdict,
    judge_pairwise,
    judge_rubric,
    parse_pairwise,
    parse_rubric,
)
from finetune.evaluation._lease import (
    EvaluationLease,
    LeaseLost,
)
from finetune.evaluation._report import (
    DEFAULT_JUDGE_MODEL,
    EvaluationError,
    EvaluationNotFound,
    EvaluationReport,
    InvalidEvaluationRequest,
    compare_summaries,
    create_evaluations,
    evaluation_report,
    evaluation_results,
    list_evaluations,
    require_evaluation,
    summarise_results,
)
from finetune.evaluation._run import (
    run_claimed,
    run_evaluation,
)
from finetune.evaluation._worker import (
    EvaluationWorker,
)

__all__ = [
    "DEFAULT_JUDGE_MODEL",
    "PASS_FAIL_CHECKS",
    "BadVerdict",
    "CallFailed",
    "EvaluationError",
    "EvaluationLease",
    "EvaluationNotFound",
    "EvaluationProgress",
    "EvaluationReport",
    "EvaluationWorker",
    "InvalidEvaluationRequest",
    "LeaseLost",
    "PairwiseVerdict",
    "RubricVerdict",
    "RunOptions",
    "UpstreamCaller",
    "compare_summaries",
    "create_evaluations",
    "evaluation_report",
    "evaluation_results",
    "judge_pairwise",
    "judge_rubric",
    "list_evaluations",
    "parse_pairwise",
    "parse_rubric",
    "require_evaluation",
    "retry_after_seconds",
    "run_checks",
    "run_claimed",
    "run_evaluation",
    "summarise_results",
]
