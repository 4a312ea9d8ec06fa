"""The curation rules admin API under /admin/rules: what is configured, and running it on demand
over stored captures (a dry run counts what a real run would change)."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from pydantic import BaseModel, ConfigDict

from finetune import RuleConfig, RulesReport, run_rules
from proxy._services import services
from proxy.admin._base import admin_guard
from storage import CaptureFilter


class RulePublic(BaseModel):
    name: str
    action: str
    tag: str | None
    when: dict[str, Any]
    """Only the conditions the rule sets; regular expressions as written."""


def rule_public(rule: RuleConfig) -> RulePublic:
    return RulePublic(
        name=rule.name,
        action=rule.action,
        tag=rule.tag,
        when=rule.when.model_dump(mode="json", exclude_defaults=True),
    )


class RulesRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: CaptureFilter = CaptureFilter()
    """Which captures to evaluate; empty: all."""
    dry_run: bool = False
    """Count what would change, change nothing."""
    include_reviewed: bool = False
    """Let rules change captures a reviewer already approved or rejected."""


class RulesController(Controller):
    path = "/admin/rules"
    guards = [admin_guard]
    tags = ["admin", "rules"]

    @get("/")
    async def list_rules(self, request: Request[Any, Any, Any]) -> list[RulePublic]:
        """The configured curation rules, in the order they run."""
        return [rule_public(rule) for rule in services(request).settings.rules]

    @post("/run", status_code=200)
    async def run(self, request: Request[Any, Any, Any], data: JSONBody[RulesRun]) -> RulesReport:
        """Run the rules over the captures matching a filter; per rule, how many it changes."""
        found = services(request)

        def work() -> RulesReport:
            return run_rules(
                found.engine,
                found.settings.rules,
                data.filter,
                dry_run=data.dry_run,
                include_reviewed=data.include_reviewed,
            )

        return await anyio.to_thread.run_sync(work)
