"""A fake of ``transformers serve``, behind ``httpx.MockTransport``: a replica pinned to one
model lists it alone and refuses to load another (as an ``error`` event, as the real one does);
one started without a model loads a model by its path on ``POST /load_model``, streaming
progress events, and lists it afterwards."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx


@dataclass
class FakeTransformersReplica:
    pinned: str | None = None
    """The model given on the command line; None: started without one."""
    loaded: list[str] = field(default_factory=list)
    down: bool = False
    no_load_route: bool = False
    """An older server without ``/load_model``: FastAPI's 404."""
    calls: list[str] = field(default_factory=list)


class FakeTransformersFleet:
    """Replicas at ``http://serve-N:8000/v1``."""

    def __init__(self, *replicas: FakeTransformersReplica) -> None:
        self.replicas = {
            f"http://serve-{n}:8000": replica for n, replica in enumerate(replicas, start=1)
        }

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(f"{root}/v1" for root in self.replicas)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        root = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
        replica = self.replicas[root]
        if replica.down:
            raise httpx.ConnectError("connection refused", request=request)
        replica.calls.append(f"{request.method} {request.url.path}")
        if request.method == "GET" and request.url.path == "/v1/models":
            names = [replica.pinned] if replica.pinned else replica.loaded
            data = [{"id": name, "object": "model", "owned_by": "local"} for name in names]
            return httpx.Response(200, json={"object": "list", "data": data})
        if request.method == "POST" and request.url.path == "/load_model":
            if replica.no_load_route:
                return httpx.Response(404, json={"detail": "Not Found"})
            model = json.loads(request.content)["model"]
            if replica.pinned is not None and model != replica.pinned:
                message = f"Server is pinned to '{replica.pinned}'; requested '{model}'."
                return _events({"status": "error", "model": model, "message": message})
            if model not in replica.loaded:
                replica.loaded.append(model)
            return _events(
                {"status": "loading", "model": model, "stage": "processor"},
                {"status": "loading", "model": model, "stage": "weights"},
                {"status": "ready", "model": model, "cached": False},
            )
        return httpx.Response(404, json={"detail": "Not Found"})


def _events(*events: dict[str, object]) -> httpx.Response:
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
