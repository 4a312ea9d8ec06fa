"""Checks on one chat fine-tuning example, each reported with a code.

Every check of OpenAI's cookbook "Data preparation and analysis for chat model fine-tuning" is
here under the cookbook's own code (``data_type``, ``missing_messages_list``,
``message_missing_key``, ``message_unrecognized_key``, ``unrecognized_role``, ``missing_content``,
``example_missing_assistant_message``; warnings ``missing_system_message`` and
``missing_user_message``), widened to the whole chat format the fine-tuning API takes (tools,
tool calls and the ``tool`` role, ``weight``, legacy ``functions`` / ``function_call``), plus
checks the cookbook predates: tool definitions, call/answer pairing, arguments that are a JSON
object string and not encoded twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from finetune.datasets._validate_report import Severity

Report = Callable[[Severity, str, str], None]
"""``report(severity, code, message)``; the caller adds the line."""

ERROR: Severity = "error"
WARNING: Severity = "warning"

_EXAMPLE_KEYS = frozenset({"messages", "tools", "parallel_tool_calls", "functions"})
# The message shapes of the chat fine-tuning input: system, user, assistant (with ``weight``),
# tool and the legacy function message.
_ROLE_KEYS: dict[str, frozenset[str]] = {
    "system": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset(
        {"role", "content", "name", "weight", "tool_calls", "function_call", "refusal"}
    ),
    "tool": frozenset({"role", "content", "tool_call_id"}),
    "function": frozenset({"role", "content", "name"}),
}
# Fine-tuning inputs take text and images only (no audio or files).
_PART_TYPES: dict[str, frozenset[str]] = {
    "system": frozenset({"text"}),
    "user": frozenset({"text", "image_url"}),
    "assistant": frozenset({"text", "refusal"}),
    "tool": frozenset({"text"}),
    "function": frozenset(),
}
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_FUNCTIONS = 128


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_example(example: dict[str, Any], report: Report) -> list[Any] | None:
    """Run every check on one example; returns its messages when they are a list to count."""
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        what = "no 'messages' list" if messages is None else "'messages' is not a non-empty list"
        report(ERROR, "missing_messages_list", f"the example has {what}")
        return None
    unknown = sorted(set(example) - _EXAMPLE_KEYS)
    if unknown:
        report(
            WARNING,
            "unrecognized_example_key",
            f"keys {unknown} are not part of the chat fine-tuning format",
        )
    tools = check_definitions(example.get("tools"), "tools", report)
    functions = check_definitions(example.get("functions"), "functions", report)
    if tools is not None and functions is not None:
        report(ERROR, "tools_and_functions", "the example defines both 'tools' and 'functions'")
    parallel = example.get("parallel_tool_calls")
    if "parallel_tool_calls" in example and not isinstance(parallel, bool):
        report(
            ERROR,
            "invalid_parallel_tool_calls",
            f"'parallel_tool_calls' must be true or false, not {_show(parallel)}",
        )
    _MessageChecks(tools, functions, parallel is False, report).run(messages)
    return messages


def check_definitions(value: Any, field: str, report: Report) -> set[str] | None:
    """``tools`` (``{"type": "function", "function": {...}}``) or legacy ``functions``
    (the function objects themselves); returns the names defined, None when absent."""
    if value is None:
        return None
    code = "invalid_tools" if field == "tools" else "invalid_functions"
    if not isinstance(value, list):
        report(ERROR, code, f"'{field}' must be a list, not {type(value).__name__}")
        return set()
    if field == "functions" and len(value) > MAX_FUNCTIONS:
        report(ERROR, code, f"'functions' holds {len(value)} entries; at most {MAX_FUNCTIONS}")
    names: set[str] = set()
    for index, entry in enumerate(value):
        where = f"{field}[{index}]"
        function = entry
        if field == "tools":
            if not isinstance(entry, dict) or entry.get("type") != "function":
                kind = entry.get("type") if isinstance(entry, dict) else type(entry).__name__
                report(ERROR, code, f"{where} must be a tool of type 'function', not {_show(kind)}")
                continue
            function = entry.get("function")
        if not isinstance(function, dict):
            report(ERROR, code, f"{where} has no function object")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
            report(ERROR, code, f"{where} name {_show(name)} is not 1-64 of a-z A-Z 0-9 _ -")
        elif name in names:
            report(ERROR, f"duplicate_{field[:-1]}_name", f"{where} defines '{name}' again")
        else:
            names.add(name)
        if "parameters" not in function:
            report(WARNING, "missing_parameters", f"{where} ('{name}') has no 'parameters'")
            continue
        parameters = function["parameters"]
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            report(ERROR, code, f"{where} parameters must be a JSON Schema of type 'object'")
    return names


def check_arguments(arguments: Any, where: str, report: Report) -> None:
    """Arguments must be a string holding one JSON object, encoded once."""
    if not isinstance(arguments, str):
        report(
            ERROR,
            "tool_call_arguments_not_string",
            f"{where} arguments must be a JSON string, not {type(arguments).__name__}",
        )
        return
    try:
        decoded = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        report(
            ERROR,
            "tool_call_arguments_not_json",
            f"{where} arguments are not JSON: {_show(arguments)}",
        )
        return
    if isinstance(decoded, str):
        try:
            inner = orjson.loads(decoded)
        except orjson.JSONDecodeError:
            inner = None
        if isinstance(inner, dict):
            report(
                ERROR,
                "double_encoded_arguments",
                f"{where} arguments are encoded twice: a JSON string holding the object "
                f"{_show(decoded)}; the model would learn to emit an escaped string",
            )
            return
    if not isinstance(decoded, dict):
        report(
            ERROR,
            "tool_call_arguments_not_object",
            f"{where} arguments must be a JSON object, not {type(decoded).__name__}",
        )


class _MessageChecks:
    def __init__(
        self,
        tools: set[str] | None,
        functions: set[str] | None,
        serial_only: bool,
        report: Report,
    ) -> None:
        self.tools = tools
        self.functions = functions
        self.serial_only = serial_only
        self.report = report
        self.pending: dict[str, str] = {}
        """Tool calls of the latest assistant turn not yet answered: id → function name."""
        self.calls_from: int | None = None
        self.last_function_call: str | None = None
        self.roles: set[str] = set()
        self.trained_assistant = False

    def run(self, messages: list[Any]) -> None:
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                self.report(
                    ERROR,
                    "message_data_type",
                    f"messages[{index}] is a {type(message).__name__}, not an object",
                )
                continue
            self.message(message, index)
        if self.pending and self.calls_from != len(messages) - 1:
            # Calls in the final assistant turn are the training target; earlier ones need answers.
            self._unanswered("the end of the example")
        if "assistant" not in self.roles:
            self.report(ERROR, "example_missing_assistant_message", "no assistant message")
        elif not self.trained_assistant:
            self.report(WARNING, "no_trained_message", "every assistant message has weight 0")
        if "system" not in self.roles:
            self.report(WARNING, "missing_system_message", "no system message")
        if "user" not in self.roles:
            self.report(WARNING, "missing_user_message", "no user message")

    def message(self, message: dict[str, Any], index: int) -> None:
        where = f"messages[{index}]"
        role = message.get("role")
        if "role" not in message:
            self.report(ERROR, "message_missing_key", f"{where} has no 'role'")
        elif role not in _ROLE_KEYS:
            hint = " (use 'system' in training data)" if role == "developer" else ""
            self.report(ERROR, "unrecognized_role", f"{where} has role {_show(role)}{hint}")
        role_name = role if isinstance(role, str) else "?"
        self.roles.add(role_name)
        allowed = _ROLE_KEYS.get(role_name)
        if allowed is not None:
            unknown = sorted(key for key in message if key not in allowed)
            if "weight" in unknown:
                unknown.remove("weight")
                self.report(ERROR, "weight_not_on_assistant", f"{where} ({role_name}) has a weight")
            if unknown:
                self.report(
                    ERROR,
                    "message_unrecognized_key",
                    f"{where} ({role_name}) has keys the format does not take: {unknown}",
                )
        if role_name != "tool" and self.pending:
            self._unanswered(where)
        self.content(message, role_name, where)
        if role_name == "assistant":
            self.assistant(message, where, index)
        elif role_name == "tool":
            self.tool(message, where)
        elif role_name == "function":
            self.function(message, where)

    def content(self, message: dict[str, Any], role: str, where: str) -> None:
        calls = role == "assistant" and bool(
            message.get("tool_calls") or message.get("function_call") or message.get("refusal")
        )
        if "content" not in message:
            if not calls:
                self.report(ERROR, "message_missing_key", f"{where} ({role}) has no 'content'")
            return
        content = message["content"]
        if content is None or content == "" or content == []:
            if not calls:
                self.report(ERROR, "missing_content", f"{where} ({role}) has empty content")
            return
        if isinstance(content, str):
            return
        if not isinstance(content, list):
            self.report(
                ERROR,
                "content_not_string",
                f"{where} ({role}) content is a {type(content).__name__}, not a string",
            )
            return
        accepted = _PART_TYPES.get(role, frozenset({"text"}))
        for number, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            field = "image_url" if kind == "image_url" else kind
            value = part.get(field) if isinstance(part, dict) and field else None
            well_formed = isinstance(value, str) or (
                kind == "image_url"
                and isinstance(value, dict)
                and isinstance(value.get("url"), str)
            )
            if kind not in accepted or not well_formed:
                self.report(
                    ERROR,
                    "content_not_string",
                    f"{where} ({role}) content part {number} ({_show(kind)}) is not one of "
                    f"{sorted(accepted)} with its value",
                )
                return

    def assistant(self, message: dict[str, Any], where: str, index: int) -> None:
        weight = message.get("weight", 1)
        if isinstance(weight, bool) or weight not in (0, 1):
            self.report(
                ERROR, "invalid_weight", f"{where} weight must be 0 or 1, not {_show(weight)}"
            )
        elif weight == 1:
            self.trained_assistant = True
        calls = message.get("tool_calls")
        function_call = message.get("function_call")
        if calls is not None and function_call is not None:
            self.report(
                ERROR, "mixed_function_styles", f"{where} has both tool_calls and function_call"
            )
        if calls is not None:
            self.tool_calls(calls, where, index)
        if function_call is not None:
            self.function_call(function_call, where)

    def tool_calls(self, calls: Any, where: str, index: int) -> None:
        if not isinstance(calls, list) or not calls:
            self.report(ERROR, "invalid_tool_call", f"{where} tool_calls must be a non-empty list")
            return
        if self.functions is not None and self.tools is None:
            self.report(
                ERROR,
                "tool_calls_with_functions",
                f"{where} uses tool_calls but the example defines legacy 'functions', not 'tools'",
            )
        if len(calls) > 1 and self.serial_only:
            self.report(
                WARNING,
                "parallel_calls_disallowed",
                f"{where} makes {len(calls)} calls at once while parallel_tool_calls is false",
            )
        self.pending, self.calls_from = {}, index
        for number, call in enumerate(calls):
            at = f"{where}.tool_calls[{number}]"
            function = call.get("function") if isinstance(call, dict) else None
            call_id = call.get("id") if isinstance(call, dict) else None
            if (
                not isinstance(function, dict)
                or call.get("type") != "function"
                or not isinstance(call_id, str)
                or not call_id
            ):
                self.report(
                    ERROR, "invalid_tool_call", f"{at} needs an id, type 'function' and a function"
                )
                continue
            name = function.get("name")
            if not isinstance(name, str) or not name:
                self.report(ERROR, "invalid_tool_call", f"{at} function has no name")
            elif self.tools is None and self.functions is None:
                self.report(
                    WARNING, "undefined_tools", f"{at} calls '{name}' but no tools are defined"
                )
            elif self.tools is not None and name not in self.tools:
                self.report(WARNING, "unknown_tool", f"{at} calls '{name}', which 'tools' lacks")
            if call_id in self.pending:
                self.report(ERROR, "duplicate_tool_call_id", f"{at} reuses id '{call_id}'")
            self.pending[call_id] = str(name)
            check_arguments(function.get("arguments"), at, self.report)

    def function_call(self, call: Any, where: str) -> None:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            self.report(ERROR, "invalid_function_call", f"{where} function_call needs a name")
            return
        name = call["name"]
        if self.tools is not None and self.functions is None:
            self.report(
                ERROR,
                "function_call_with_tools",
                f"{where} uses legacy function_call but the example defines 'tools'",
            )
        elif self.functions is None:
            self.report(
                WARNING,
                "undefined_functions",
                f"{where} calls '{name}' but no functions are defined",
            )
        elif name not in self.functions:
            self.report(
                WARNING, "unknown_function", f"{where} calls '{name}', which 'functions' lacks"
            )
        self.last_function_call = name
        check_arguments(call.get("arguments"), f"{where}.function_call", self.report)

    def tool(self, message: dict[str, Any], where: str) -> None:
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            self.report(ERROR, "message_missing_key", f"{where} (tool) has no 'tool_call_id'")
        elif call_id not in self.pending:
            self.report(
                ERROR,
                "tool_message_without_call",
                f"{where} answers '{call_id}', which the preceding assistant turn did not call",
            )
        else:
            del self.pending[call_id]

    def function(self, message: dict[str, Any], where: str) -> None:
        name = message.get("name")
        if not isinstance(name, str) or not name:
            self.report(ERROR, "message_missing_key", f"{where} (function) has no 'name'")
        elif name != self.last_function_call:
            self.report(
                ERROR,
                "function_message_without_call",
                f"{where} answers '{name}', which the preceding assistant turn did not call",
            )
        self.last_function_call = None

    def _unanswered(self, before: str) -> None:
        for call_id, name in self.pending.items():
            self.report(
                ERROR,
                "tool_call_unanswered",
                f"tool call '{call_id}' ({name}) gets no tool message before {before}",
            )
        self.pending = {}
