"""Costs: what OpenAI allows and charges per base model for training, inference prices, and the
overview of traffic and spend per alias, teacher against student.
"""

from finetune.costs._overview import (
    MAX_OVERVIEW_HOURS,
    AliasUsage,
    ModelUsage,
    Overview,
    OverviewTotals,
    TrafficPoint,
    UsageGroup,
    build_overview,
)
from finetune.costs._prices import (
    DEFAULT_BASE_MODEL,
    DEFAULT_TRAINING_PRICES,
    TOKEN_LIMITS,
    CostEstimate,
    default_epochs,
    price_table,
    token_limit_for,
)
from finetune.costs._usage_prices import (
    DEFAULT_USAGE_PRICES,
    ModelPrice,
    model_family,
    price_entry,
    price_of,
    usage_price_table,
)

__all__ = [
    "DEFAULT_BASE_MODEL",
    "DEFAULT_TRAINING_PRICES",
    "DEFAULT_USAGE_PRICES",
    "MAX_OVERVIEW_HOURS",
    "TOKEN_LIMITS",
    "AliasUsage",
    "CostEstimate",
    "ModelPrice",
    "ModelUsage",
    "Overview",
    "OverviewTotals",
    "TrafficPoint",
    "UsageGroup",
    "build_overview",
    "default_epochs",
    "model_family",
    "price_entry",
    "price_of",
    "price_table",
    "token_limit_for",
    "usage_price_table",
]
