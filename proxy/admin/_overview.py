"""The overview under /admin/overview: traffic, capture rate and cost per alias (teacher against
student, and the saving) over the last hours, for the console's charts.

Costs use the ``model_prices`` setting over OpenAI's list prices; how roles, costs and the
saving are reckoned is told in ``finetune.costs._overview``.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from litestar import Controller, Request, get
from litestar.params import QueryParameter

from finetune import MAX_OVERVIEW_HOURS, Overview, build_overview, usage_price_table
from proxy._services import services
from proxy.admin._base import admin_guard

Hours = Annotated[
    int,
    QueryParameter(
        ge=1,
        le=MAX_OVERVIEW_HOURS,
        description="The window: this many hours up to now; charted by the hour up to 48.",
    ),
]


class OverviewController(Controller):
    path = "/admin/overview"
    guards = [admin_guard]
    tags = ["overview"]

    @get("/")
    async def overview(self, request: Request[Any, Any, Any], hours: Hours = 24) -> Overview:
        """Traffic per bucket, usage and cost per alias and per model, and the totals."""
        found = services(request)
        prices = usage_price_table(found.settings.model_prices)
        return await anyio.to_thread.run_sync(
            lambda: build_overview(found.engine, hours=hours, prices=prices)
        )
