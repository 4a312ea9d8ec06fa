"""Redaction: each kind is scrubbed, numbers that only look alike are left, and structures keep
their keys, ids and roles while their free text is scrubbed."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from finetune import (
    RedactionConfig,
    Redactor,
    create_dataset,
    export_lines,
    export_redactor,
    prompt_hash,
    storage_redactor,
)
from storage import CaptureFilter, insert_captures, session_scope

REDACTOR = Redactor(RedactionConfig(apply_at="both"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mail alice.smith+crm@mail.example.co.uk today", "Mail [EMAIL] today"),
        ("Call +1 (415) 555-0132.", "Call [PHONE]."),
        ("Call 415-555-0132 after six", "Call [PHONE] after six"),
        ("Ring (020) 7946 0958", "Ring [PHONE]"),
        ("Ring +44 20 7946 0958 or +44 (0)20 7946 0958", "Ring [PHONE] or [PHONE]"),
        ("Whatsapp +4915112345678", "Whatsapp [PHONE]"),
        ("Visa 4111 1111 1111 1111 expires 09/27", "Visa [CARD] expires 09/27"),
        ("MC 5555-5555-5555-4444", "MC [CARD]"),
        ("Amex 378282246310005", "Amex [CARD]"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN] please"),
        ("IBAN GB82WEST12345698765432.", "IBAN [IBAN]."),
        ("iban fr14 2004 1010 0505 0001 3m02 606 THANKS", "iban [IBAN] THANKS"),
    ],
)
def test_each_kind_is_redacted(text: str, expected: str) -> None:
    assert REDACTOR.redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Card 4111 1111 1111 1112 fails the Luhn check",
        "Order 4000123412341235 ships today",
        "Order number 123456789012",
        "IBAN DE89 3704 0044 0532 0130 01 has a wrong checksum",
        "IBAN GB82WEST12345698765433",
        "Reference 4155550132 (a bare run of digits is an id)",
        "Released 2024-01-15, version 1.12.3",
        "Served from 192.168.10.10 and 10.0.0.1",
        "Revenue was 12 345 678 901 euros",
        "Tracking 1Z999AA10123456784",
        "user@localhost is no address",
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert REDACTOR.redact_text(text) == text


def test_custom_patterns_run_with_a_literal_replacement() -> None:
    redactor = Redactor(
        RedactionConfig.model_validate(
            {
                "apply_at": "storage",
                "patterns": [
                    {"name": "customer", "pattern": r"CUST-\d{6}", "replacement": r"[CUSTOMER\1]"}
                ],
            }
        )
    )
    assert redactor.redact_text("CUST-123456 wrote from bob@example.org") == (
        r"[CUSTOMER\1] wrote from [EMAIL]"
    )


def test_only_the_chosen_kinds_are_redacted() -> None:
    redactor = Redactor(RedactionConfig(apply_at="export", kinds=["email"]))
    text = "bob@example.org, 4111 1111 1111 1111, +1 415 555 0132"
    assert redactor.redact_text(text) == "[EMAIL], 4111 1111 1111 1111, +1 415 555 0132"


def test_a_bad_custom_pattern_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError, match="invalid regular expression"):
        RedactionConfig.model_validate({"patterns": [{"name": "x", "pattern": "[a-"}]})


def test_where_redaction_applies() -> None:
    assert storage_redactor(RedactionConfig()) is None
    assert export_redactor(RedactionConfig()) is None
    assert storage_redactor(RedactionConfig(apply_at="storage")) is not None
    assert export_redactor(RedactionConfig(apply_at="storage")) is None
    assert export_redactor(RedactionConfig(apply_at="export")) is not None
    both = RedactionConfig(apply_at="both")
    assert storage_redactor(both) is not None and export_redactor(both) is not None


PII = [
    "alice@example.com",
    "+1 415 555 0132",
    "4111 1111 1111 1111",
    "4111111111111111",
    "DE89 3704 0044 0532 0130 00",
]


def fine_tuning_example() -> dict[str, Any]:
    """An OpenAI chat fine-tuning example with PII in every place text can hide."""
    return {
        "messages": [
            {"role": "system", "content": "You help customers of Acme."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "I am alice@example.com, call +1 415 555 0132."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO4111"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_Ab12",
                        "type": "function",
                        "function": {
                            "name": "refund",
                            "arguments": json.dumps(
                                {"card": 4111111111111111, "iban": "DE89 3704 0044 0532 0130 00"}
                            ),
                        },
                    }
                ],
                "weight": 0,
            },
            {
                "role": "tool",
                "tool_call_id": "call_Ab12",
                "content": "Refunded to 4111 1111 1111 1111",
            },
            {"role": "assistant", "content": "Done, alice@example.com: see your card."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "refund",
                    "description": "Refund an order",
                    "parameters": {"type": "object", "properties": {"card": {"type": "integer"}}},
                },
            }
        ],
        "parallel_tool_calls": False,
    }


def test_a_fine_tuning_example_leaves_with_no_pii_and_its_structure_whole() -> None:
    # The export hook is Redactor.redact_value; here on a whole example as export writes it.
    example = fine_tuning_example()
    original = copy.deepcopy(example)
    hook = export_redactor(RedactionConfig(apply_at="export"))
    assert hook is not None
    redacted = hook.redact_value(example)
    assert example == original  # the input is not changed in place
    line = json.dumps(redacted)
    assert [pii for pii in PII if pii in line] == []
    messages = redacted["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[1]["content"][0]["text"] == "I am [EMAIL], call [PHONE]."
    assert messages[1]["content"][1] == original["messages"][1]["content"][1]  # image data kept
    call = messages[2]["tool_calls"][0]
    assert (call["id"], call["type"], call["function"]["name"]) == (
        "call_Ab12",
        "function",
        "refund",
    )
    assert json.loads(call["function"]["arguments"]) == {"card": "[CARD]", "iban": "[IBAN]"}
    assert messages[2]["weight"] == 0
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "call_Ab12",
        "content": "Refunded to [CARD]",
    }
    assert redacted["tools"] == original["tools"]
    assert redacted["parallel_tool_calls"] is False


def test_every_metadata_value_is_redacted_whatever_its_key() -> None:
    request = {
        "model": "gpt-4o",
        "user": "alice@example.com",
        "metadata": {"id": "alice@example.com", "type": "+1 415 555 0132", "team": "billing"},
    }
    assert REDACTOR.redact_value(request) == {
        "model": "gpt-4o",
        "user": "[EMAIL]",
        "metadata": {"id": "[EMAIL]", "type": "[PHONE]", "team": "billing"},
    }


def test_logprobs_that_spell_pii_are_dropped_and_others_kept() -> None:
    def choice(tokens: list[str]) -> dict[str, Any]:
        return {
            "message": {"role": "assistant", "content": "".join(tokens)},
            "logprobs": {"content": [{"token": t, "logprob": -0.1, "bytes": None} for t in tokens]},
        }

    response = {"choices": [choice(["Write to", " bob", "@example", ".org"]), choice(["Hi", "!"])]}
    redacted = REDACTOR.redact_value(response)
    assert redacted["choices"][0] == {
        "message": {"role": "assistant", "content": "Write to [EMAIL]"},
        "logprobs": None,
    }
    assert redacted["choices"][1] == response["choices"][1]


def pii_capture(n: int) -> dict[str, Any]:
    example = fine_tuning_example()
    request = {"model": "gpt-4o", "messages": example["messages"][:4], "tools": example["tools"]}
    answer = example["messages"][4]
    return {
        "id": f"cap_{n:04d}",
        "completion_id": f"chatcmpl-{n}",
        "created_at": datetime(2025, 3, 1, tzinfo=UTC) + timedelta(seconds=n),
        "request": request,
        "response": {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
        },
        "status_code": 200,
        "requested_model": "gpt-4o",
        "served_model": "gpt-4o",
        "finish_reason": "stop",
        "metadata_": {},
        "review_status": "approved",
        "tags": [],
        "prompt_hash": prompt_hash(request),
    }


def test_an_export_with_redaction_on_lets_no_pii_out(engine: Engine) -> None:
    with session_scope(engine) as session:
        insert_captures([pii_capture(1)], session=session)
    dataset = create_dataset(engine, "pii", CaptureFilter(status=["approved"]))
    plain = b"".join(export_lines(engine, dataset.id)).decode()
    assert [pii for pii in PII if pii in plain] != []  # the seeded PII is really in the data
    hook = export_redactor(RedactionConfig(apply_at="export"))
    assert hook is not None
    lines = list(export_lines(engine, dataset.id, redact=hook.redact_value))
    assert len(lines) == 1
    text = b"".join(lines).decode()
    assert [pii for pii in PII if pii in text] == []
    assert "[EMAIL]" in text and "[CARD]" in text
