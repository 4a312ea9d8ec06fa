"""The writer survives what one capture can do: a capture that cannot be built, a row the
database refuses, a poisoned spool line. Each is quarantined; the captures behind it are
stored as they came."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine

from proxy._metrics import Metrics
from proxy.gateway import DEAD_LETTER
from proxy.gateway._capture import Exchange
from proxy.gateway._sink import CaptureSink
from storage import count_captures, get_capture, session_scope
from tests.proxy.gateway.test_sink import Outage, exchange
from tests.support import wait_for


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def deep_request() -> Exchange:
    broken = exchange(-1)
    broken.request = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    broken.request["messages"][0]["extra"] = nested(300)
    return broken


def bad_tool_calls() -> Exchange:
    broken = exchange(-2)
    broken.request = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": 7}]}
        ],
    }
    return broken


@pytest.fixture
def sink(engine: Engine, tmp_path: Path) -> Iterator[CaptureSink]:
    sink = CaptureSink(
        engine,
        Metrics(),
        spool_dir=tmp_path / "spool",
        batch_size=50,
        flush_seconds=0.02,
        retry_seconds=0.1,
    )
    sink.start()
    yield sink
    sink.close(10)


def stored(engine: Engine) -> int:
    with session_scope(engine) as session:
        return count_captures(session=session)


def quarantined(engine: Engine, capture_id: str) -> dict[str, Any]:
    with session_scope(engine) as session:
        capture = get_capture(capture_id, session=session)
        assert capture is not None
        assert capture.review_status == "rejected"
        assert capture.tags == ["quarantined"]
        assert capture.error is not None
        assert capture.error["type"] == "capture_quarantined"
        return capture.error


def test_unbuildable_captures_are_quarantined_and_the_next_hundred_are_stored(
    engine: Engine, sink: CaptureSink
) -> None:
    deep, tools = deep_request(), bad_tool_calls()
    sink.submit(deep)
    sink.submit(tools)
    normal = [exchange(n) for n in range(100)]
    for item in normal:
        sink.submit(item)
    wait_for(lambda: stored(engine) == 102)

    assert sink.writer_running()
    assert "could not be built" in quarantined(engine, tools.capture_id)["message"]
    assert '"function":7' in quarantined(engine, tools.capture_id)["raw"]["request"]
    # JSON cannot nest that deep: the raw record holds the request as Python shows it.
    deep_error = quarantined(engine, deep.capture_id)
    assert "Recursion limit" in deep_error["message"]
    assert deep_error["raw"]["request"].startswith("{'model': 'gpt-4o-mini', 'messages'")
    with session_scope(engine) as session:
        capture = get_capture(normal[-1].capture_id, session=session)
        assert capture is not None and capture.response is not None
        assert capture.response["choices"][0]["message"]["content"] == "a99"


def test_a_row_the_database_refuses_is_quarantined_and_its_batch_is_stored(
    engine: Engine, sink: CaptureSink
) -> None:
    # A number JSON cannot carry: the database's serializer refuses the row at insert time.
    refused = exchange(-3, body=orjson.dumps({"id": "x", "usage": {"total_tokens": 1}}))
    refused.request = {"model": "gpt-4o-mini", "messages": [], "seed": 2**70}
    normal = [exchange(n) for n in range(30)]
    for item in [*normal[:15], refused, *normal[15:]]:
        sink.submit(item)
    wait_for(lambda: stored(engine) == 31)

    error = quarantined(engine, refused.capture_id)
    assert error["message"].startswith("capture quarantined: refused by the database")
    assert "1180591620717411303424" in error["raw"]["request"]


def test_text_with_nul_and_oversize_identifiers_is_stored_whole_in_json(
    engine: Engine, sink: CaptureSink
) -> None:
    odd = exchange(-4)
    odd.request = {
        "model": "m" * 250,
        "user": "u\x00" * 300,
        "messages": [{"role": "user", "content": "nul\x00here"}],
        "metadata": {"k\x00": "v\x00"},
    }
    after = exchange(1)
    sink.submit(odd)
    sink.submit(after)
    wait_for(lambda: stored(engine) == 2)

    with session_scope(engine) as session:
        capture = get_capture(odd.capture_id, session=session)
        assert capture is not None
        assert capture.requested_model == "m" * 200
        assert capture.request["model"] == "m" * 250
        assert capture.user == "u" * 300
        assert capture.request["messages"][0]["content"] == "nulhere"
        assert capture.metadata_ == {"k": "v"}
        assert capture.tags == []


def test_a_poisoned_spool_line_never_blocks_the_lines_behind_it(
    engine: Engine, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    outage = Outage(engine)
    outage.down = True
    first = CaptureSink(engine, Metrics(), spool_dir=spool_dir, flush_seconds=0.02)
    first.start()
    for n in range(20):
        first.submit(exchange(n))
    first.close(10)
    [orphan] = spool_dir.glob("spool-*.jsonl")
    # First in line: a row the database refuses (no request), then a line a crash cut short.
    poison = orjson.loads(orphan.read_bytes().splitlines()[0])
    poison.update(id="cap_poison", request=None)
    orphan.write_bytes(
        orjson.dumps(poison) + b"\n" + b'{"id": "cap_cut", "crea\n' + orphan.read_bytes()
    )
    outage.down = False

    second = CaptureSink(engine, Metrics(), spool_dir=spool_dir, flush_seconds=0.02)
    second.start()
    try:
        wait_for(lambda: stored(engine) == 21)
    finally:
        second.close(10)
    assert "refused by the database" in quarantined(engine, "cap_poison")["message"]
    assert list(spool_dir.glob("spool-*.jsonl")) == []
    dead = [orjson.loads(line) for line in (spool_dir / DEAD_LETTER).read_bytes().splitlines()]
    assert [entry["raw"] for entry in dead] == ['{"id": "cap_cut", "crea']


def test_the_writer_is_restarted_when_a_round_fails(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = Metrics()
    sink = CaptureSink(engine, metrics, spool_dir=tmp_path / "spool", flush_seconds=0.02)
    failures = iter([RuntimeError("a bug in a round")])
    real_replay = sink._replay_due

    def failing_replay(*, force: bool) -> None:
        error = next(failures, None)
        if error is not None:
            raise error
        real_replay(force=force)

    monkeypatch.setattr(sink, "_replay_due", failing_replay)
    sink.start()
    try:
        for n in range(10):
            sink.submit(exchange(n))
        wait_for(lambda: stored(engine) == 10)
        assert sink.writer_running()
    finally:
        sink.close(10)
    assert metrics.writer_restarts._value.get() == 1
