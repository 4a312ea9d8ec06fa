"""What the handlers use, built once per app by ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request
from sqlalchemy import Engine

from finetune import CycleRunner, StudentServing
from proxy._database import DatabaseWatch
from proxy._metrics import Metrics
from proxy._settings import Settings

if TYPE_CHECKING:
    # Types only: the gateway's handlers import this module to find their services.
    from proxy.gateway._auth import Authenticator
    from proxy.gateway._forward import Forwarder
    from proxy.gateway._passthrough import PassThrough
    from proxy.gateway._router import RouteTable
    from proxy.gateway._shadow import ShadowRunner
    from proxy.gateway._sink import CaptureSink
    from proxy.gateway._stored import StoredCompletions
    from proxy.gateway._stored_responses import StoredResponses
    from proxy.gateway._upstream import Upstream


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: Engine
    database: DatabaseWatch
    metrics: Metrics
    sink: CaptureSink
    upstream: Upstream
    auth: Authenticator
    forwarder: Forwarder
    passthrough: PassThrough
    stored: StoredCompletions
    stored_responses: StoredResponses
    routes: RouteTable
    shadows: ShadowRunner
    extra_upstreams: dict[str, Upstream]
    """The named upstreams of ``settings.upstreams``, beside ``upstream`` (``default``)."""
    serving: StudentServing | None = None
    """Loads self-hosted students on the upstreams that serve them before a promotion."""
    cycles: CycleRunner | None = None
    """Starts and moves cycles while this process holds the cycle lease."""

    @property
    def upstream_names(self) -> list[str]:
        return [self.upstream.name, *self.extra_upstreams]


def services(request: Request[Any, Any, Any]) -> Services:
    found: Services = request.app.state.services
    return found
