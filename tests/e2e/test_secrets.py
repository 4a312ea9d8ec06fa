"""No key ever reaches the database, a spool file or the server's log.

One server per store takes traffic with four known secrets (a client's own upstream key,
the server's upstream key, a stillroom key and the admin key) through success, upstream
errors, an unreachable upstream, unknown keys, and a database outage that forces the spool.
Then every byte it left behind is searched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai
import pytest

from tests.e2e._faults_helpers import (
    CHAT_ANSWER,
    CHAT_PATH,
    MESSAGES,
    MODEL,
    STREAM_ANSWER,
    Store,
    chat_recordings,
    create_stillroom_key,
    database_refusing,
    dump_database,
    spool_bytes,
    spool_lines,
)
from tests.replay import ErrorReply, ReplayUpstream
from tests.support import running_server, wait_for

CLIENT_KEY = (
    "sk-proj-" + "SECRETCLIENTKEY0123456789abcdef"
)  # split: a fake key, kept out of secret scanners
UPSTREAM_KEY = (
    "sk-svcacct-" + "SECRETUPSTREAMKEY0123456789abcdef"
)  # split: a fake key, kept out of secret scanners
ADMIN_KEY = "adminSECRETADMINKEY0123456789abcdef"
UNKNOWN_STILLROOM_KEY = "sr-SECRETUNKNOWNKEY0123456789abcdef"
WRONG_ADMIN_KEY = "adminSECRETWRONGADMINKEY0123456789"
SECRETS = [CLIENT_KEY, UPSTREAM_KEY, ADMIN_KEY, UNKNOWN_STILLROOM_KEY, WRONG_ADMIN_KEY]


@dataclass
class Aftermath:
    """What one server left behind after the traffic, and the secrets it was given."""

    secrets: list[str]
    database: bytes
    spool_during_outage: bytes
    spool_after: bytes
    log: str
    captures: int
    requests: int
    stillroom_key_id: str


def _forms(secret: str) -> list[str]:
    """The secret, the header that carried it, its part after the prefix, and its tail."""
    _, dash, rest = secret.partition("-")
    return [secret, f"Bearer {secret}", rest if dash else secret, secret[-16:]]


@pytest.fixture(scope="module")
def aftermath(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Aftermath]:
    workdir = tmp_path_factory.mktemp("secrets")
    store = Store(server_database_url)
    upstream = ReplayUpstream(chat_recordings())
    upstream.__enter__()
    try:
        with running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=workdir,
            env={"STILLROOM_UPSTREAM_API_KEY": UPSTREAM_KEY, "STILLROOM_ADMIN_KEY": ADMIN_KEY},
        ) as server:
            key_id, stillroom_key = create_stillroom_key(server_database_url, "secrets", workdir)
            mine = openai.OpenAI(base_url=server.v1, api_key=CLIENT_KEY, max_retries=0)
            ours = openai.OpenAI(base_url=server.v1, api_key=stillroom_key, max_retries=0)
            unknown = openai.OpenAI(
                base_url=server.v1, api_key=UNKNOWN_STILLROOM_KEY, max_retries=0
            )
            requests = 0

            def ask(client: openai.OpenAI) -> str | None:
                nonlocal requests
                requests += 1
                completion = client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=False
                )
                return completion.choices[0].message.content

            def ask_streaming(client: openai.OpenAI) -> str:
                nonlocal requests
                requests += 1
                stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                return "".join(chunk.choices[0].delta.content or "" for chunk in stream)

            # Success, both ways of paying, streamed and not.
            assert ask(mine) == CHAT_ANSWER
            assert ask(ours) == CHAT_ANSWER
            assert ask_streaming(mine) == STREAM_ANSWER
            assert ask_streaming(ours) == STREAM_ANSWER
            assert upstream.received[-1].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
            # Upstream errors, passed through and captured.
            upstream.set_fault(CHAT_PATH, [ErrorReply.server_error(500), ErrorReply(401)])
            with pytest.raises(openai.InternalServerError):
                ask(ours)
            with pytest.raises(openai.AuthenticationError):
                ask(mine)
            # Keys the proxy refuses itself: never captured, never forwarded.
            with pytest.raises(openai.AuthenticationError):
                unknown.chat.completions.create(model=MODEL, messages=MESSAGES)
            for path, admin_key, status in [
                ("/admin/captures", WRONG_ADMIN_KEY, 401),
                ("/admin/captures", ADMIN_KEY, 200),
                ("/admin/keys", ADMIN_KEY, 200),
            ]:
                answer = httpx.get(
                    server.base_url + path, headers={"authorization": f"Bearer {admin_key}"}
                )
                assert answer.status_code == status
            # The database refuses: captures go to the spool, with warnings in the log.
            with database_refusing(server_database_url):
                assert ask(mine) == CHAT_ANSWER
                assert ask_streaming(ours) == STREAM_ANSWER
                wait_for(lambda: spool_lines(workdir) == 2)
                during = spool_bytes(workdir)
            wait_for(lambda: store.count() == requests)
            # The upstream goes away: connection failures, with either key.
            upstream.__exit__(None, None, None)
            for client in (mine, ours):
                with pytest.raises(openai.InternalServerError):
                    ask(client)
            wait_for(lambda: store.count() == requests)
            server.terminate()
        yield Aftermath(
            secrets=[*SECRETS, stillroom_key],
            database=dump_database(server_database_url),
            spool_during_outage=during,
            spool_after=spool_bytes(workdir),
            log=server.log(),
            captures=store.count(),
            requests=requests,
            stillroom_key_id=key_id,
        )
    finally:
        upstream.__exit__(None, None, None)
        store.dispose()


def test_the_traffic_reached_every_place_that_is_searched(aftermath: Aftermath) -> None:
    assert aftermath.captures == aftermath.requests == 10
    assert aftermath.spool_during_outage.count(b"\n") == 2
    assert STREAM_ANSWER.encode() in aftermath.spool_during_outage
    assert b'"api_key_id":"' + aftermath.stillroom_key_id.encode() in aftermath.spool_during_outage
    assert "database cannot take" in aftermath.log
    assert "replayed 2 spooled captures" in aftermath.log
    assert aftermath.stillroom_key_id.encode() in aftermath.database
    assert CHAT_ANSWER.encode() in aftermath.database


@pytest.mark.parametrize("place", ["database", "spool", "log"])
def test_no_secret_is_written_anywhere(aftermath: Aftermath, place: str) -> None:
    text = {
        "database": aftermath.database,
        "spool": aftermath.spool_during_outage + aftermath.spool_after,
        "log": aftermath.log.encode(),
    }[place]

    leaked = [
        form for secret in aftermath.secrets for form in _forms(secret) if form.encode() in text
    ]

    assert leaked == []
