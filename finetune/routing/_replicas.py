"""What one replica of a self-hosted upstream is asked, over HTTP, to serve a student.

vLLM (runtime LoRA): ``GET /v1/models`` lists its adapters with their base as ``parent``;
``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` change them.

``transformers serve``: started with a model (pinned), it lists and answers that one model by
the name it was given; started without one, it loads a model by its path on
``POST /load_model`` (a server-sent stream of progress ending ``ready`` or ``error``) and then
lists it, and it forgets a model idle for a while, loading it again on its next request.

Each call answers None once the replica serves the model, else the reason in words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson


class ReplicaError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def call(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise ReplicaError(f"{method} {url}: {type(exc).__name__}: {exc}") from None


def models(client: httpx.Client, replica: str) -> list[Mapping[str, Any]]:
    answer = call(client, "GET", f"{replica}/models")
    if answer.status_code != 200:
        raise ReplicaError(f"GET /models answered {answer.status_code}: {said(answer)}")
    try:
        data = answer.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise ReplicaError("GET /models answered no model list") from None
    return [m for m in data if isinstance(m, Mapping)] if isinstance(data, list) else []


def listed(found: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(m["id"]) for m in found if "id" in m}


def adapters(client: httpx.Client, replica: str) -> set[str]:
    """The LoRA adapters a replica serves: vLLM lists them with their base as ``parent``."""
    return {str(m["id"]) for m in models(client, replica) if m.get("parent") and "id" in m}


def load_adapter(client: httpx.Client, replica: str, model: str, adapter: Path) -> str | None:
    try:
        if model in listed(models(client, replica)):
            return None
        answer = call(
            client,
            "POST",
            f"{replica}/load_lora_adapter",
            json={"lora_name": model, "lora_path": str(adapter)},
        )
        if answer.status_code != 200:
            return f"load_lora_adapter answered {answer.status_code}: {said(answer)}"
        if model not in listed(models(client, replica)):
            return "loaded, but GET /models does not list it"
    except ReplicaError as exc:
        return exc.reason
    return None


def unload_adapter(client: httpx.Client, replica: str, model: str) -> str | None:
    try:
        answer = call(client, "POST", f"{replica}/unload_lora_adapter", json={"lora_name": model})
    except ReplicaError as exc:
        return exc.reason
    if answer.status_code != 200:
        return f"unload_lora_adapter {model} answered {answer.status_code}: {said(answer)}"
    return None


def load_merged(client: httpx.Client, replica: str, path: str) -> str | None:
    """A ``transformers serve`` replica serves the model at ``path``: it lists it already, or,
    started without a model, loads it when asked."""
    try:
        if path in listed(models(client, replica)):
            return None
        outcome = _load_model(client, replica.removesuffix("/v1"), path)
        if outcome is not None:
            return outcome
        if path not in listed(models(client, replica)):
            return "load_model said ready, but GET /models does not list it"
    except ReplicaError as exc:
        return exc.reason
    return None


def _load_model(client: httpx.Client, root: str, path: str) -> str | None:
    """``POST /load_model``, reading its progress events to the last: None when ``ready``."""
    last: Mapping[str, Any] = {}
    url = f"{root}/load_model"
    try:
        with client.stream("POST", url, json={"model": path}) as answer:
            if answer.status_code != 200:
                answer.read()
                return f"POST /load_model answered {answer.status_code}: {said(answer)}"
            for line in answer.iter_lines():
                if not line.startswith("data:"):
                    continue
                try:
                    event = orjson.loads(line[5:])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(event, Mapping):
                    last = event
    except httpx.HTTPError as exc:
        raise ReplicaError(f"POST {url}: {type(exc).__name__}: {exc}") from None
    if last.get("status") == "ready":
        return None
    if last.get("status") == "error":
        return f"load_model refused {path}: {str(last.get('message') or 'no reason given')[:300]}"
    return f"load_model ended without ready (last event: {dict(last) or 'none'})"[:500]


def said(answer: httpx.Response) -> str:
    """The error's message when it has OpenAI's (or FastAPI's) shape, else the start of the
    body."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:300]
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping) and "message" in error:
            return str(error["message"])[:300]
        for key in ("message", "detail"):
            if key in body:
                return str(body[key])[:300]
    return answer.text[:300]
