"""The validator that gates uploads: its verdicts on the recorded fine-tuning files, each check
of OpenAI's data-prep guide and the ones added to it, token counts, cost, and its speed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from finetune import (
    DEFAULT_TRAINING_PRICES,
    FileFormat,
    ValidationOptions,
    ValidationReport,
    default_epochs,
    encoding_name_for,
    load_encoding,
    price_table,
    split_lines,
    token_limit_for,
    validate_file,
    validate_jsonl,
)
from finetune.costs._prices import price_for
from tests.replay._cassettes import RECORDINGS_DIR

DATA = RECORDINGS_DIR / "finetune-data"
ONE_EXAMPLE_IS_ENOUGH = ValidationOptions(min_examples=1, recommended_examples=1)


def found(report: ValidationReport) -> set[tuple[str, str, int | None]]:
    return {("error", i.code, i.line) for i in report.errors} | {
        ("warning", i.code, i.line) for i in report.warnings
    }


def check(example: Any) -> set[tuple[str, str, int | None]]:
    """The issues of one example, without the file-level count checks."""
    report = validate_jsonl([orjson.dumps(example)], ONE_EXAMPLE_IS_ENOUGH)
    return {(severity, code, line) for severity, code, line in found(report)}


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"messages": list(messages), **fields}


SYSTEM = {"role": "system", "content": "You control a drone."}
USER = {"role": "user", "content": "Take off."}
ANSWER = {"role": "assistant", "content": "Done."}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "takeoff",
            "parameters": {"type": "object", "properties": {"altitude": {"type": "integer"}}},
        },
    }
]


def call(call_id: str = "call_1", arguments: str = '{"altitude": 100}') -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": "takeoff", "arguments": arguments},
            }
        ],
    }


def answer(call_id: str = "call_1") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": '{"ok": true}'}


# --- the recorded files -----------------------------------------------------------------------


def test_the_cookbook_toy_file_has_its_three_defects_found_as_the_guide_counts_them() -> None:
    # The guide's own run: gpt-3.5-turbo-0613 (cl100k_base, 4,096 tokens per example).
    report = validate_file(
        DATA / "cookbook_toy_chat_fine_tuning.jsonl",
        ValidationOptions(base_model="gpt-3.5-turbo-0613"),
    )
    assert found(report) == {
        ("warning", "missing_system_message", 3),
        ("warning", "missing_user_message", 4),
        ("warning", "over_token_limit", 5),
        ("error", "too_few_examples", None),
    }
    assert not report.passed
    assert report.over_token_limit == [5]
    # The guide prints: min / max 26, 8032; mean / median 1648.4, 45; assistant max 8000;
    # ~4306 billed tokens, 20 epochs, ~86120 tokens charged.
    tokens = report.tokens_per_example
    assert tokens is not None
    assert (tokens.min, tokens.max, tokens.mean, tokens.p50) == (26, 8032, 1648.4, 45.0)
    assert report.assistant_tokens_per_example is not None
    assert report.assistant_tokens_per_example.max == 8000
    assert (report.cost.billed_tokens_per_epoch, report.cost.epochs) == (4306, 20)
    assert report.cost.billed_tokens == 86120


def test_the_toy_files_long_example_fits_gpt_4o_mini() -> None:
    report = validate_file(DATA / "cookbook_toy_chat_fine_tuning.jsonl")
    assert report.encoding == "o200k_base"
    assert report.token_limit == 65_536
    assert report.over_token_limit == []
    assert "over_token_limit" not in report.warning_counts


def test_the_drone_files_double_encoded_arguments_are_flagged_on_lines_3_to_8() -> None:
    report = validate_file(DATA / "cookbook_drone_training_function_calling_first8.jsonl")
    flagged = [i.line for i in report.errors if i.code == "double_encoded_arguments"]
    assert flagged == [3, 4, 5, 6, 7, 8]
    first = next(i for i in report.errors if i.code == "double_encoded_arguments")
    assert '{"location": "current"}' in first.message
    assert report.error_counts == {"double_encoded_arguments": 6, "too_few_examples": 1}
    assert report.warnings == []
    assert report.examples == 8


def test_the_ruby_sarcastic_file_passes_with_the_under_50_warning() -> None:
    report = validate_file(DATA / "ruby_sarcastic_chat.jsonl")
    assert report.passed
    assert report.examples == 10
    assert found(report) == {("warning", "few_examples", None)}
    assert report.cost.epochs == 10  # 10 examples * 3 < 100: OpenAI trains 100 // 10 epochs
    assert report.cost.usd_per_million_tokens == 3.00
    assert report.cost.estimated_usd == pytest.approx(report.cost.billed_tokens * 3.00 / 1e6)


def test_the_dotnet_training_file_passes_with_the_under_50_warning() -> None:
    # Its last line has no trailing newline and some lines have odd whitespace: both fine.
    report = validate_file(DATA / "dotnet_fine_tuning_sample.jsonl")
    assert report.passed
    assert (report.examples, report.lines) == (10, 10)
    assert found(report) == {("warning", "few_examples", None)}


def test_the_dotnet_validation_file_is_blocked_by_the_minimum_of_10() -> None:
    report = validate_file(DATA / "dotnet_fine_tuning_sample_validation.jsonl")
    assert not report.passed
    assert report.examples == 4
    assert found(report) == {("error", "too_few_examples", None)}


def test_legacy_prompt_completion_data_is_refused_as_such() -> None:
    report = validate_file(DATA / "negative_legacy_prompt_completion.jsonl")
    assert not report.passed
    assert report.format == FileFormat.PROMPT_COMPLETION
    assert found(report) == {("error", "wrong_format", 1)}
    assert "prompt/completion" in report.errors[0].message
    assert "line 1, 2" in report.errors[0].message


def test_malformed_json_is_refused_with_its_line() -> None:
    report = validate_file(DATA / "negative_malformed_json.jsonl")
    assert not report.passed
    assert found(report) == {("error", "wrong_format", 1), ("error", "invalid_json", 2)}
    malformed = next(i for i in report.errors if i.code == "invalid_json")
    assert malformed.message.startswith("not valid JSON at column ")


def test_batch_api_input_is_refused_as_such() -> None:
    report = validate_file(DATA / "batch_api_input.jsonl")
    assert not report.passed
    assert report.format == FileFormat.BATCH_API_INPUT
    assert found(report) == {("error", "wrong_format", 1)}
    assert "Batch API input" in report.errors[0].message


# --- the guide's checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "issue"),
    [
        (["not", "an", "object"], ("error", "data_type", 1)),
        ({"conversation": []}, ("error", "missing_messages_list", 1)),
        (chat(), ("error", "missing_messages_list", 1)),
        (chat(SYSTEM, {"content": "hi"}, ANSWER), ("error", "message_missing_key", 1)),
        (chat(SYSTEM, {"role": "user"}, ANSWER), ("error", "message_missing_key", 1)),
        (chat(SYSTEM, {**USER, "mood": "x"}, ANSWER), ("error", "message_unrecognized_key", 1)),
        (chat(SYSTEM, {**USER, "role": "human"}, ANSWER), ("error", "unrecognized_role", 1)),
        (chat({**SYSTEM, "role": "developer"}, USER, ANSWER), ("error", "unrecognized_role", 1)),
        (chat(SYSTEM, {**USER, "content": 42}, ANSWER), ("error", "content_not_string", 1)),
        (chat(SYSTEM, {**USER, "content": ""}, ANSWER), ("error", "missing_content", 1)),
        (chat(SYSTEM, USER), ("error", "example_missing_assistant_message", 1)),
        (chat(USER, ANSWER), ("warning", "missing_system_message", 1)),
        (chat(SYSTEM, ANSWER), ("warning", "missing_user_message", 1)),
    ],
)
def test_each_check_of_the_data_prep_guide(example: Any, issue: tuple[str, str, int]) -> None:
    assert issue in check(example)


def test_a_well_formed_example_has_no_issue() -> None:
    text_and_image = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ],
    }
    assert check(chat(SYSTEM, text_and_image, ANSWER)) == set()
    assert check(chat(SYSTEM, USER, call(), answer(), ANSWER, tools=TOOLS)) == set()


# --- tools, tool calls, weight, legacy functions -------------------------------------------------


@pytest.mark.parametrize(
    "tools",
    [
        {"type": "function"},
        [{"type": "retrieval"}],
        [{"type": "function", "function": {"name": "take off", "parameters": {}}}],
        [{"type": "function", "function": {"name": "t", "parameters": "object"}}],
        [{"type": "function", "function": {"name": "t", "parameters": {"type": "string"}}}],
    ],
)
def test_malformed_tools_are_errors(tools: Any) -> None:
    assert ("error", "invalid_tools", 1) in check(chat(SYSTEM, USER, ANSWER, tools=tools))


def test_a_tool_without_parameters_is_a_warning_and_a_repeated_name_an_error() -> None:
    bare = {"type": "function", "function": {"name": "takeoff"}}
    assert check(chat(SYSTEM, USER, ANSWER, tools=[bare])) == {("warning", "missing_parameters", 1)}
    assert ("error", "duplicate_tool_name", 1) in check(
        chat(SYSTEM, USER, ANSWER, tools=[*TOOLS, *TOOLS])
    )


def test_a_tool_message_must_answer_a_call_of_the_preceding_assistant_turn() -> None:
    issues = check(chat(SYSTEM, USER, call("call_1"), answer("call_9"), ANSWER, tools=TOOLS))
    assert ("error", "tool_message_without_call", 1) in issues
    assert ("error", "tool_call_unanswered", 1) in issues


def test_each_tool_call_followed_by_more_turns_needs_its_answer() -> None:
    issues = check(
        chat(SYSTEM, USER, call(), {"role": "user", "content": "and?"}, ANSWER, tools=TOOLS)
    )
    assert issues == {("error", "tool_call_unanswered", 1)}


def test_a_tool_call_ending_the_example_is_the_training_target_and_needs_no_answer() -> None:
    assert check(chat(SYSTEM, USER, call(), tools=TOOLS)) == set()


def test_a_tool_message_without_its_id_is_missing_a_key() -> None:
    issues = check(
        chat(SYSTEM, USER, call(), {"role": "tool", "content": "x"}, ANSWER, tools=TOOLS)
    )
    assert ("error", "message_missing_key", 1) in issues


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ('"{\\"altitude\\": 100}"', "double_encoded_arguments"),
        ("{altitude: 100}", "tool_call_arguments_not_json"),
        ("[100]", "tool_call_arguments_not_object"),
        ('"100"', "tool_call_arguments_not_object"),
    ],
)
def test_tool_call_arguments_must_be_one_json_object_encoded_once(
    arguments: str, code: str
) -> None:
    assert check(chat(SYSTEM, USER, call(arguments=arguments), tools=TOOLS)) == {("error", code, 1)}


def test_calling_a_tool_the_example_does_not_define_is_a_warning() -> None:
    other = [{**TOOLS[0], "function": {**TOOLS[0]["function"], "name": "land"}}]
    assert check(chat(SYSTEM, USER, call(), tools=other)) == {("warning", "unknown_tool", 1)}


def test_parallel_tool_calls_must_be_a_boolean() -> None:
    issues = check(chat(SYSTEM, USER, ANSWER, tools=TOOLS, parallel_tool_calls="yes"))
    assert issues == {("error", "invalid_parallel_tool_calls", 1)}


def test_two_calls_at_once_under_parallel_tool_calls_false_is_a_warning() -> None:
    two = call()
    two["tool_calls"].append({**two["tool_calls"][0], "id": "call_2"})
    issues = check(chat(SYSTEM, USER, two, tools=TOOLS, parallel_tool_calls=False))
    assert issues == {("warning", "parallel_calls_disallowed", 1)}


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({**USER, "weight": 1}, "weight_not_on_assistant"),
        ({**ANSWER, "weight": 2}, "invalid_weight"),
        ({**ANSWER, "weight": True}, "invalid_weight"),
        ({**ANSWER, "weight": "1"}, "invalid_weight"),
    ],
)
def test_weight_is_only_0_or_1_and_only_on_assistant_messages(
    message: dict[str, Any], code: str
) -> None:
    assert ("error", code, 1) in check(chat(SYSTEM, USER, message, ANSWER))


def test_weight_0_on_a_turn_the_teacher_did_not_write_is_fine_but_not_on_every_turn() -> None:
    assert check(chat(SYSTEM, USER, {**ANSWER, "weight": 0}, USER, ANSWER)) == set()
    assert check(chat(SYSTEM, USER, {**ANSWER, "weight": 0})) == {
        ("warning", "no_trained_message", 1)
    }


def test_legacy_functions_and_function_call_must_agree() -> None:
    functions = [{"name": "takeoff", "parameters": {"type": "object", "properties": {}}}]
    legacy_call = {"role": "assistant", "function_call": {"name": "takeoff", "arguments": "{}"}}
    reply = {"role": "function", "name": "takeoff", "content": "ok"}
    assert check(chat(SYSTEM, USER, legacy_call, reply, ANSWER, functions=functions)) == set()
    assert ("error", "function_call_with_tools", 1) in check(
        chat(SYSTEM, USER, legacy_call, tools=TOOLS)
    )
    assert ("error", "tool_calls_with_functions", 1) in check(
        chat(SYSTEM, USER, call(), functions=functions)
    )
    assert ("error", "tools_and_functions", 1) in check(
        chat(SYSTEM, USER, ANSWER, tools=TOOLS, functions=functions)
    )
    stray = {"role": "function", "name": "land", "content": "ok"}
    assert ("error", "function_message_without_call", 1) in check(
        chat(SYSTEM, USER, stray, ANSWER, functions=functions)
    )


# --- the file as a whole -----------------------------------------------------------------------


def lines_of(count: int, example: dict[str, Any] | None = None) -> list[bytes]:
    return [orjson.dumps(example or chat(SYSTEM, USER, ANSWER)) + b"\n"] * count


@pytest.mark.parametrize(
    ("count", "issue"),
    [
        (9, ("error", "too_few_examples", None)),
        (10, ("warning", "few_examples", None)),
        (49, ("warning", "few_examples", None)),
    ],
)
def test_at_least_10_examples_and_a_warning_under_50(
    count: int, issue: tuple[str, str, None]
) -> None:
    assert found(validate_jsonl(lines_of(count))) == {issue}


def test_50_examples_need_no_warning() -> None:
    report = validate_jsonl(lines_of(50))
    assert report.passed
    assert found(report) == set()


def test_an_empty_file_is_refused() -> None:
    report = validate_jsonl([])
    assert (report.format, report.passed) == (FileFormat.EMPTY, False)
    assert found(report) == {("error", "empty_file", None)}


def test_a_file_over_the_size_limit_is_refused() -> None:
    lines = lines_of(50)
    report = validate_jsonl(lines, ValidationOptions(max_file_bytes=len(lines[0]) * 49))
    assert found(report) == {("error", "file_too_large", None)}
    assert report.bytes == len(lines[0]) * 50


def test_preference_data_is_refused_as_such() -> None:
    record = {
        "input": {"messages": [USER]},
        "preferred_output": [ANSWER],
        "non_preferred_output": [{**ANSWER, "content": "No."}],
    }
    report = validate_jsonl(lines_of(12, record))
    assert report.format == FileFormat.PREFERENCE
    assert found(report) == {("error", "wrong_format", 1)}
    assert "line 1, 2, 3, 4, 5 …" in report.errors[0].message


def test_issues_are_all_counted_but_only_the_first_of_each_code_listed() -> None:
    report = validate_jsonl(lines_of(120, chat(USER, ANSWER)))
    assert report.warning_counts == {"missing_system_message": 120}
    assert [i.line for i in report.warnings] == list(range(1, 51))
    assert report.issues_left_off == 70


def test_blank_lines_warn_and_str_lines_count_their_utf8_bytes() -> None:
    line = orjson.dumps(chat(SYSTEM, {**USER, "content": "café"}, ANSWER)).decode()
    report = validate_jsonl([line] * 10 + ["  \n"] + [line] * 40)
    assert found(report) == {("warning", "blank_line", 11)}
    assert report.bytes == 50 * (len(line.encode()) + 1) + 3


def test_a_body_in_memory_is_split_into_its_lines_as_they_are_read() -> None:
    assert list(split_lines(b'{"a": 1}\n{"b": 2}\n{"c": 3}')) == [
        b'{"a": 1}\n',
        b'{"b": 2}\n',
        b'{"c": 3}',
    ]
    assert list(split_lines(b"")) == []


def test_100000_examples_are_validated_from_a_stream_of_lines() -> None:
    served: list[int] = []

    def lines() -> Iterator[bytes]:
        system = orjson.dumps(SYSTEM)
        for n in range(100_000):
            served.append(n)
            yield (
                b'{"messages": ['
                + system
                + b', {"role": "user", "content": "What is '
                + str(n).encode()
                + b' squared, and why?"}, {"role": "assistant", "content": "It is '
                + str(n * n).encode()
                + b', because that is n times n."}]}\n'
            )

    # How fast is the benchmark's to say (bench.curation_export), not a test's.
    report = validate_jsonl(lines())
    assert report.passed
    assert report.examples == len(served) == 100_000
    assert report.cost.epochs == 1  # 25,000 // 100,000 rounds down to the minimum of 1


# --- tokens and prices ---------------------------------------------------------------------------


def test_encodings_load_offline_and_match_openais_ids() -> None:
    assert load_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert load_encoding("cl100k_base").encode("hello world") == [15339, 1917]


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-nano-2025-04-14", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::abc123", "o200k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("davinci-002", "cl100k_base"),
    ],
)
def test_each_base_model_counts_in_its_encoding(model: str, encoding: str) -> None:
    assert encoding_name_for(model) == encoding


def test_token_limits_and_prices_follow_the_base_model_and_its_undated_alias() -> None:
    assert token_limit_for("gpt-3.5-turbo-0125") == 16_385
    assert token_limit_for("gpt-4o-mini") == 65_536
    assert token_limit_for("some-new-model") == 16_385
    prices = price_table({"gpt-4o-mini-2024-07-18": 2.5, "my-model": 1.0})
    assert price_for("ft:gpt-4o-mini-2024-07-18:acme::x", prices) == 2.5
    assert price_for("gpt-4.1-mini", prices) == DEFAULT_TRAINING_PRICES["gpt-4.1-mini-2025-04-14"]
    assert price_for("my-model", prices) == 1.0
    assert price_for("unknown", prices) is None


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [(5, 20), (3, 25), (10, 10), (34, 3), (8000, 3), (10_000, 2), (30_000, 1)],
)
def test_openais_default_epochs(examples: int, epochs: int) -> None:
    assert default_epochs(examples) == epochs


def test_given_epochs_and_prices_make_the_estimate(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"".join(lines_of(50)))
    options = ValidationOptions(base_model="gpt-4.1-nano-2025-04-14", epochs=2, prices={})
    report = validate_file(path, options)
    assert report.total_tokens == report.cost.billed_tokens_per_epoch
    assert (report.cost.epochs, report.cost.epochs_source) == (2, "given")
    assert report.cost.billed_tokens == 2 * report.total_tokens
    assert report.cost.estimated_usd == pytest.approx(report.cost.billed_tokens * 1.50 / 1e6)
