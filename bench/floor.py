"""The yardstick: a naive aiohttp pass-through that forwards and captures nothing.

Run as ``python -m bench.floor --upstream URL --port 0``; it prints ``READY <port>`` once
listening. It does what any Python proxy must do and nothing more: one pooled client session,
the request body read and sent upstream, the answer relayed as it arrives (chunk by chunk for a
stream), status and content type kept. No auth, routing, JSON parsing, capture or metrics: what
stillroom costs above this is what stillroom itself adds.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import aiohttp
from aiohttp import web

_SKIPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "host"})


def make_app(upstream: str) -> web.Application:
    app = web.Application()
    sessions: list[aiohttp.ClientSession] = []

    async def start(_: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
        sessions.append(aiohttp.ClientSession(connector=connector, auto_decompress=False))

    async def stop(_: web.Application) -> None:
        for session in sessions:
            await session.close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() not in _SKIPPED_HEADERS
        }
        async with sessions[0].request(
            request.method, upstream + request.path_qs, data=body, headers=headers
        ) as answer:
            relayed = web.StreamResponse(status=answer.status)
            relayed.content_type = answer.content_type
            await relayed.prepare(request)
            async for chunk in answer.content.iter_any():
                await relayed.write(chunk)
            await relayed.write_eof()
            return relayed

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_get("/healthz", healthz)
    app.router.add_route("*", "/v1/{tail:.*}", forward)
    return app


async def serve(upstream: str, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(upstream.rstrip("/")), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"READY {bound}", flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL without /v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        print("uvloop missing: the floor runs on asyncio's own loop", file=sys.stderr)
    asyncio.run(serve(args.upstream, args.host, args.port))


if __name__ == "__main__":
    main()
