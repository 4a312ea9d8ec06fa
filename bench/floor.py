"""The yardstick: a naive aiohttp pass-through that forwards and captures nothing.

Run as ``python -m bench.floor --upstream URL --port 0``; it prints ``READY <port>`` once
listening. ``--workers N`` serves from N processes that accept on one socket, as ``stillroom
serve --workers N`` does: what the machine lets any Python proxy gain from a second process.
It does what any Python proxy must do and nothing more: one pooled client session, the request
body read and sent upstream, the answer relayed as it arrives (chunk by chunk for a stream),
status and content type kept. No auth, routing, JSON parsing, capture or metrics: what
stillroom costs above this is what stillroom itself adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
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


async def serve(upstream: str, sock: socket.socket) -> None:
    """Answer on ``sock`` until SIGTERM or SIGINT."""
    runner = web.AppRunner(make_app(upstream.rstrip("/")), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    await stopped.wait()
    await runner.cleanup()


def run_workers(upstream: str, sock: socket.socket, workers: int) -> None:
    """Fork ``workers`` processes that serve ``sock``; stop them all on SIGTERM or SIGINT."""
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                asyncio.run(serve(upstream, sock))
            finally:
                os._exit(0)  # never back into the parent's code
        children.append(pid)

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            os.kill(child, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    for child in children:
        os.waitpid(child, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL without /v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        print("uvloop missing: the floor runs on asyncio's own loop", file=sys.stderr)
    # Bound before any fork: every worker accepts on this one socket.
    sock = socket.create_server((args.host, args.port), backlog=1024)
    if args.workers > 1:
        run_workers(args.upstream, sock, args.workers)
        return
    print(f"READY {sock.getsockname()[1]}", flush=True)
    asyncio.run(serve(args.upstream, sock))


if __name__ == "__main__":
    main()
