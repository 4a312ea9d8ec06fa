"""Timing the first page of a filtered capture list: the service the admin API calls, and the
API itself over HTTP.

Each filter is written as the admin API's query parameters and turned into a ``CaptureFilter``
by the same ``filter_from_params`` the API uses, so both measure the very same query. Every call
is one unit of work (``session_scope``), as a request is.
"""

from __future__ import annotations

import functools
import http.client
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson
from sqlalchemy import Engine, Executable, Select, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from bench.curation_corpus import ABSENT_TERM, SEARCH_TERMS
from bench.load import percentile
from bench.processes import Fleet, free_port, wait_until_healthy
from bench.targets import stillroom_binary
from finetune import CapturePage, filter_from_params, list_captures
from storage import Capture, CaptureFilter, capture_page_statement, filter_clauses, session_scope

PAGE_SIZE = 50
ADMIN_KEY = "bench-admin-key"
Params = list[tuple[str, str]]
T = TypeVar("T")


@dataclass(frozen=True)
class FilterCase:
    name: str
    params: Params
    second_page: bool = False
    """Also time the page after the first, through the cursor the first one returned."""


@dataclass
class PageTiming:
    name: str
    query: str
    """The admin API's query string."""
    matching: int
    """Captures the filter selects."""
    returned: int
    runs: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    via: str = "service"
    """service (``finetune.list_captures``) or http (``GET /admin/captures``)."""
    plan: str | None = None
    """EXPLAIN ANALYZE of the query, kept when the median is over the target."""


def filter_cases(newest: datetime) -> list[FilterCase]:
    """Filters an admin would use, with a last day and a day ten days back relative to the
    newest capture (the data is generated once and kept)."""
    day_ago = (newest - timedelta(days=1)).isoformat()
    ten_back, nine_back = newest - timedelta(days=10), newest - timedelta(days=9)
    week_ago = (newest - timedelta(days=7)).isoformat()
    common, rare, rarest = SEARCH_TERMS
    return [
        FilterCase("none (newest first)", [], second_page=True),
        FilterCase("status=approved", [("status", "approved")], second_page=True),
        FilterCase("status=pending & model=gpt-4o", [("status", "pending"), ("model", "gpt-4o")]),
        FilterCase("alias=sql-assistant", [("alias", "sql-assistant")]),
        FilterCase("tag=gold", [("tag", "gold")], second_page=True),
        FilterCase("metadata.team=legal", [("metadata.team", "legal")]),
        FilterCase("tag=escalated (no capture has it)", [("tag", "escalated")]),
        FilterCase("metadata.team=nobody (no match)", [("metadata.team", "nobody")]),
        FilterCase("created in the last day", [("created_after", day_ago)]),
        FilterCase(
            "created in one day, 10 days back",
            [("created_after", ten_back.isoformat()), ("created_before", nine_back.isoformat())],
            second_page=True,
        ),
        FilterCase("finish_reason=length", [("finish_reason", "length")]),
        FilterCase("has_tool_calls=true", [("has_tool_calls", "true")]),
        FilterCase("feedback=negative", [("feedback", "negative")]),
        FilterCase("error=true", [("error", "true")]),
        FilterCase("edited=true", [("edited", "true")], second_page=True),
        FilterCase("edited=false", [("edited", "false")]),
        FilterCase("min_total_tokens=600", [("min_total_tokens", "600")]),
        FilterCase(f"search={common} (~3 %)", [("search", common)], second_page=True),
        FilterCase(f"search={rare} (~0.4 %)", [("search", rare)]),
        FilterCase(f"search={rarest} (~0.05 %)", [("search", rarest)]),
        FilterCase(f"search={ABSENT_TERM} (no match)", [("search", ABSENT_TERM)]),
        FilterCase(
            "approved & alias=support-bot & finish=stop & no tools",
            [
                ("status", "approved"),
                ("alias", "support-bot"),
                ("finish_reason", "stop"),
                ("has_tool_calls", "false"),
            ],
        ),
        FilterCase(
            "approved & tag=gold & metadata.team=payments",
            [("status", "approved"), ("tag", "gold"), ("metadata.team", "payments")],
        ),
        FilterCase(
            "pending & feedback=negative & last 7 days",
            [("status", "pending"), ("feedback", "negative"), ("created_after", week_ago)],
        ),
    ]


def newest_capture(engine: Engine) -> datetime:
    with session_scope(engine) as session:
        newest = session.execute(select(func.max(Capture.created_at))).scalar_one()
    assert isinstance(newest, datetime)
    return newest


def count_matching(engine: Engine, capture_filter: CaptureFilter) -> int:
    table: Any = Capture.__table__  # type: ignore[attr-defined]
    stmt = select(func.count()).select_from(table)
    stmt = stmt.where(*filter_clauses(capture_filter, "postgresql"))
    with session_scope(engine) as session:
        return int(session.execute(stmt).scalar_one())


def _runs_for(first_s: float, runs: int, budget_s: float) -> int:
    """Fewer runs for a query too slow to repeat ``runs`` times within the budget."""
    return max(3, min(runs, int(budget_s / max(first_s, 1e-6))))


def _sample(
    call: Callable[[], T], runs: int, warmup: int, budget_s: float
) -> tuple[list[float], T]:
    """Timings of warm calls, and what the last call returned."""
    started = time.perf_counter()
    value = call()
    first = time.perf_counter() - started
    # A query that takes seconds is warm after one call; more would only spend the budget.
    for _ in range(warmup - 1 if first < 1.0 else 0):
        call()
    samples = []
    for _ in range(_runs_for(first, runs, budget_s)):
        started = time.perf_counter()
        value = call()
        samples.append(time.perf_counter() - started)
    return samples, value


def _timing(name: str, params: Params, samples: Sequence[float], **rest: Any) -> PageTiming:
    return PageTiming(
        name=name,
        query=urlencode(params),
        runs=len(samples),
        p50_ms=percentile(samples, 0.5) * 1000,
        p95_ms=percentile(samples, 0.95) * 1000,
        max_ms=max(samples) * 1000,
        **rest,
    )


class _Explain(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, BUFFERS)`` of a statement, its parameters bound as the real query's
    (JSONB ones included, which literal rendering cannot do)."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, BUFFERS) " + compiler.process(element.statement, **kw)


def explain(engine: Engine, capture_filter: CaptureFilter, cursor: str | None) -> str:
    stmt = capture_page_statement(capture_filter, "postgresql", cursor=cursor, limit=PAGE_SIZE)
    with session_scope(engine) as session:
        rows = session.execute(_Explain(stmt))
        return "\n".join(str(row[0]) for row in rows)


def time_service(
    engine: Engine,
    case: FilterCase,
    *,
    runs: int,
    warmup: int,
    budget_s: float,
    target_ms: float,
) -> list[PageTiming]:
    """The first page (and the second, when the case asks) through ``finetune.list_captures``."""
    capture_filter = filter_from_params(case.params)

    def page(cursor: str | None = None) -> CapturePage:
        with session_scope(engine) as session:
            return list_captures(capture_filter, session=session, cursor=cursor, limit=PAGE_SIZE)

    matching = count_matching(engine, capture_filter)
    first = page()
    results = []
    pages: list[tuple[str, str | None, Params]] = [(case.name, None, case.params)]
    if case.second_page and first.next_cursor is not None:
        after = first.next_cursor
        pages.append((f"{case.name} · page 2", after, [*case.params, ("cursor", after)]))
    for name, cursor, params in pages:
        samples, last = _sample(functools.partial(page, cursor), runs, warmup, budget_s)
        timing = _timing(name, params, samples, matching=matching, returned=len(last.items))
        if timing.p50_ms > target_ms:
            timing.plan = explain(engine, capture_filter, cursor)
        results.append(timing)
    return results


def time_http(
    database_url: str,
    cases: Sequence[FilterCase],
    workdir: Path,
    *,
    runs: int,
    warmup: int,
    budget_s: float,
) -> list[PageTiming]:
    """``GET /admin/captures?…`` on a running ``stillroom serve``, over one kept-alive
    connection (the cost of the API, not of opening TCP connections)."""
    binary = stillroom_binary()
    if binary is None:
        raise RuntimeError("no `stillroom` executable beside this Python or on PATH")
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "STILLROOM_DATABASE_URL": database_url,
            "STILLROOM_ADMIN_KEY": ADMIN_KEY,
            # Never called: the benchmark only reads /admin.
            "STILLROOM_UPSTREAM_BASE_URL": "http://127.0.0.1:9/v1",
            "STILLROOM_SPOOL_DIR": str(workdir / "spool"),
            "STILLROOM_LOG_LEVEL": "WARNING",
        }
    )
    fleet = Fleet(logdir=workdir)
    argv = [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    try:
        child = fleet.spawn("stillroom-admin", argv, env=env, cwd=workdir)
        wait_until_healthy(child, f"http://127.0.0.1:{port}/healthz", 90.0)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        results = []
        for case in cases:
            path = "/admin/captures?" + urlencode([*case.params, ("limit", str(PAGE_SIZE))])

            def get(path: str = path) -> int:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
                return len(orjson.loads(body)["data"])

            samples, returned = _sample(get, runs, warmup, budget_s)
            results.append(
                _timing(case.name, case.params, samples, matching=-1, returned=returned, via="http")
            )
        connection.close()
        return results
    finally:
        fleet.close()
