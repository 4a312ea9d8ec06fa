"""Building datasets: eligibility, duplicates, splits, threading and frozen examples, on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from finetune import (
    DatasetNotFound,
    InvalidDatasetRequest,
    SplitRatios,
    create_dataset,
    delete_dataset,
    get_dataset,
    list_datasets,
    list_duplicates,
)
from storage import CaptureFilter, read_examples_page, session_scope
from tests.finetune._dataset_helpers import (
    T0,
    add_edit,
    answer,
    capture,
    question,
    recorded_rows,
    store,
    tool_call,
)

APPROVED = CaptureFilter(status=["approved"])
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def stored(engine: Engine, dataset_id: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """capture id -> (split, frozen example)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    with session_scope(engine) as session:
        for side in ("train", "validation", "test"):
            for row in read_examples_page(dataset_id, side, session=session, limit=10_000):
                found[row.capture_id] = (side, row.example)
    return found


def expected_side(hash_hex: str, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    position = int(hash_hex[:16], 16) / 2**64
    if position < ratios[0]:
        return "train"
    return "validation" if position < ratios[0] + ratios[1] else "test"


def test_recorded_conversations_become_threaded_examples_with_their_tool_calls(
    engine: Engine,
) -> None:
    rows = recorded_rows()
    store(engine, rows)
    dataset = create_dataset(engine, "recorded", APPROVED)
    assert dataset.version == 1
    assert dataset.counts == {
        "total": 8,
        "train": 6,
        "validation": 1,
        "test": 1,
        "selected": 33,
        "duplicates_dropped": 18,
        "threaded_dropped": 4,
        "skipped": {"refusal": 3},
        "untaught_turns": 0,
        "preference_pairs": 0,
    }
    examples = stored(engine, dataset.id)
    by_file = {row["tags"][0]: row for row in rows if row["id"] in examples}

    chain = examples[by_file["llm_tool_chain_three_turns_gzip"]["id"]][1]
    roles = [m["role"] for m in chain["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert not any("weight" in m for m in chain["messages"])
    assert chain["messages"][1]["tool_calls"] == [
        tool_call("call_TTY8UFNo7rNCaOBUNtlRSvMG", "lookup_population", '{"country": "Crumpet"}')
    ]
    assert chain["messages"][-1] == {"role": "assistant", "content": "YES"}
    assert [t["function"]["name"] for t in chain["tools"]] == [
        "lookup_population",
        "can_have_dragons",
    ]

    # The second request of this conversation left out its tools; it still threads.
    weather = examples[by_file["ruby_multiple_tool_calls_full_conversation"]["id"]][1]
    assert [m["role"] for m in weather["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert len(weather["messages"][1]["tool_calls"]) == 2
    assert "weight" not in weather["messages"][1]

    # This client sent an empty assistant turn beside the teacher's call: it is left out.
    split_turn = examples[by_file["llm_openrouter_compat_stream_tool_calls"]["id"]][1]
    assert [m["role"] for m in split_turn["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert split_turn["messages"][1] == {
        "role": "assistant",
        "tool_calls": [tool_call("0", "llm_version", "{}")],
    }

    legacy = examples[by_file["openllmetry_legacy_functions_function_call"]["id"]][1]
    assert legacy["functions"][0]["name"] == "get_current_weather"
    assert legacy["messages"][-1]["function_call"]["name"] == "get_current_weather"

    parallel = examples[by_file["openllmetry_parallel_tool_calls_nonstream"]["id"]][1]
    final = parallel["messages"][-1]
    assert [c["function"]["name"] for c in final["tool_calls"]] == ["get_current_weather"] * 2
    assert set(final["tool_calls"][0]) == {"id", "type", "function"}


def test_split_follows_the_prompt_hash_across_versions_with_other_selections(
    engine: Engine,
) -> None:
    store(engine, [question(n) for n in range(60)])
    first = create_dataset(
        engine,
        "squares",
        CaptureFilter(status=["approved"], created_before=T0 + timedelta(seconds=40)),
    )
    second = create_dataset(engine, "squares", APPROVED)
    other_ratios = create_dataset(engine, "halves", APPROVED, ratios=SplitRatios(0.5, 0.25, 0.25))
    assert (first.version, second.version, other_ratios.version) == (1, 2, 1)
    old, new = stored(engine, first.id), stored(engine, second.id)
    assert len(old) == 40 and len(new) == 60
    assert all(new[capture_id][0] == side for capture_id, (side, _) in old.items())
    hashes = {row["id"]: row["prompt_hash"] for row in (question(n) for n in range(60))}
    assert {cid: side for cid, (side, _) in new.items()} == {
        cid: expected_side(h) for cid, h in hashes.items()
    }
    assert {s for s, _ in new.values()} == {"train", "validation", "test"}
    halves = stored(engine, other_ratios.id)
    assert {cid: side for cid, (side, _) in halves.items()} == {
        cid: expected_side(h, (0.5, 0.25, 0.25)) for cid, h in hashes.items()
    }
    assert second.counts["train"] + second.counts["validation"] + second.counts["test"] == 60


def _same_prompt_group() -> list[dict[str, Any]]:
    ask = [{"role": "user", "content": "How do I reset my password?"}]
    return [
        capture(1, ask, answer("oldest, rated 5"), rating=5),
        capture(3, ask, answer("newer, rated 5"), rating=5),
        capture(4, ask, answer("latest approved, rated 2"), rating=2),
        capture(6, ask, answer("newest, still pending"), status="pending"),
    ]


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("latest_approved", "latest approved, rated 2"), ("best_rated", "newer, rated 5")],
)
def test_duplicate_policy_keeps_one_capture_per_prompt(
    engine: Engine, policy: str, kept: str
) -> None:
    store(engine, _same_prompt_group())
    selection = CaptureFilter(status=["approved", "pending"])
    dataset = create_dataset(engine, "dedupe", selection, dedupe=policy)
    (only,) = stored(engine, dataset.id).values()
    assert only[1]["messages"][-1]["content"] == kept
    assert dataset.counts["duplicates_dropped"] == 3
    assert dataset.lineage["dedupe"] == policy


def test_duplicate_groups_are_listed_best_first(engine: Engine) -> None:
    store(engine, [*_same_prompt_group(), question(10), question(11), question(12, "Hi")])
    store(engine, [question(13, "Hi")])
    selection = CaptureFilter(status=["approved", "pending"])
    groups, total = list_duplicates(engine, selection, policy="best_rated")
    assert total == 2
    assert [(g.size, g.capture_ids) for g in groups] == [
        (4, [f"cap_{n:020d}" for n in (3, 1, 4, 6)]),
        (2, [f"cap_{n:020d}" for n in (13, 12)]),
    ]


def test_a_capture_without_an_answer_yields_to_the_next_of_its_group(engine: Engine) -> None:
    ask = [{"role": "user", "content": "Say something"}]
    store(engine, [capture(1, ask, answer("something")), capture(2, ask, answer(None))])
    dataset = create_dataset(engine, "fallback", APPROVED)
    assert list(stored(engine, dataset.id)) == [f"cap_{1:020d}"]
    assert dataset.counts["skipped"] == {"no_answer": 1}
    assert dataset.counts["duplicates_dropped"] == 0


def test_failed_cut_abandoned_and_empty_exchanges_are_skipped_with_reasons(
    engine: Engine,
) -> None:
    failed = {"message": "Rate limit reached", "type": "requests"}
    store(
        engine,
        [
            question(1),
            question(2) | {"status_code": 429, "response": None, "error": failed},
            question(3) | {"abandoned": True, "error_kind": "client_abandoned"},
            question(4) | {"error_kind": "stream_cut"},
            capture(5, [{"role": "user", "content": "x"}], answer(None, refusal="I can't.")),
            capture(6, [], answer("talking to nobody")),
        ],
    )
    dataset = create_dataset(engine, "eligible", APPROVED)
    assert list(stored(engine, dataset.id)) == [f"cap_{1:020d}"]
    assert dataset.counts["skipped"] == {
        "abandoned": 1,
        "error": 1,
        "no_messages": 1,
        "refusal": 1,
        "stream_cut": 1,
    }


def _weather_thread() -> list[dict[str, Any]]:
    system = {"role": "system", "content": "You report the weather."}
    ask = {"role": "user", "content": "Weather in Paris?"}
    call = tool_call("call_1", "weather", '{"city":"Paris"}')
    # The client sends the call back re-serialised, without content, as SDKs do.
    sent_call = {
        "role": "assistant",
        "tool_calls": [tool_call("call_1", "weather", '{"city": "Paris"}')],
    }
    result = {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    said = {"role": "assistant", "content": "It is 18C  in Paris. "}
    thanks = {"role": "user", "content": "Thanks!"}
    turns: list[tuple[list[dict[str, Any]], dict[str, Any]]] = [
        ([system, ask], answer(None, tool_calls=[call])),
        ([system, ask, sent_call, result], answer("It is 18C in Paris.")),
        ([system, ask, sent_call, result, said, thanks], answer("You're welcome.")),
    ]
    return [
        capture(n, messages, reply, tools=WEATHER_TOOLS)
        for n, (messages, reply) in enumerate(turns, start=1)
    ]


def test_the_longest_capture_stands_for_its_conversation(engine: Engine) -> None:
    few_shot = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "3+3?"},
    ]
    rows = [*_weather_thread(), capture(4, few_shot, answer("6"))]
    store(engine, rows)
    dataset = create_dataset(engine, "threads", APPROVED)
    examples = stored(engine, dataset.id)
    assert sorted(examples) == [f"cap_{3:020d}", f"cap_{4:020d}"]
    side, conversation = examples[f"cap_{3:020d}"]
    assert [m.get("weight") for m in conversation["messages"]] == [None] * 7
    assert conversation["messages"][2]["tool_calls"][0]["function"]["arguments"] == (
        '{"city": "Paris"}'
    )
    assert conversation["tools"] == WEATHER_TOOLS
    # The conversation keeps the side of its opening prompt as it grows.
    assert side == expected_side(rows[0]["prompt_hash"])
    assert examples[f"cap_{4:020d}"][1]["messages"][1] == {
        "role": "assistant",
        "content": "4",
        "weight": 0,
    }
    assert dataset.counts["threaded_dropped"] == 2
    assert dataset.counts["untaught_turns"] == 1


@pytest.mark.parametrize(("earlier", "weight"), [("pending", None), ("rejected", 0)])
def test_a_turn_answered_outside_the_selection_counts_unless_rejected(
    engine: Engine, earlier: str, weight: int | None
) -> None:
    first, second, _ = _weather_thread()
    store(engine, [first | {"review_status": earlier}, second])
    dataset = create_dataset(engine, "outside", APPROVED)
    ((_, example),) = stored(engine, dataset.id).values()
    assert example["messages"][2].get("weight") == weight


def test_an_edit_replaces_the_answer_and_the_snapshot_stays_frozen(engine: Engine) -> None:
    store(engine, [question(1), question(2)])
    add_edit(engine, f"cap_{1:020d}", answer("One squared is 1.", refusal=None))
    first = create_dataset(engine, "edited", APPROVED)
    add_edit(engine, f"cap_{1:020d}", answer("1"))
    second = create_dataset(engine, "edited", APPROVED)
    old, new = stored(engine, first.id), stored(engine, second.id)
    assert old[f"cap_{1:020d}"][1]["messages"][-1] == answer("One squared is 1.")
    assert new[f"cap_{1:020d}"][1]["messages"][-1] == answer("1")
    assert old[f"cap_{2:020d}"][1]["messages"][-1] == answer("4")


def test_lineage_records_filter_policy_and_what_the_caller_gave(engine: Engine) -> None:
    store(engine, [question(1)])
    rules = [{"name": "reject-errors", "action": "reject"}]
    dataset = create_dataset(engine, "lineage", APPROVED, lineage={"rules": rules})
    assert dataset.filter == {"status": ["approved"]}
    assert dataset.split == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert dataset.lineage["rules"] == rules
    assert dataset.lineage["filter"] == {"status": ["approved"]}
    assert dataset.lineage["dedupe"] == "latest_approved"


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda e: create_dataset(e, "bad name!", APPROVED), "name"),
        (lambda e: create_dataset(e, "ok", APPROVED, dedupe="random"), "dedupe"),
        (lambda e: create_dataset(e, "ok", APPROVED, ratios=SplitRatios(0.8, 0.1, 0.2)), "split"),
        (lambda e: SplitRatios.parse("0.8;0.2"), "split"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(engine: Engine, call: Any, param: str) -> None:
    store(engine, [question(1)])
    with pytest.raises(InvalidDatasetRequest) as refused:
        call(engine)
    assert refused.value.param == param
    assert list_datasets(engine) == []


def test_list_get_and_delete(engine: Engine) -> None:
    store(engine, [question(1), question(2)])
    first = create_dataset(engine, "a", APPROVED)
    second = create_dataset(engine, "b", APPROVED)
    assert [d.id for d in list_datasets(engine)] == [second.id, first.id]
    assert [d.id for d in list_datasets(engine, name="a")] == [first.id]
    assert get_dataset(engine, first.id).counts["total"] == 2
    assert delete_dataset(engine, first.id).id == first.id
    assert stored(engine, first.id) == {}
    with pytest.raises(DatasetNotFound):
        get_dataset(engine, first.id)
    with pytest.raises(DatasetNotFound):
        delete_dataset(engine, "ds_missing")
    assert len(stored(engine, second.id)) == 2
