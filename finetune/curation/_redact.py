"""Redaction: scrub e-mail addresses, phone numbers, card numbers, IBANs and custom patterns.

Every built-in kind is found by a pattern and then confirmed where a check exists, so numbers
that only look alike stay: a card number must pass the Luhn check (order ids mostly do not),
an IBAN its ISO 13616 mod-97 checksum, and a phone number needs a leading ``+`` or the
grouping people write phone numbers with (a bare run of digits is more often an id).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from finetune.curation._rules import Regex

RedactionKind = Literal["email", "phone", "card", "iban"]
ALL_KINDS: tuple[RedactionKind, ...] = ("email", "phone", "card", "iban")
PLACEHOLDERS: dict[RedactionKind, str] = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "card": "[CARD]",
    "iban": "[IBAN]",
}


class CustomRedaction(BaseModel):
    """A pattern of your own; each match is replaced by ``replacement``, taken literally."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    pattern: Regex
    replacement: str = "[REDACTED]"


class RedactionConfig(BaseModel):
    """What is scrubbed, and where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    apply_at: Literal["off", "storage", "export", "both"] = "off"
    """storage: before a capture is written; export: when examples leave as JSONL; both."""
    kinds: list[RedactionKind] = Field(default_factory=lambda: list(ALL_KINDS))
    """The built-in kinds to scrub."""
    patterns: list[CustomRedaction] = []
    """Custom patterns, applied before the built-in kinds."""

    @property
    def at_storage(self) -> bool:
        return self.apply_at in ("storage", "both")

    @property
    def at_export(self) -> bool:
        return self.apply_at in ("export", "both")


_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
# Groups of up to four characters, spaced or not; trailing groups a checksum rejects are let go.
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{1,4}){3,8}(?![A-Za-z0-9])", re.ASCII
)
# Major networks' numbers start with 2-6; 13 to 19 digits, spaced or dashed. Not the digits
# of a phone number (+...) or of an IBAN whose checksum failed (DE89 ...).
_CARD = re.compile(r"(?<![\w.+-])(?<![A-Za-z]{2}\d{2} )[2-6]\d(?:[ -]?\d){11,17}(?![\w])", re.ASCII)
# Possessive runs of digits keep a failed match from backtracking through every grouping.
_PHONE = re.compile(
    r"(?<![\w@+.-])(?:\+ ?)?(?:\(\d{1,5}\)[ .-]?)?\d++"
    r"(?:(?:[ .-]| ?\(\d{1,5}\)[ .-]?)\d++)*(?![\w@])",
    re.ASCII,
)
_DIGIT = re.compile(r"\d", re.ASCII)
_NON_DIGIT = re.compile(r"\D+")

# Values under these keys are structure (roles, ids, enums) or binary data, never free text.
_STRUCTURAL_KEYS = frozenset(
    {
        "role",
        "id",
        "type",
        "tool_call_id",
        "call_id",
        "object",
        "model",
        "finish_reason",
        "system_fingerprint",
        "service_tier",
        "data",
        "file_data",
        "format",
        "detail",
    }
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10-35, mod 97 is 1."""
    iban = iban.upper()
    if not 15 <= len(iban) <= 34 or not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _card(match: re.Match[str]) -> str:
    digits = _NON_DIGIT.sub("", match.group())
    return PLACEHOLDERS["card"] if luhn_valid(digits) else match.group()


def _iban(match: re.Match[str]) -> str:
    groups = match.group().split(" ")
    for end in range(len(groups), 0, -1):
        if iban_valid("".join(groups[:end])):
            return " ".join([PLACEHOLDERS["iban"], *groups[end:]])
    return match.group()


def _phone(match: re.Match[str]) -> str:
    text = match.group()
    groups = [g for g in _NON_DIGIT.split(text) if g]
    digits = sum(len(g) for g in groups)
    if text.startswith("+"):
        return PLACEHOLDERS["phone"] if 8 <= digits <= 15 else text
    grouped = "(" in text or len(groups) > 1
    if not (10 <= digits <= 11 and grouped):
        return text
    if all(len(g) == 3 for g in groups[1:]) and len(groups[0]) <= 3:
        return text  # thousands, as in 12 345 678 901
    if "." in text and len(groups) == 4 and all(len(g) <= 3 for g in groups):
        return text  # an IPv4 address
    return PLACEHOLDERS["phone"]


class Redactor:
    """Scrubs text, and the strings inside messages, completions and fine-tuning examples."""

    def __init__(self, config: RedactionConfig) -> None:
        self.config = config
        # Escaped, so a replacement is taken literally, backslashes and all.
        self._custom = [(p.pattern, p.replacement.replace("\\", "\\\\")) for p in config.patterns]
        kinds = set(config.kinds)
        self._email = "email" in kinds
        # Order matters: an IBAN holds digit groups a card or phone pattern would take apart.
        self._numeric: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
            (pattern, replace)
            for kind, pattern, replace in (
                ("iban", _IBAN, _iban),
                ("card", _CARD, _card),
                ("phone", _PHONE, _phone),
            )
            if kind in kinds
        ]

    def redact_text(self, text: str) -> str:
        for pattern, replacement in self._custom:
            text = pattern.sub(replacement, text)
        if self._email and "@" in text:
            text = _EMAIL.sub(PLACEHOLDERS["email"], text)
        if self._numeric and _DIGIT.search(text):
            for pattern, replace in self._numeric:
                text = pattern.sub(replace, text)
        return text

    def redact_value(self, value: Any) -> Any:
        """A copy of ``value`` with every free-text string redacted: message contents and text
        parts, refusals, tool-call arguments, metadata values. Keys, ids, roles, types and
        binary data (base64 images and audio) are kept as they are."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        if isinstance(value, dict):
            return {key: self._redact_entry(key, item) for key, item in value.items()}
        return value

    def _redact_entry(self, key: Any, value: Any) -> Any:
        if key == "metadata" and isinstance(value, dict):
            # Metadata keys are the caller's own: a value under "id" or "type" is still free text.
            return {
                k: self.redact_text(v) if isinstance(v, str) else self.redact_value(v)
                for k, v in value.items()
            }
        if key in _STRUCTURAL_KEYS:
            return value
        if key == "url" and isinstance(value, str) and value.startswith("data:"):
            return value
        if key == "arguments" and isinstance(value, str):
            return self._redact_arguments(value)
        if key == "logprobs" and value is not None:
            return self._redact_logprobs(value)
        return self.redact_value(value)

    def _redact_arguments(self, arguments: str) -> str:
        """Tool-call arguments are JSON in a string: they must stay JSON after redaction."""
        redacted = self.redact_text(arguments)
        if redacted == arguments:
            return arguments
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return redacted
        return json.dumps(self._redact_json(parsed), ensure_ascii=False)

    def _redact_json(self, value: Any) -> Any:
        # A card number may be a JSON number: it becomes the placeholder string.
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
            redacted = self.redact_text(text)
            return value if redacted == text else redacted
        if isinstance(value, list):
            return [self._redact_json(item) for item in value]
        if isinstance(value, dict):
            return {key: self._redact_json(item) for key, item in value.items()}
        return self.redact_value(value)

    def _redact_logprobs(self, logprobs: Any) -> Any:
        """Tokens split text apart, so a token can't be scrubbed alone: when the text the
        tokens spell holds anything to redact, the logprobs are dropped."""
        tokens = [
            entry["token"]
            for part in ("content", "refusal")
            for entry in (logprobs.get(part) or [] if isinstance(logprobs, dict) else [])
            if isinstance(entry, dict) and isinstance(entry.get("token"), str)
        ]
        text = "".join(tokens)
        return logprobs if self.redact_text(text) == text else None


def storage_redactor(config: RedactionConfig) -> Redactor | None:
    """The redactor the capture writer applies, or None when storage redaction is off."""
    return Redactor(config) if config.at_storage else None


def export_redactor(config: RedactionConfig) -> Redactor | None:
    """The redactor an export applies (its ``redact_value`` is the export's ``redact`` hook),
    or None when export redaction is off."""
    return Redactor(config) if config.at_export else None
