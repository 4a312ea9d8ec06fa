"""Feedback end to end: a client asks through a running ``stillroom serve`` with the real
``openai`` SDK, sends feedback on the completion id it received at once, and the operator
finds it on the capture, over the admin API and in ``stillroom captures show``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e._faults_helpers import CHAT_ANSWER, MESSAGES, MODEL
from tests.replay import ReplayUpstream, recording
from tests.support import STILLROOM, ServerProcess, running_server

ADMIN_KEY = "admin-feedback-e2e"
CLIENT_KEY = "sk-feedback-e2e-client"
OTHER_CLIENT_KEY = "sk-feedback-e2e-someone-else"


@pytest.fixture(scope="module")
def server(
    server_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("feedback")
    with (
        ReplayUpstream(recording("chat/ruby_chat_gpt35.yml")) as upstream,
        running_server(
            database_url=server_database_url,
            upstream_base_url=upstream.base_url,
            workdir=workdir,
            env={"STILLROOM_ADMIN_KEY": ADMIN_KEY},
        ) as process,
    ):
        yield process


def _client(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0)


def test_feedback_sent_straight_after_the_answer_lands_on_the_capture(
    server: ServerProcess, server_database_url: str, tmp_path: Path
) -> None:
    client = _client(server, CLIENT_KEY)
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert completion.choices[0].message.content == CHAT_ANSWER
    corrected = {"role": "assistant", "content": "Hello! What can I do for you?"}

    answer = client.post(
        "/feedback",
        body={
            "completion_id": completion.id,
            "thumbs": "down",
            "comment": "too formal",
            "corrected": corrected,
        },
        cast_to=dict[str, Any],
    )

    assert answer["feedback"] == "negative"
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    page = httpx.get(
        server.base_url + "/admin/captures", params={"feedback": "negative"}, headers=admin
    ).json()
    [summary] = [item for item in page["data"] if item["completion_id"] == completion.id]
    detail = httpx.get(f"{server.base_url}/admin/captures/{summary['id']}", headers=admin).json()
    assert detail["feedback"] == "negative"
    assert [(f["thumbs"], f["comment"]) for f in detail["feedback_entries"]] == [(-1, "too formal")]
    assert detail["answer"] == corrected
    assert detail["original_answer"]["content"] == CHAT_ANSWER
    assert detail["edits"][0]["author"] == "feedback"
    shown = subprocess.run(
        [STILLROOM, "captures", "show", summary["id"], "--json"],
        env={**_clean_environment(), "STILLROOM_DATABASE_URL": server_database_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["feedback_entries"][0]["comment"] == "too formal"


def test_feedback_on_another_callers_completion_is_not_found(server: ServerProcess) -> None:
    completion = _client(server, CLIENT_KEY).chat.completions.create(model=MODEL, messages=MESSAGES)

    with pytest.raises(openai.NotFoundError) as refused:
        _client(server, OTHER_CLIENT_KEY).post(
            "/feedback",
            body={"completion_id": completion.id, "thumbs": "up"},
            cast_to=dict[str, Any],
        )

    assert refused.value.code == "not_found"
    assert refused.value.param == "completion_id"


def _clean_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("STILLROOM_", "OPENAI_"))
    }
