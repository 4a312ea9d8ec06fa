"""What OpenAI allows and charges per base model: per-example token limits, the training price
table, the default-epochs heuristic, and the cost estimate built from them.

The tables are data. Settings carry ``training_prices``, merged over ``DEFAULT_TRAINING_PRICES``,
so a price change is a config change, never a code change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel

DEFAULT_BASE_MODEL = "gpt-4o-mini-2024-07-18"

_T = TypeVar("_T")

# US $ per 1M training tokens. Source: OpenAI's pricing page (openai.com/api/pricing, section
# "Fine-tuning", column "Training"), figures as published for supervised fine-tuning in 2025.
DEFAULT_TRAINING_PRICES: Mapping[str, float] = {
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini-2025-04-14": 5.00,
    "gpt-4.1-nano-2025-04-14": 1.50,
    "gpt-3.5-turbo-0125": 8.00,
}

# Longest training example, in tokens; a longer one is truncated during training. Sources:
# OpenAI's fine-tuning guide, "Token limits" (gpt-4o / gpt-4o-mini 65,536; gpt-3.5-turbo-0125
# and -1106 16,385; gpt-3.5-turbo-0613 4,096, the figure of the first edition of the cookbook
# "Data preparation and analysis for chat model fine-tuning"); babbage-002 / davinci-002 16,384
# (their context); the gpt-4.1 family's 65,536 as Azure OpenAI's fine-tuning model table lists it.
TOKEN_LIMITS: Mapping[str, int] = {
    "gpt-4o-mini-2024-07-18": 65_536,
    "gpt-4o-2024-08-06": 65_536,
    "gpt-4.1-2025-04-14": 65_536,
    "gpt-4.1-mini-2025-04-14": 65_536,
    "gpt-4.1-nano-2025-04-14": 65_536,
    "gpt-3.5-turbo-0125": 16_385,
    "gpt-3.5-turbo-1106": 16_385,
    "gpt-3.5-turbo-0613": 4_096,
    "babbage-002": 16_384,
    "davinci-002": 16_384,
}
DEFAULT_TOKEN_LIMIT = 16_385
"""For a base model the table does not know: the cookbook's current, conservative figure."""

# OpenAI's default n_epochs when "auto", as the cookbook above estimates it: aim at 3 epochs,
# but train on at least 100 and at most 25,000 examples' worth, within 1..25 epochs.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25


def base_model_of(model: str) -> str:
    """The base model under a fine-tuned name: ``ft:gpt-4o-mini-2024-07-18:org:sfx:id`` →
    ``gpt-4o-mini-2024-07-18``; any other name is its own base."""
    if model.startswith("ft:"):
        return model[3:].split(":", 1)[0]
    return model


def _lookup(table: Mapping[str, _T], model: str) -> _T | None:
    base = base_model_of(model)
    if base in table:
        return table[base]
    # An undated alias ("gpt-4o-mini") takes its newest dated snapshot's entry.
    dated = sorted(name for name in table if name.startswith(base + "-"))
    snapshots = [name for name in dated if name[len(base) + 1 : len(base) + 2].isdigit()]
    return table[snapshots[-1]] if snapshots else None


def token_limit_for(model: str) -> int:
    return _lookup(TOKEN_LIMITS, model) or DEFAULT_TOKEN_LIMIT


def price_table(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """The built-in table with the configured prices over it."""
    return {**DEFAULT_TRAINING_PRICES, **(overrides or {})}


def price_for(model: str, prices: Mapping[str, float]) -> float | None:
    return _lookup(prices, model)


def default_epochs(examples: int) -> int:
    """The epochs OpenAI picks for ``n_epochs="auto"`` on this many examples."""
    if examples <= 0:
        return TARGET_EPOCHS
    if examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // examples)
    if examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // examples)
    return TARGET_EPOCHS


class CostEstimate(BaseModel):
    """What a training run on this file would bill, before any upload."""

    base_model: str
    epochs: int
    epochs_source: str
    """``"given"``, or ``"openai-default"`` when estimated with OpenAI's auto heuristic."""
    billed_tokens_per_epoch: int
    """Each example's tokens, capped at the base model's per-example limit (truncation)."""
    billed_tokens: int
    """``billed_tokens_per_epoch * epochs``."""
    usd_per_million_tokens: float | None
    """None when the price table does not know the base model."""
    estimated_usd: float | None


def estimate_cost(
    *,
    base_model: str,
    example_tokens: Iterable[int],
    examples: int,
    token_limit: int,
    prices: Mapping[str, float],
    epochs: int | None = None,
) -> CostEstimate:
    """Tokens * epochs, priced from the table; ``example_tokens`` is each example's count."""
    per_epoch = sum(min(token_limit, n) for n in example_tokens)
    chosen = epochs if epochs is not None else default_epochs(examples)
    price = price_for(base_model, prices)
    billed = per_epoch * chosen
    return CostEstimate(
        base_model=base_model,
        epochs=chosen,
        epochs_source="given" if epochs is not None else "openai-default",
        billed_tokens_per_epoch=per_epoch,
        billed_tokens=billed,
        usd_per_million_tokens=price,
        estimated_usd=round(billed * price / 1_000_000, 6) if price is not None else None,
    )
