"""What serving a chat completion costs: a table of inference prices and the pure pricing of
a model's tokens.

The table is data. Settings carry ``model_prices``, merged over ``DEFAULT_USAGE_PRICES``, so a
price change, a negotiated rate or a self-hosted model (priced at 0) is a config change. A model
the table cannot name is unpriced: ``price_of`` answers None and nothing is guessed.

Lookup, for a model name:

1. the name itself, so one fine-tuned model or a private deployment can have its own price;
2. a fine-tuned name ``ft:BASE:org:suffix:id`` takes ``ft:BASE``, then ``ft:FAMILY``: OpenAI
   bills fine-tuned inference above its base model's price;
3. any other name takes its ``FAMILY``: a dated snapshot (``gpt-4o-2024-08-06``,
   ``gpt-3.5-turbo-0125``) without its date. Nothing else is stripped, so
   ``gpt-4o-audio-preview`` is not priced as ``gpt-4o``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
_PER_TOKEN = 1_000_000


class ModelPrice(BaseModel):
    """A model's inference list price, in US $ per 1M tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    """Prompt tokens."""
    output: float = Field(ge=0)
    """Completion tokens (reasoning tokens included, as OpenAI bills them)."""
    cached_input: float | None = Field(default=None, ge=0)
    """Prompt tokens read from the prompt cache; None: billed as ``input``."""


def _p(input: float, output: float, cached: float | None = None) -> ModelPrice:
    return ModelPrice(input=input, output=output, cached_input=cached)


# US $ per 1M tokens: OpenAI's published list prices (openai.com/api/pricing, "Standard" tier,
# and the "Fine-tuning" section's inference columns for the ft: entries), as listed in August
# 2025. A default only: the ``model_prices`` setting overrides or extends any entry.
DEFAULT_USAGE_PRICES: Mapping[str, ModelPrice] = {
    "gpt-5": _p(1.25, 10.00, 0.125),
    "gpt-5-mini": _p(0.25, 2.00, 0.025),
    "gpt-5-nano": _p(0.05, 0.40, 0.005),
    "gpt-4.1": _p(2.00, 8.00, 0.50),
    "gpt-4.1-mini": _p(0.40, 1.60, 0.10),
    "gpt-4.1-nano": _p(0.10, 0.40, 0.025),
    "gpt-4o": _p(2.50, 10.00, 1.25),
    # The first gpt-4o snapshot kept its launch price.
    "gpt-4o-2024-05-13": _p(5.00, 15.00),
    "chatgpt-4o-latest": _p(5.00, 15.00),
    "gpt-4o-mini": _p(0.15, 0.60, 0.075),
    "gpt-4-turbo": _p(10.00, 30.00),
    "gpt-4": _p(30.00, 60.00),
    "gpt-3.5-turbo": _p(0.50, 1.50),
    "o1": _p(15.00, 60.00, 7.50),
    "o1-mini": _p(1.10, 4.40, 0.55),
    "o1-pro": _p(150.00, 600.00),
    "o3": _p(2.00, 8.00, 0.50),
    "o3-mini": _p(1.10, 4.40, 0.55),
    "o3-pro": _p(20.00, 80.00),
    "o4-mini": _p(1.10, 4.40, 0.275),
    "ft:gpt-4.1": _p(3.00, 12.00, 0.75),
    "ft:gpt-4.1-mini": _p(0.80, 3.20, 0.20),
    "ft:gpt-4.1-nano": _p(0.20, 0.80, 0.05),
    "ft:gpt-4o": _p(3.75, 15.00, 1.875),
    "ft:gpt-4o-mini": _p(0.30, 1.20, 0.15),
    "ft:gpt-3.5-turbo": _p(3.00, 6.00),
    "ft:o4-mini": _p(4.00, 16.00, 1.00),
}


def usage_price_table(overrides: Mapping[str, ModelPrice] | None = None) -> dict[str, ModelPrice]:
    """The built-in table with the configured prices over it."""
    return {**DEFAULT_USAGE_PRICES, **(overrides or {})}


def model_family(model: str) -> str:
    """A dated snapshot's family (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``); other names
    are their own family."""
    return _SNAPSHOT.sub("", model)


def price_entry(model: str, table: Mapping[str, ModelPrice]) -> ModelPrice | None:
    """The table's price for ``model``, or None when it has none (see the module's lookup)."""
    if model in table:
        return table[model]
    if model.startswith("ft:"):
        base = model[3:].split(":", 1)[0]
        candidates = [f"ft:{base}", f"ft:{model_family(base)}"]
    else:
        candidates = [model_family(model)]
    return next((table[name] for name in candidates if name in table), None)


def price_of(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    table: Mapping[str, ModelPrice],
    *,
    cached_tokens: int = 0,
) -> float | None:
    """US $ for these tokens on ``model``, or None when the model is unpriced.

    ``cached_tokens`` is the part of ``prompt_tokens`` read from the prompt cache.
    """
    price = price_entry(model, table)
    if price is None:
        return None
    cached = min(max(cached_tokens, 0), prompt_tokens)
    cached_rate = price.input if price.cached_input is None else price.cached_input
    dollars = (
        (prompt_tokens - cached) * price.input
        + cached * cached_rate
        + completion_tokens * price.output
    )
    return dollars / _PER_TOKEN
