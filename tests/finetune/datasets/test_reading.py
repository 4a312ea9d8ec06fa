"""Reading a capture once for a build: its keys thread it with its conversation and its prompt
hashes are those of the prompts before its turns, whatever the shape of its messages."""

from __future__ import annotations

from typing import Any

from finetune import prompt_hash
from finetune.datasets._prompt import encoded_prompt_message, prefix_prompt_hashes
from finetune.datasets._reading import read_capture
from tests.finetune._dataset_helpers import answer, tool_call

TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"b": 1, "a": 2}}}]
FUNCTIONS = [{"name": "legacy", "parameters": {}}]

MIXED: list[Any] = [
    {"role": "system", "content": "  You report\tthe weather. "},
    {"role": "user", "content": "Caf\u0065\u0301 in Paris?", "name": "ann"},
    {"role": "assistant", "content": None, "tool_calls": [tool_call("c1", "weather", "{}")]},
    {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "18C"}]},
    {"role": "assistant", "content": ""},
    {"role": "user", "content": ""},
    "not a message",
    {"role": "assistant", "content": "It is 18C."},
    {"role": "user", "content": "Thanks!"},
]


def test_prefix_hashes_are_the_prompt_hashes_of_the_prefixes() -> None:
    requests: list[dict[str, Any]] = [
        {"messages": MIXED, "tools": TOOLS, "functions": FUNCTIONS},
        {"messages": MIXED, "tools": []},
        {"messages": []},
    ]
    for request in requests:
        ends = list(range(len(request["messages"]) + 1))
        encoded = [encoded_prompt_message(m) for m in request["messages"]]
        assert prefix_prompt_hashes(request, encoded, ends) == [
            prompt_hash({**request, "messages": request["messages"][:end]}) for end in ends
        ]


def test_the_prompts_before_each_assistant_turn_and_the_split_of_the_opening_one() -> None:
    request = {"model": "m", "messages": MIXED, "tools": TOOLS}
    reading = read_capture(request, answer("Bye."), None, "stored", {})
    assert reading.prompts == [
        (index, prompt_hash({**request, "messages": MIXED[:index]})) for index in (2, 4, 7)
    ]
    assert reading.split_key == reading.prompts[0][1]
    assert reading.example == {
        "messages": [
            {"role": "system", "content": "  You report\tthe weather. "},
            {"role": "user", "content": "Caf\u0065\u0301 in Paris?", "name": "ann"},
            {"role": "assistant", "tool_calls": [tool_call("c1", "weather", "{}")]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "18C"}]},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": ""},
            "not a message",
            {"role": "assistant", "content": "It is 18C."},
            {"role": "user", "content": "Thanks!"},
            answer("Bye."),
        ],
        "tools": TOOLS,
    }


def test_a_request_without_assistant_turns_splits_by_its_stored_hash() -> None:
    ask = {"messages": [{"role": "user", "content": "Hi"}]}
    assert read_capture(ask, answer("Hello"), None, "stored", {}).split_key == "stored"
    assert read_capture(ask, answer("Hello"), None, None, {}).split_key == prompt_hash(ask)


def test_an_earlier_turn_is_keyed_as_the_turn_the_later_capture_resent() -> None:
    system = {"role": "system", "content": "Be brief."}
    ask = {"role": "user", "content": "Weather in Oslo?"}
    call = answer(None, tool_calls=[tool_call("c1", "weather", '{"city":"Oslo"}')])
    earlier = read_capture({"messages": [system, ask], "tools": TOOLS}, call, None, None, {})
    # Sent back without tools, re-spaced and re-serialised, as clients do.
    resent = {"role": "assistant", "tool_calls": [tool_call("c1", "weather", '{"city": "Oslo"}')]}
    later_messages = [
        {"role": "system", "content": " Be  brief."},
        ask,
        resent,
        {"role": "tool", "tool_call_id": "c1", "content": "-3C"},
    ]
    later = read_capture({"messages": later_messages}, answer("-3C."), None, None, {})
    assert later.turns[2] == earlier.whole
    assert later.whole != earlier.whole


def test_a_warm_cache_reads_the_same_as_a_cold_one() -> None:
    cache: dict[tuple[str, str], bytes] = {}
    request = {"messages": MIXED, "tools": TOOLS}
    first = read_capture(request, answer("Bye."), None, None, cache)
    assert cache
    again = read_capture(request, answer("Bye."), None, None, cache)
    cold = read_capture(request, answer("Bye."), None, None, {})
    assert (again.whole, again.turns, again.prompts, again.split_key, again.example) == (
        cold.whole,
        cold.turns,
        cold.prompts,
        cold.split_key,
        cold.example,
    )
    assert (first.whole, first.turns) == (cold.whole, cold.turns)
