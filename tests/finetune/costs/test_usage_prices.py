"""The usage price table: families, dated snapshots and fine-tuned names resolve to OpenAI's list
prices; unknown models stay unpriced; the ``model_prices`` setting overrides and extends."""

from __future__ import annotations

import pytest

from finetune import (
    DEFAULT_USAGE_PRICES,
    ModelPrice,
    model_family,
    price_of,
    usage_price_table,
)
from proxy import Settings

TABLE = usage_price_table()


def test_a_family_is_priced_per_million_input_and_output_tokens() -> None:
    # gpt-4o: $2.50 in, $10.00 out per 1M tokens.
    assert price_of("gpt-4o", 1_000_000, 0, TABLE) == pytest.approx(2.50)
    assert price_of("gpt-4o", 0, 1_000_000, TABLE) == pytest.approx(10.00)
    assert price_of("gpt-4o-mini", 2_000, 500, TABLE) == pytest.approx(0.0006)


@pytest.mark.parametrize(
    ("snapshot", "family"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o3-mini-2025-01-31", "o3-mini"),
    ],
)
def test_a_dated_snapshot_is_priced_as_its_family(snapshot: str, family: str) -> None:
    assert model_family(snapshot) == family
    assert price_of(snapshot, 1_000, 1_000, TABLE) == price_of(family, 1_000, 1_000, TABLE)


def test_a_snapshot_with_its_own_entry_keeps_its_own_price() -> None:
    assert price_of("gpt-4o-2024-05-13", 1_000_000, 1_000_000, TABLE) == pytest.approx(20.00)


@pytest.mark.parametrize(
    ("model", "dollars"),
    [
        ("ft:gpt-4o-mini-2024-07-18:acme:support:AbC123", 0.30 + 1.20),
        ("ft:gpt-4o-2024-08-06:acme::x1", 3.75 + 15.00),
        ("ft:gpt-4.1-2025-04-14:acme:sfx:id9", 3.00 + 12.00),
        ("ft:gpt-4.1-mini-2025-04-14:acme:sfx:id9", 0.80 + 3.20),
        ("ft:gpt-4.1-nano-2025-04-14:acme:sfx:id9", 0.20 + 0.80),
    ],
)
def test_a_fine_tuned_model_costs_the_fine_tuned_price_of_its_base(
    model: str, dollars: float
) -> None:
    assert price_of(model, 1_000_000, 1_000_000, TABLE) == pytest.approx(dollars)


def test_fine_tuned_inference_costs_more_than_the_base_model() -> None:
    student = price_of("ft:gpt-4o-mini-2024-07-18:acme::x", 1_000, 1_000, TABLE)
    base = price_of("gpt-4o-mini-2024-07-18", 1_000, 1_000, TABLE)
    assert student is not None and base is not None
    assert student == pytest.approx(2 * base)


@pytest.mark.parametrize(
    "model",
    ["my-llama-3-8b", "gpt-4o-audio-preview", "ft:my-llama:acme::x", "gpt-4o-mini-tts", ""],
)
def test_a_model_the_table_cannot_name_is_unpriced_not_guessed(model: str) -> None:
    assert price_of(model, 1_000, 1_000, TABLE) is None


def test_cached_prompt_tokens_are_billed_at_the_cached_rate() -> None:
    # gpt-4.1: $2.00 in, $0.50 cached in, $8.00 out.
    assert price_of("gpt-4.1", 1_000_000, 0, TABLE, cached_tokens=400_000) == pytest.approx(
        0.6 * 2.00 + 0.4 * 0.50
    )
    # A model without a cached price bills cached tokens as input.
    assert price_of("gpt-4", 1_000_000, 0, TABLE, cached_tokens=500_000) == pytest.approx(30.00)


def test_the_setting_overrides_an_entry_and_prices_new_models() -> None:
    settings = Settings(
        model_prices={
            "gpt-4o": {"input": 2.00, "output": 8.00},
            "ft:gpt-4o-mini": {"input": 0.25, "output": 1.00},
            "my-llama-3-8b": {"input": 0.0, "output": 0.0},
        }
    )
    table = usage_price_table(settings.model_prices)
    assert price_of("gpt-4o-2024-08-06", 1_000_000, 1_000_000, table) == pytest.approx(10.00)
    assert price_of("ft:gpt-4o-mini-2024-07-18:a::b", 1_000_000, 0, table) == pytest.approx(0.25)
    assert price_of("my-llama-3-8b", 1_000, 1_000, table) == 0.0
    # The defaults stay as they were.
    assert DEFAULT_USAGE_PRICES["gpt-4o"] == ModelPrice(input=2.50, output=10.00, cached_input=1.25)


def test_one_fine_tuned_model_can_be_priced_on_its_own() -> None:
    own = "ft:gpt-4o-mini-2024-07-18:acme::special"
    table = usage_price_table({own: ModelPrice(input=1.0, output=1.0)})
    assert price_of(own, 1_000_000, 0, table) == pytest.approx(1.0)
    assert price_of("ft:gpt-4o-mini-2024-07-18:acme::other", 1_000_000, 0, table) == (
        pytest.approx(0.30)
    )
