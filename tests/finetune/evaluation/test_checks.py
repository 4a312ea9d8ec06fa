"""Deterministic checks: JSON where JSON was asked, tool names and arguments, exact match and
similarity; only the checks that apply are reported."""

from __future__ import annotations

from typing import Any

from finetune import run_checks
from tests.finetune._dataset_helpers import answer, tool_call

SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        },
    },
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def _asked(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "q"}], **fields}


def test_plain_text_gets_only_exact_match_and_similarity() -> None:
    found = run_checks(_asked(), answer("Paris is the capital."), answer("paris is  the capital."))
    assert set(found) == {"exact_match", "similarity"}
    assert found["exact_match"] is False
    assert found["similarity"] == 1.0


def test_exact_match_ignores_surrounding_and_repeated_whitespace() -> None:
    found = run_checks(_asked(), answer("4"), answer(" 4\n"))
    assert found["exact_match"] is True


def test_json_object_answer_must_parse_as_an_object() -> None:
    asked = _asked(response_format={"type": "json_object"})
    assert run_checks(asked, answer('{"a": 1}'), answer('{"b": 2}'))["json_valid"] is True
    assert run_checks(asked, answer('{"a": 1}'), answer("[1, 2]"))["json_valid"] is False
    assert run_checks(asked, answer('{"a": 1}'), answer("sure! {"))["json_valid"] is False


def test_json_schema_answer_must_hold_the_required_keys() -> None:
    asked = _asked(response_format=SCHEMA_FORMAT)
    teacher = answer('{"name": "Ada", "age": 36}')
    good = run_checks(asked, teacher, answer('{"age": 40, "name": "Bo"}'))
    assert (good["json_valid"], good["json_required_keys"]) == (True, True)
    missing = run_checks(asked, teacher, answer('{"name": "Bo"}'))
    assert (missing["json_valid"], missing["json_required_keys"]) == (True, False)


def test_same_tool_names_with_object_arguments_pass() -> None:
    teacher = answer(None, tool_calls=[tool_call("call_1", "get_weather", '{"city": "Oslo"}')])
    candidate = answer(None, tool_calls=[tool_call("call_9", "get_weather", '{"city":"Bergen"}')])
    found = run_checks(_asked(tools=TOOLS), teacher, candidate)
    assert (found["tool_names"], found["tool_arguments"]) == (True, True)
    assert "no_tool_call" not in found


def test_another_tool_or_broken_arguments_fail() -> None:
    teacher = answer(None, tool_calls=[tool_call("call_1", "get_weather", '{"city": "Oslo"}')])
    wrong_name = answer(None, tool_calls=[tool_call("c", "get_time", '{"city": "Oslo"}')])
    broken = answer(None, tool_calls=[tool_call("c", "get_weather", '{"city": ')])
    not_object = answer(None, tool_calls=[tool_call("c", "get_weather", '"Oslo"')])
    assert run_checks(_asked(tools=TOOLS), teacher, wrong_name)["tool_names"] is False
    assert run_checks(_asked(tools=TOOLS), teacher, broken)["tool_arguments"] is False
    assert run_checks(_asked(tools=TOOLS), teacher, not_object)["tool_arguments"] is False
    text_only = run_checks(_asked(tools=TOOLS), teacher, answer("It is sunny."))
    assert (text_only["tool_names"], text_only["tool_arguments"]) == (False, False)


def test_a_tool_call_where_the_teacher_made_none_fails() -> None:
    teacher = answer("Hello!")
    called = answer(None, tool_calls=[tool_call("c", "get_weather", "{}")])
    assert run_checks(_asked(tools=TOOLS), teacher, called)["no_tool_call"] is False
    assert run_checks(_asked(tools=TOOLS), teacher, answer("Hi!"))["no_tool_call"] is True


def test_no_answer_fails_every_check() -> None:
    found = run_checks(_asked(response_format={"type": "json_object"}), answer("{}"), None)
    assert found == {"json_valid": False, "exact_match": False, "similarity": 0.0}
