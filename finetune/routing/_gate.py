"""The promotion gate: does an evaluated candidate earn a place in front of users?

A pure function of the candidate's evaluation summary (and its base model's, when there is
one) and the thresholds of ``GatePolicy``. Every criterion gives one plain sentence, passed or
failed, so a refused promotion says exactly why, and the figures behind the sentences are kept
beside them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GatePolicy(BaseModel):
    """Thresholds a candidate's evaluation must meet to be promoted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_examples: int = Field(default=20, ge=1)
    """Fewest test examples the candidate must have been evaluated on."""
    min_rubric_mean: float = Field(default=4.0, ge=1, le=5)
    """Lowest mean of the judge's 1-5 rubric scores (over the answers it scored)."""
    min_win_rate: float = Field(default=0.4, ge=0, le=1)
    """Lowest pairwise win rate against the teacher: (wins + ties / 2) / compared, as
    ``summarise_results`` computes it. 0.5 means as good as the teacher."""
    max_error_rate: float = Field(default=0.02, ge=0, le=1)
    """Highest share of test examples the candidate failed to answer at all."""
    min_check_pass_rate: float = Field(default=0.95, ge=0, le=1)
    """Lowest pass rate of each deterministic check (valid JSON, same tools, ...), counted
    over the examples it applied to; a check that never applied is not judged."""
    gated_checks: tuple[str, ...] = (
        "json_valid",
        "json_required_keys",
        "tool_names",
        "tool_arguments",
        "no_tool_call",
    )
    """The deterministic checks held to ``min_check_pass_rate``: whether an answer is usable.
    ``exact_match`` is left out by default: a good student rarely words an answer exactly as
    the teacher did, and the judges already weigh what it says."""
    min_gain_over_base: float | None = Field(default=None, ge=-4, le=4)
    """Rubric-mean improvement needed over the base model's evaluation, when one exists;
    None does not ask for any."""


class GateDecision(BaseModel):
    """The gate's verdict, each criterion in words, and the figures behind them."""

    model_config = ConfigDict(frozen=True)

    passed: bool
    reasons: list[str]
    """One sentence per criterion, starting ``passed:`` or ``failed:``."""
    figures: dict[str, Any]
    """examples, errors, error_rate, rubric_mean, rubric_scored, win_rate, compared, checks
    (name -> rate), base_rubric_mean and gain_over_base (None without a base)."""


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


class _Verdicts:
    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.failed = False

    def add(self, ok: bool, text: str) -> None:
        self.failed = self.failed or not ok
        self.reasons.append(f"{'passed' if ok else 'failed'}: {text}")


def _check_rates(summary: Mapping[str, Any], gated: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    checks = summary.get("checks") or {}
    return {
        name: dict(figures)
        for name, figures in sorted(checks.items())
        if name in gated and isinstance(figures, Mapping) and figures.get("applied")
    }


def decide_gate(
    summary: Mapping[str, Any],
    base_summary: Mapping[str, Any] | None,
    policy: GatePolicy,
) -> GateDecision:
    """Judge a candidate's evaluation summary (``summarise_results``) against ``policy``."""
    verdicts = _Verdicts()
    examples = int(summary.get("examples") or 0)
    errors = int(summary.get("errors") or 0)
    rubric = summary.get("rubric") or {}
    pairwise = summary.get("pairwise") or {}
    mean = rubric.get("mean")
    win_rate = pairwise.get("win_rate")
    compared = int(pairwise.get("compared") or 0)
    error_rate = errors / examples if examples else None

    verdicts.add(
        examples >= policy.min_examples,
        f"{examples} test examples evaluated (at least {policy.min_examples} needed)",
    )
    if error_rate is None:
        verdicts.add(False, "no test example was answered, so the error rate is unknown")
    else:
        verdicts.add(
            error_rate <= policy.max_error_rate,
            f"the candidate failed to answer {errors} of {examples} examples "
            f"({_percent(error_rate)}; at most {_percent(policy.max_error_rate)} allowed)",
        )
    if mean is None:
        verdicts.add(False, "the judge scored no answer, so the rubric mean is unknown")
    else:
        verdicts.add(
            mean >= policy.min_rubric_mean,
            f"rubric mean {mean:.2f} over {rubric.get('scored', 0)} scored answers "
            f"(at least {policy.min_rubric_mean:.2f} needed)",
        )
    if win_rate is None:
        verdicts.add(False, "no pairwise comparison with the teacher, so the win rate is unknown")
    else:
        verdicts.add(
            win_rate >= policy.min_win_rate,
            f"win rate against the teacher {win_rate:.2f} (wins plus half the ties over "
            f"{compared} compared; at least {policy.min_win_rate:.2f} needed)",
        )

    checks = _check_rates(summary, policy.gated_checks)
    if not checks:
        verdicts.add(True, "no deterministic check applied to these examples")
    for name, check in checks.items():
        applied = int(check["applied"])
        passed = int(check.get("passed") or 0)
        rate = passed / applied
        verdicts.add(
            rate >= policy.min_check_pass_rate,
            f"check {name} passed {passed} of {applied} ({_percent(rate)}; at least "
            f"{_percent(policy.min_check_pass_rate)} needed)",
        )

    base_mean = (base_summary or {}).get("rubric", {}).get("mean")
    gain = round(mean - base_mean, 4) if mean is not None and base_mean is not None else None
    if policy.min_gain_over_base is not None:
        if base_mean is None:
            verdicts.add(True, "no base evaluation to compare with, so no gain is required")
        elif gain is None:
            verdicts.add(False, "the candidate has no rubric mean to compare with the base's")
        else:
            verdicts.add(
                gain >= policy.min_gain_over_base,
                f"rubric mean {gain:+.2f} over the base model's {base_mean:.2f} "
                f"(at least {policy.min_gain_over_base:+.2f} needed)",
            )

    figures: dict[str, Any] = {
        "examples": examples,
        "errors": errors,
        "error_rate": round(error_rate, 4) if error_rate is not None else None,
        "rubric_mean": mean,
        "rubric_scored": rubric.get("scored", 0),
        "win_rate": win_rate,
        "compared": compared,
        "checks": {
            name: round(int(f.get("passed") or 0) / int(f["applied"]), 4)
            for name, f in checks.items()
        },
        "base_rubric_mean": base_mean,
        "gain_over_base": gain,
    }
    return GateDecision(passed=not verdicts.failed, reasons=verdicts.reasons, figures=figures)
