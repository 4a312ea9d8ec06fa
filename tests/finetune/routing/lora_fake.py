"""A fake of vLLM's runtime LoRA API, behind ``httpx.MockTransport``: each replica keeps the
adapters it was asked to load, lists them in ``/v1/models`` as vLLM does (``parent`` = the base
model), and can be told to refuse loads or to be down."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx

BASE = "tiny-base"


@dataclass
class FakeReplica:
    adapters: dict[str, str] = field(default_factory=dict)
    """lora_name -> lora_path."""
    refuse_loads: bool = False
    down: bool = False
    forget_after_load: bool = False
    """Answers 200 to a load but never lists it (a replica that lost it at once)."""
    calls: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


class FakeLoraFleet:
    """Replicas at ``http://replica-N/v1``."""

    def __init__(self, count: int) -> None:
        self.replicas = {f"http://replica-{n}/v1": FakeReplica() for n in range(1, count + 1)}

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.replicas)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        base, _, endpoint = url.rpartition("/")
        replica = self.replicas[base]
        if replica.down:
            raise httpx.ConnectError("connection refused", request=request)
        replica.calls.append(f"{request.method} {endpoint}")
        replica.authorizations.append(request.headers.get("authorization"))
        if request.method == "GET" and endpoint == "models":
            data = [{"id": BASE, "object": "model", "root": "/models/base", "parent": None}]
            data += [
                {"id": name, "object": "model", "root": path, "parent": BASE}
                for name, path in replica.adapters.items()
            ]
            return httpx.Response(200, json={"object": "list", "data": data})
        body = json.loads(request.content)
        name = body["lora_name"]
        if endpoint == "load_lora_adapter":
            if replica.refuse_loads:
                return _error(400, f"Failed to load LoRA adapter '{name}': no such folder")
            if name in replica.adapters:
                return _error(400, f"The lora adapter '{name}' has already been loaded.")
            if not replica.forget_after_load:
                replica.adapters[name] = body["lora_path"]
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' added successfully.")
        if endpoint == "unload_lora_adapter":
            if replica.adapters.pop(name, None) is None:
                return _error(404, f"The lora adapter '{name}' cannot be found.")
            return httpx.Response(200, text=f"Success: LoRA adapter '{name}' removed successfully.")
        return _error(404, "Not Found")


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": "BadRequestError", "code": status}}
    )
