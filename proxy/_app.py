"""``create_app(settings)`` builds everything; importing this module builds nothing."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.types import Receive, Scope, Send

from finetune import storage_redactor
from proxy._database import DatabaseWatch
from proxy._edge import edge_middleware
from proxy._errors import EXCEPTION_HANDLERS
from proxy._metrics import Metrics
from proxy._services import Services
from proxy._settings import Settings
from proxy._workers import shared_metrics_dir_of_this_process
from proxy.admin import CONTROLLERS, admin_guard, cycle_runner, evaluation_worker, job_tracker
from proxy.gateway import (
    ROUTES,
    Authenticator,
    CaptureSink,
    Forwarder,
    HotPath,
    PassThrough,
    RouteTable,
    ShadowRunner,
    StoredCompletions,
    StoredResponses,
    Upstream,
    create_feedback,
    list_models,
    named_upstreams,
    student_serving,
)
from proxy.ui import ui_router
from storage import make_engine

log = logging.getLogger("stillroom")


def _settle_garbage_collector() -> None:
    """Keep full collections off the request path.

    Everything alive at start-up (modules, the app) is frozen out of the collector, and the
    youngest generation is collected less often: a request allocates many short-lived
    objects, and under load the default thresholds made collections of the whole heap show
    up as 80 ms stalls at p99 (measured with `make bench`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1_000)


class Stillroom(Litestar):
    """The app: ``HotPath`` answers the two create calls before routing; the framework, the rest."""

    hot_path: HotPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        hot = self.hot_path
        if hot is not None:
            api = hot.endpoint(scope)
            if api is not None:
                await hot(api, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> Litestar:
    engine = make_engine(settings.database_url)
    metrics = Metrics(shared_dir=shared_metrics_dir_of_this_process())
    # The writer has its own engine, whose statements give up instead of waiting on a stall.
    writer_engine = make_engine(
        settings.database_url,
        pool_size=1,
        statement_timeout_seconds=settings.capture_write_timeout_seconds,
    )
    database = DatabaseWatch(
        engine, migrate=settings.migrate, poll_seconds=settings.spool_retry_seconds
    )
    sink = CaptureSink(
        writer_engine,
        metrics,
        spool_dir=settings.spool_dir,
        batch_size=settings.capture_batch_size,
        queue_limit=settings.capture_queue_limit,
        flush_seconds=settings.capture_flush_seconds,
        retry_seconds=settings.spool_retry_seconds,
        rules=settings.rules,
        redactor=storage_redactor(settings.redaction),
        schema_ready=database.schema_ready,
    )
    upstream = Upstream(
        name="default",
        base_url=settings.upstream_base_url,
        timeout_seconds=settings.upstream_timeout_seconds,
        connect_timeout_seconds=settings.upstream_connect_timeout_seconds,
    )
    upstream_key = (
        settings.upstream_api_key.get_secret_value() if settings.upstream_api_key else None
    )
    routes = RouteTable(engine, refresh_seconds=settings.route_refresh_seconds)
    shadows = ShadowRunner(max_in_flight=settings.shadow_max_in_flight)
    extra_upstreams, upstream_keys = named_upstreams(settings)
    serving = student_serving(settings)
    runner = cycle_runner(settings, engine)
    found = Services(
        settings=settings,
        engine=engine,
        database=database,
        metrics=metrics,
        sink=sink,
        upstream=upstream,
        auth=Authenticator(
            engine,
            upstream_key=upstream_key,
            allow_client_keys=settings.allow_client_keys,
            cache_seconds=settings.key_cache_seconds,
            stale_seconds=settings.key_cache_stale_seconds,
        ),
        forwarder=Forwarder(
            upstream,
            sink,
            metrics,
            routes=routes,
            shadows=shadows,
            extra_upstreams=extra_upstreams,
            upstream_keys=upstream_keys,
            upstream_model=serving.upstream_model,
            max_request_bytes=settings.max_request_bytes,
            engine=engine,
            history_wait_seconds=settings.capture_flush_seconds * 2 + 0.5,
        ),
        passthrough=PassThrough(upstream, metrics),
        stored=StoredCompletions(engine),
        stored_responses=StoredResponses(engine),
        routes=routes,
        shadows=shadows,
        extra_upstreams=extra_upstreams,
        serving=serving,
        cycles=runner,
    )

    tracker = job_tracker(settings, engine)
    evaluations = evaluation_worker(settings, engine, serving=serving)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # First: the writer holds captures in the spool until the schema is known good.
        await database.start()
        sink.start()
        metrics.start()
        tracker.start()
        runner.start()
        await upstream.open()
        for extra in extra_upstreams.values():
            await extra.open()
        await routes.start()
        await evaluations.start()
        _settle_garbage_collector()
        log.info("stillroom ready: upstream %s", settings.upstream_base_url)
        try:
            yield
        finally:
            # Side by side: each may wait on a stalled database, and their waits must not add
            # up. Evaluations under way go back to pending, for the next runner to resume.
            await asyncio.gather(
                anyio.to_thread.run_sync(runner.stop),
                anyio.to_thread.run_sync(tracker.stop),
                evaluations.stop(),
            )
            await routes.stop()
            await database.stop()
            # Shadows still running get a moment, then are cancelled (and captured as such).
            await shadows.close(grace_seconds=5)
            for extra in extra_upstreams.values():
                await extra.close()
            await upstream.close()
            # Joining the writer blocks; a thread keeps the loop free while it drains.
            # Bounded: a writer stuck past its own statement timeout has its captures spooled.
            drain_seconds = settings.capture_write_timeout_seconds + 5
            await anyio.to_thread.run_sync(sink.close, drain_seconds)
            writer_engine.dispose()
            engine.dispose()
            metrics.stop()
            log.info("stillroom stopped; captures flushed")

    app = Stillroom(
        middleware=[edge_middleware(settings.client_write_timeout_seconds)],
        route_handlers=[
            list_models,
            *ROUTES,
            create_feedback,
            *CONTROLLERS,
            ui_router(),
        ],
        lifespan=[lifespan],
        state=State({"services": found, "evaluation_worker": evaluations}),
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_request_bytes,
        openapi_config=OpenAPIConfig(
            title="stillroom admin API",
            version="0.1.0",
            # The documentation is admin surface too: behind the admin key, like /admin.
            openapi_router=Router(
                "/admin/docs", route_handlers=[], guards=[admin_guard], include_in_schema=False
            ),
            render_plugins=[SwaggerRenderPlugin()],
        )
        if settings.admin_docs
        else None,
        logging_config=None,
        debug=False,
    )
    app.hot_path = HotPath(
        found.forwarder,
        found.auth,
        max_body_bytes=settings.max_request_bytes,
        write_timeout_seconds=settings.client_write_timeout_seconds,
    )
    return app
