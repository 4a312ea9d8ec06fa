"""Two `stillroom serve` replicas on one database: a route change made through one reaches
the other within 5 s, and each routes by it, as the upstream sees."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.replay import ReplayUpstream, recording
from tests.support import ServerProcess, running_server

ADMIN_KEY = "e2e-admin-key"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello!"}]
PROPAGATION_LIMIT_SECONDS = 5.0


@dataclass
class Replicas:
    upstream: ReplayUpstream
    first: ServerProcess
    second: ServerProcess


@pytest.fixture(scope="module")
def replicas(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    env = {"STILLROOM_ADMIN_KEY": ADMIN_KEY, "STILLROOM_ROUTE_REFRESH_SECONDS": "1"}
    with ReplayUpstream(recording("chat/ruby_chat_gpt35.yml")) as upstream:
        url = upstream.base_url
        with (
            running_server(
                database_url=server_database_url,
                upstream_base_url=url,
                workdir=tmp_path_factory.mktemp("first"),
                env=env,
            ) as first,
            running_server(
                database_url=server_database_url,
                upstream_base_url=url,
                workdir=tmp_path_factory.mktemp("second"),
                env=env,
            ) as second,
        ):
            yield Replicas(upstream, first, second)


def _model_sent_upstream(replicas: Replicas, server: ServerProcess, user: str) -> str:
    """Ask ``server`` for the alias; the model the upstream received for this call."""
    client = openai.OpenAI(base_url=server.v1, api_key="sk-e2e-client", max_retries=0)
    before = len(replicas.upstream.received)
    client.chat.completions.create(model="support-bot", messages=HELLO, user=user)
    model: str = replicas.upstream.received[before].json()["model"]
    return model


def _put_alias(server: ServerProcess, teacher: float, student: float, reason: str) -> None:
    targets = [
        {"model": "gpt-4o", "weight": teacher, "role": "teacher"},
        {"model": "ft:gpt-4o-mini:acme::x1", "weight": student, "role": "student"},
    ]
    answer = httpx.put(
        f"{server.base_url}/admin/aliases/support-bot",
        json={"targets": targets, "reason": reason},
        headers={"authorization": f"Bearer {ADMIN_KEY}", "x-stillroom-actor": "e2e"},
    )
    assert answer.status_code == 200, answer.text


def _seconds_until_routed(replicas: Replicas, server: ServerProcess, model: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < PROPAGATION_LIMIT_SECONDS + 5:
        if _model_sent_upstream(replicas, server, "u-1") == model:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{server.base_url} never routed to {model}")


def test_a_weight_change_reaches_the_other_replica_within_five_seconds(
    replicas: Replicas,
) -> None:
    _put_alias(replicas.first, teacher=1, student=0, reason="teacher only")
    # The replica that took the change routes by it at once.
    assert _model_sent_upstream(replicas, replicas.first, "u-1") == "gpt-4o"
    assert _seconds_until_routed(replicas, replicas.second, "gpt-4o") < PROPAGATION_LIMIT_SECONDS

    _put_alias(replicas.first, teacher=0, student=1, reason="student takes over")
    took = _seconds_until_routed(replicas, replicas.second, "ft:gpt-4o-mini:acme::x1")
    assert took < PROPAGATION_LIMIT_SECONDS

    # A rollback through the second replica reaches the first the same way.
    answer = httpx.post(
        f"{replicas.second.base_url}/admin/aliases/support-bot/rollback",
        json={"reason": "back"},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert answer.json()["version"] == 1
    assert _seconds_until_routed(replicas, replicas.first, "gpt-4o") < PROPAGATION_LIMIT_SECONDS


def test_both_replicas_keep_a_user_on_the_same_target(replicas: Replicas) -> None:
    _put_alias(replicas.first, teacher=1, student=1, reason="half and half")
    # Within the propagation limit, both replicas hold the same version.
    time.sleep(2.5)
    for user in ("alice", "bob", "carol", "dave", "erin"):
        seen = {_model_sent_upstream(replicas, s, user) for s in (replicas.first, replicas.second)}
        assert len(seen) == 1, (user, seen)
