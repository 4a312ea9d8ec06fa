"""Promotion: a student takes over an alias, canary first, and gives it back on a regression.

Every step is an ordinary alias change (action ``promote``, or ``rollback``) with who and
why in the alias's history, made in the same transaction as the promotion row that records
it. The version before the promotion is kept, so a rollback is one pointer move.

    PromotionError          any refusal; ``param`` and ``code`` name the problem
    ├── PromotionNotFound   no such promotion, or no such alias
    ├── PromotionConflict   a canary under way, decided already, alias changed since
    ├── InvalidPromotion    no teacher to fall back on, student is the teacher, bad upstream,
    │                       no weights to serve the student with
    └── StudentUnavailable  a replica of the student's upstream did not load it

A self-hosted student (an upstream of kind ``vllm`` or ``transformers``) is made servable on
every replica before the alias points at it, and again before a canary goes full; students no
route can return to are unloaded after a promotion starts (``finetune.routing``).

Ending a canary (or undoing a full promotion) first claims its row with a conditional update,
so of two processes (or a person and the cycle runner) deciding at once, exactly one changes
the alias.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from finetune.routing._aliases import rollback_alias, set_alias
from finetune.routing._canary import CanaryPolicy, canary_signals, judge_canary
from finetune.routing._routing import (
    AliasConfig,
    AliasConflict,
    AliasError,
    AliasNotFound,
    TargetSpec,
)
from finetune.routing._serving import ServingError, StudentNotServed, StudentServing
from storage import (
    Promotion,
    alias_signals,
    end_promotion,
    get_alias,
    get_alias_version,
    insert_promotion,
    new_promotion_id,
    open_promotion,
    open_promotions,
    record_signals,
    session_scope,
    update_promotion,
    utcnow,
)
from storage import get_promotion as stored_promotion
from storage import list_promotions as stored_promotions

log = logging.getLogger("stillroom.promotion")

SYSTEM_ACTOR = "stillroom"
EndStage = Literal["full", "rolled_back", "aborted"]


class PromotionError(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class PromotionNotFound(PromotionError):
    pass


class PromotionConflict(PromotionError):
    pass


class InvalidPromotion(PromotionError):
    pass


class StudentUnavailable(PromotionError):
    pass


def _ensure_served(serving: StudentServing | None, upstream: str, model: str) -> None:
    """Every replica of ``upstream`` serves ``model``, or the promotion is refused."""
    if serving is None:
        return
    try:
        serving.prepare(upstream, model)
    except ServingError as exc:
        kind = StudentUnavailable if isinstance(exc, StudentNotServed) else InvalidPromotion
        raise kind(exc.message, param=exc.param, code=exc.code) from None


def _release_unused(serving: StudentServing | None, engine: Engine, upstream: str) -> None:
    if serving is None:
        return
    try:
        serving.release_unused(engine, upstream)
    except Exception as exc:  # noqa: BLE001 - the promotion stands; the next one sweeps again
        log.warning("upstream %s: unused students not unloaded: %s", upstream, exc)


@contextmanager
def _refusals() -> Iterator[None]:
    """An alias refusal met on the way is the promotion's refusal, in its own tree."""
    try:
        yield
    except AliasError as exc:
        kinds = {AliasNotFound: PromotionNotFound, AliasConflict: PromotionConflict}
        kind = kinds.get(type(exc), InvalidPromotion)
        raise kind(exc.message, param=exc.param, code=exc.code) from None


def _teacher(alias: str, version: int, session: Session) -> TargetSpec:
    row = get_alias_version(alias, version, session=session)
    assert row is not None, "an alias always points at a version it wrote"
    teacher = next(
        (t for t in map(TargetSpec.model_validate, row.targets) if t.role == "teacher"), None
    )
    if teacher is None:
        raise InvalidPromotion(
            f"Alias {alias!r} has no teacher target: a student needs one to fall back on "
            "and to be compared with.",
            param="name",
            code="no_teacher",
        )
    return teacher


def _config(teacher: TargetSpec, student: TargetSpec, percent: float, shadow: float) -> AliasConfig:
    """The student at ``percent`` of the traffic; the teacher keeps the rest, or weight 0 at
    full, where it still answers fallbacks and shadow traffic."""
    return AliasConfig(
        targets=[
            teacher.model_copy(update={"weight": 100 - percent}),
            student.model_copy(update={"weight": percent}),
        ],
        shadow_rate=shadow,
    )


def _history(promotion_id: str, what: str, reason: str | None) -> str:
    text = f"promotion {promotion_id}: {what}" + (f" ({reason})" if reason else "")
    return text[:2000]


def start_promotion(
    engine: Engine,
    alias: str,
    model: str,
    *,
    upstream: str = "default",
    policy: CanaryPolicy,
    actor: str,
    reason: str | None = None,
    cycle_id: str | None = None,
    known_upstreams: Iterable[str] | None = None,
    now: datetime | None = None,
    serving: StudentServing | None = None,
) -> Promotion:
    """Give ``model`` (on ``upstream``) ``policy.canary_percent`` of ``alias``'s traffic, or all
    of it when that is 0; the alias's teacher keeps the rest and any other student leaves.

    With ``serving``, every replica of a self-hosted upstream serves ``model`` first (or the
    promotion is refused), and students no route can return to are unloaded after."""
    if not model.strip() or len(model) > 200:
        raise InvalidPromotion("'model' must be a model name.", param="model", code="invalid_model")
    # Outside the transaction: loading an adapter takes seconds, and no row waits on it.
    _ensure_served(serving, upstream, model)
    started = now or utcnow()
    promotion_id = new_promotion_id()
    straight = policy.canary_percent == 0
    student = TargetSpec(upstream=upstream, model=model, weight=0, role="student")
    try:
        with _refusals(), session_scope(engine) as session:
            found = get_alias(alias, session=session, for_update=True)
            if found is None:
                raise PromotionNotFound(
                    f"No alias {alias!r}.", param="name", code="alias_not_found"
                )
            before = found.current_version
            teacher = _teacher(alias, before, session)
            if teacher.model == model:
                raise InvalidPromotion(
                    f"{model!r} is the teacher of {alias!r}; promote a different model.",
                    param="model",
                    code="student_is_teacher",
                )
            under_way = open_promotion(alias, session=session)
            if under_way is not None:
                raise _under_way(under_way)
            percent = 100.0 if straight else policy.canary_percent
            what = f"full to {model}" if straight else f"canary {percent:g}% to {model}"
            view = set_alias(
                alias,
                _config(teacher, student, percent, policy.shadow_rate_after),
                actor=actor,
                reason=_history(promotion_id, what, reason),
                action="promote",
                known_upstreams=known_upstreams,
                session=session,
            )
            promotion = insert_promotion(
                Promotion(
                    id=promotion_id,
                    alias=alias,
                    model=model,
                    upstream=upstream,
                    stage="full" if straight else "canary",
                    canary_percent=policy.canary_percent,
                    policy=policy.model_dump(),
                    from_version=before,
                    canary_version=None if straight else view.version,
                    full_version=view.version if straight else None,
                    actor=actor,
                    reason=reason,
                    cycle_id=cycle_id,
                    started_at=started,
                    decided_at=started if straight else None,
                    decided_by=actor if straight else None,
                    outcome="went straight to full, without a canary" if straight else None,
                ),
                session=session,
            )
    except IntegrityError:
        raise PromotionConflict(
            f"Alias {alias!r} has a promotion under way already.",
            param="name",
            code="promotion_in_progress",
        ) from None
    log.info(
        "alias %s: promotion %s of %s started (%s)", alias, promotion_id, model, promotion.stage
    )
    _release_unused(serving, engine, upstream)
    return promotion


def _under_way(promotion: Promotion) -> PromotionConflict:
    return PromotionConflict(
        f"Alias {promotion.alias!r} has promotion {promotion.id} under way (canary of "
        f"{promotion.model}); make it full or abort it first.",
        param="name",
        code="promotion_in_progress",
    )


def get_promotion(engine: Engine, promotion_id: str) -> Promotion:
    with session_scope(engine) as session:
        found = stored_promotion(promotion_id, session=session)
    if found is None:
        raise PromotionNotFound(
            f"No promotion {promotion_id!r}.", param="promotion_id", code="promotion_not_found"
        )
    return found


def list_promotions(
    engine: Engine, *, alias: str | None = None, limit: int = 100
) -> list[Promotion]:
    """Newest first."""
    with session_scope(engine) as session:
        return stored_promotions(session=session, alias=alias, limit=limit)


def _decide(
    engine: Engine,
    promotion: Promotion,
    stage: EndStage,
    outcome: str,
    *,
    actor: str,
    at: datetime,
    signals: dict[str, Any] | None = None,
    from_stage: str = "canary",
    serving: StudentServing | None = None,
) -> bool:
    """End the canary (or undo a full promotion) at ``stage``, changing the alias to match:
    full writes a new version, rolled_back and aborted return to the version before the
    promotion. False when it had left ``from_stage`` already. An alias changed under a canary
    is left alone and the canary aborted; under a full promotion, the undo is refused.
    Going full, the student must still be served on every replica (one may have restarted)."""
    if stage == "full":
        _ensure_served(serving, promotion.upstream, promotion.model)
    extra: dict[str, Any] = {"signals": signals, "checked_at": at} if signals is not None else {}
    with _refusals(), session_scope(engine) as session:
        # The claim comes first: it is what makes a second decider change nothing.
        claimed = end_promotion(
            promotion.id,
            stage,
            decided_at=at,
            decided_by=actor,
            outcome=outcome,
            changes=extra,
            session=session,
            from_stage=from_stage,
        )
        if not claimed:
            return False
        alias = get_alias(promotion.alias, session=session, for_update=True)
        undoing_full = from_stage == "full"
        expected = promotion.full_version if undoing_full else promotion.canary_version
        changed = alias is None or alias.current_version != expected
        if changed and undoing_full:
            raise PromotionConflict(
                f"Alias {promotion.alias!r} has changed since promotion {promotion.id} went "
                "full; roll the alias back instead.",
                param="promotion_id",
                code="alias_changed",
            )
        if alias is None or changed:
            where = "deleted" if alias is None else f"at version {alias.current_version}"
            stage, outcome = (
                "aborted",
                f"the alias was changed outside the promotion (now {where}) and is left as it "
                f"is; {outcome}",
            )
            update_promotion(promotion.id, stage=stage, outcome=outcome, session=session)
        elif stage == "full":
            assert promotion.canary_version is not None
            policy = CanaryPolicy.model_validate(promotion.policy)
            teacher = _teacher(promotion.alias, promotion.canary_version, session)
            student = TargetSpec(
                upstream=promotion.upstream, model=promotion.model, weight=0, role="student"
            )
            view = set_alias(
                promotion.alias,
                _config(teacher, student, 100.0, policy.shadow_rate_after),
                actor=actor,
                reason=_history(promotion.id, f"full to {promotion.model}", outcome),
                action="promote",
                session=session,
            )
            update_promotion(promotion.id, full_version=view.version, session=session)
        else:
            rollback_alias(
                promotion.alias,
                actor=actor,
                reason=_history(promotion.id, f"back from {promotion.model}", outcome),
                to_version=promotion.from_version,
                session=session,
            )
    log.info("alias %s: promotion %s %s: %s", promotion.alias, promotion.id, stage, outcome)
    return True


def _open_canary(engine: Engine, promotion_id: str) -> Promotion:
    promotion = get_promotion(engine, promotion_id)
    if promotion.stage != "canary":
        raise PromotionConflict(
            f"Promotion {promotion_id} is {promotion.stage.replace('_', ' ')} already.",
            param="promotion_id",
            code="promotion_decided",
        )
    return promotion


def promote_now(
    engine: Engine,
    promotion_id: str,
    *,
    actor: str,
    reason: str | None = None,
    serving: StudentServing | None = None,
) -> Promotion:
    """Make a canary full now, whatever its signals say."""
    promotion = _open_canary(engine, promotion_id)
    outcome = f"made full by {actor}" + (f": {reason}" if reason else "")
    if not _decide(engine, promotion, "full", outcome, actor=actor, at=utcnow(), serving=serving):
        _open_canary(engine, promotion_id)  # decided meanwhile by someone else: says by whom
    return get_promotion(engine, promotion_id)


def abort_promotion(
    engine: Engine, promotion_id: str, *, actor: str, reason: str | None = None
) -> Promotion:
    """Stop a canary now, or undo a full promotion while the alias is as it left it: the
    alias goes back to the version before the promotion."""
    promotion = get_promotion(engine, promotion_id)
    if promotion.stage != "full":
        promotion = _open_canary(engine, promotion_id)
    after = " after it went full" if promotion.stage == "full" else ""
    outcome = f"aborted by {actor}{after}" + (f": {reason}" if reason else "")
    if not _decide(
        engine, promotion, "aborted", outcome, actor=actor, at=utcnow(), from_stage=promotion.stage
    ):
        _open_canary(engine, promotion_id)  # decided meanwhile by someone else: says by whom
    return get_promotion(engine, promotion_id)


def advance_promotions(
    engine: Engine, *, now: datetime | None = None, serving: StudentServing | None = None
) -> list[Promotion]:
    """Judge every canary on its online signals since it started: roll it back on a regression,
    make it full once its time or sample is reached, else record the signals and wait.

    Returns the promotions this call decided. Safe to call from several processes at once:
    each canary is decided once."""
    at = now or utcnow()
    decided: list[Promotion] = []
    with session_scope(engine) as session:
        canaries = open_promotions(session=session)
    for promotion in canaries:
        with session_scope(engine) as session:
            alias = get_alias(promotion.alias, session=session)
            served = alias_signals(promotion.alias, promotion.started_at, session=session, until=at)
            teacher = None
            if alias is not None and alias.current_version == promotion.canary_version:
                teacher = _teacher(promotion.alias, alias.current_version, session).model
        signals = canary_signals(served, student=promotion.model, teacher=teacher or "")
        stage: EndStage
        if teacher is None:
            stage, outcome = "aborted", "the canary lost its alias version"
        else:
            verdict = judge_canary(
                signals,
                CanaryPolicy.model_validate(promotion.policy),
                started_at=promotion.started_at,
                now=at,
            )
            if verdict.action == "wait":
                with session_scope(engine) as session:
                    record_signals(promotion.id, signals, checked_at=at, session=session)
                continue
            stage = "full" if verdict.action == "full" else "rolled_back"
            outcome = verdict.reason
        try:
            if _decide(
                engine,
                promotion,
                stage,
                outcome,
                actor=SYSTEM_ACTOR,
                at=at,
                signals=signals,
                serving=serving,
            ):
                decided.append(get_promotion(engine, promotion.id))
        except PromotionError as exc:
            log.warning(
                "alias %s: promotion %s not decided: %s", promotion.alias, promotion.id, exc.message
            )
    return decided
