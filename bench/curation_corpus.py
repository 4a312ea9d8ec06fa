"""What the curation benchmark's captures say: chat-completion requests and responses shaped
like OpenAI's, built from a fixed vocabulary by a seeded generator.

Three kinds of traffic: single questions (some asked again word for word, the duplicates a
dataset folds), multi-turn chats (each turn its own capture, resending the earlier ones) and tool
flows (a capture that calls a tool, then one that answers from its result). The turns of one
conversation share ``metadata.thread``.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

# requested model, served snapshot, share of the traffic that names a model directly
MODELS = (
    ("gpt-4o-mini", "gpt-4o-mini-2024-07-18", 40),
    ("gpt-4o", "gpt-4o-2024-08-06", 18),
    ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", 15),
    ("gpt-4.1", "gpt-4.1-2025-04-14", 10),
    ("gpt-4.1-nano", "gpt-4.1-nano-2025-04-14", 7),
    ("o4-mini", "o4-mini-2025-04-16", 5),
    ("gpt-3.5-turbo", "gpt-3.5-turbo-0125", 5),
)
# alias, served snapshot, share of the aliased traffic
ALIASES = (
    ("support-bot", "gpt-4o-mini-2024-07-18", 35),
    ("summarizer", "gpt-4.1-mini-2025-04-14", 20),
    ("sql-assistant", "gpt-4.1-2025-04-14", 15),
    ("triage", "gpt-4o-mini-2024-07-18", 12),
    ("extractor", "gpt-4.1-nano-2025-04-14", 10),
    ("translator", "gpt-4o-2024-08-06", 8),
)
ALIASED_SHARE = 0.4
TEAMS = (
    ("support", 30),
    ("payments", 15),
    ("search", 12),
    ("growth", 10),
    ("platform", 10),
    ("mobile", 10),
    ("data", 8),
    ("legal", 5),
)
FEATURES = ("chat", "email-draft", "ticket-summary", "autocomplete", "report", "faq")
SEARCH_TERMS = {"invoice": 0.03, "kubernetes": 0.004, "zeppelin": 0.0005}
"""Words put into that share of user questions, so searches of known selectivity exist."""
ABSENT_TERM = "quetzalcoatl"
"""In no capture: a search for it reads every row."""

_WORD_TEXT = (
    "account address after again answer application around ask available back balance bank "
    "before best better between billing build business call can cannot card case change "
    "check client close code company configure connect contact contract cost could count "
    "create customer data database date deadline delete delivery describe design detail "
    "different document does draft each email error estimate example explain export fail "
    "feature field file find first fix form format help history how identify import improve "
    "include information install issue item job keep key language last latest limit list "
    "load login manager message method migrate minute mobile month move need network new "
    "next note number open option order owner page partner password payment people plan "
    "please policy price problem process product project provide query question quick "
    "receipt record refund release remove report request require reset response result "
    "return review rule run schedule search second security send server service session "
    "setting share should show sign simple size software some start status step store "
    "subscription summary support system table team test text thanks their time today "
    "total track transfer try update upgrade usage user value version view want warehouse "
    "week when which why window with work write year"
)
_WORDS = tuple(_WORD_TEXT.split())
_NAMES = ("Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivo", "Jun")
FOLLOW_UPS = (
    "Can you make it shorter?",
    "Thanks. What about the second point?",
    "Please explain that step in more detail.",
    "And if the customer is on the annual plan?",
    "Could you give an example?",
    "Rewrite it in a friendlier tone.",
)


@dataclass(frozen=True, slots=True)
class Turn:
    """One capture's exchange before the proxy sees it."""

    offset_s: float
    """Seconds after its conversation began."""
    request: dict[str, Any]
    response: dict[str, Any] | None
    """None for an error; ``error_status`` and ``error_body`` say which."""
    error_status: int | None = None
    error_body: dict[str, Any] | None = None
    error_kind: str | None = None
    single: bool = False
    """Not part of a thread: edits and corrected answers only go to these."""


class Corpus:
    """Seeded text pools and request builders; one per generation run."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sentences = [self._sentence() for _ in range(6000)]
        self.systems = [
            " ".join(["You are a helpful assistant for the", team, "team.", *self._lines(1, 4)])
            for team, _ in TEAMS
            for _ in range(4)
        ]
        self.faqs = [(rng.choice(self.systems), self._question()) for _ in range(20_000)]
        self.toolsets = [_toolset(rng, i) for i in range(6)]
        self._model_weights = [w for *_, w in MODELS]
        self._alias_weights = [w for *_, w in ALIASES]
        self._team_weights = [w for _, w in TEAMS]

    def _sentence(self) -> str:
        words = self.rng.choices(_WORDS, k=self.rng.randint(6, 18))
        return " ".join(words).capitalize() + "."

    def _lines(self, low: int, high: int) -> list[str]:
        return self.rng.choices(self.sentences, k=self.rng.randint(low, high))

    def _question(self) -> str:
        name = self.rng.choice(_NAMES)
        ref = f"#{self.rng.randint(10_000, 999_999)}"
        body = " ".join(self._lines(1, 3))
        return f"Hi, {name} here about {ref}. {body} Can you help?"

    def question(self) -> tuple[str, str | None]:
        """A user question, and for a frequent one, asked word for word again, its system
        prompt (the same each time, so the prompts are duplicates)."""
        if self.rng.random() < 0.12:
            system, text = self.rng.choice(self.faqs)
            return text, system
        return self.fresh_question(), None

    def fresh_question(self) -> str:
        """A question nobody asked before (a name, a number, one to three sentences)."""
        text = self._question()
        for term, share in SEARCH_TERMS.items():
            if self.rng.random() < share:
                text += f" It is about the {term} again."
        return text

    def detail(self) -> str:
        return " ".join(self._lines(1, 2))

    def answer(self, long: bool = False) -> str:
        return " ".join(self._lines(6, 14) if long else self._lines(1, 8))

    def endpoint(self) -> tuple[str, str | None, str]:
        """(requested model, alias or None, served snapshot)."""
        if self.rng.random() < ALIASED_SHARE:
            alias, served, _ = self.rng.choices(ALIASES, self._alias_weights)[0]
            return alias, alias, served
        model, served, _ = self.rng.choices(MODELS, self._model_weights)[0]
        return model, None, served

    def metadata(self, thread: str | None) -> dict[str, str]:
        if thread is None and self.rng.random() < 0.1:
            return {}
        team = self.rng.choices(TEAMS, self._team_weights)[0][0]
        meta = {
            "team": team,
            "env": "prod" if self.rng.random() < 0.85 else "staging",
            "feature": self.rng.choice(FEATURES),
        }
        if thread is not None:
            meta["thread"] = thread
        return meta

    def system(self, team: str | None) -> str:
        if team is None:
            return self.rng.choice(self.systems)
        index = next(i for i, (name, _) in enumerate(TEAMS) if name == team)
        return self.systems[index * 4 + self.rng.randrange(4)]


def _toolset(rng: random.Random, index: int) -> list[dict[str, Any]]:
    names = (
        ("get_order", "lookup_customer", "issue_refund"),
        ("search_docs", "open_ticket"),
        ("get_weather", "get_forecast", "convert_units"),
        ("run_sql", "describe_table"),
        ("get_invoice", "send_email", "schedule_call"),
        ("translate_text", "detect_language"),
    )[index]
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": " ".join(rng.choices(_WORDS, k=rng.randint(6, 14))).capitalize(),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "description": "The record to act on."},
                        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                    },
                    "required": ["id"],
                },
            },
        }
        for name in names
    ]


_ALPHANUMERIC = bytes.maketrans(b"+/", b"xZ")


def random_id(rng: random.Random, length: int) -> str:
    """Letters and digits, as in OpenAI's ids."""
    raw = base64.b64encode(rng.randbytes(length)).translate(_ALPHANUMERIC)
    return raw[:length].decode()


def completion(
    rng: random.Random,
    served: str,
    created: int,
    message: dict[str, Any],
    finish_reason: str,
    prompt_chars: int,
    usage: bool = True,
) -> dict[str, Any]:
    """A chat.completion body as OpenAI returns it; tokens estimated at four characters each."""
    body: dict[str, Any] = {
        "id": "chatcmpl-" + random_id(rng, 29),
        "object": "chat.completion",
        "created": created,
        "model": served,
        "choices": [
            {
                "index": 0,
                "message": {"refusal": None, "annotations": [], **message},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "service_tier": "default",
        "system_fingerprint": "fp_" + random_id(rng, 10).lower(),
    }
    if usage:
        prompt = max(8, prompt_chars // 4)
        answer = max(1, len(orjson.dumps(message)) // 4)
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": answer,
            "total_tokens": prompt + answer,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
    return body


def prompt_size(messages: Sequence[dict[str, Any]]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)
