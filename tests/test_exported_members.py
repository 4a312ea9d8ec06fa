"""Each package states its public names; this pins them so a change is a decision."""

from __future__ import annotations

import importlib

import pytest

import finetune
import proxy
import storage


def test_proxy_exports() -> None:
    assert sorted(proxy.__all__) == ["Settings", "SettingsError", "create_app", "load_settings"]


def test_storage_exports_exist_once_each() -> None:
    assert len(storage.__all__) == len(set(storage.__all__))
    missing = [name for name in storage.__all__ if not hasattr(storage, name)]
    assert missing == []
    assert {"Capture", "ApiKey", "make_engine", "upgrade", "insert_captures"} <= set(
        storage.__all__
    )


def test_finetune_exports_the_prompt_hash() -> None:
    assert "prompt_hash" in finetune.__all__


def test_finetune_exports_the_gate_and_promotion() -> None:
    promotion = {
        "CanaryPolicy",
        "CanaryVerdict",
        "GateDecision",
        "GatePolicy",
        "InvalidPromotion",
        "PromotionConflict",
        "PromotionError",
        "PromotionNotFound",
        "abort_promotion",
        "advance_promotions",
        "canary_signals",
        "decide_gate",
        "get_promotion",
        "judge_canary",
        "list_promotions",
        "promote_now",
        "start_promotion",
    }
    assert promotion <= set(finetune.__all__)
    assert all(hasattr(finetune, name) for name in promotion)


def test_storage_exports_promotions_and_signals() -> None:
    assert {
        "PROMOTION_STAGES",
        "Promotion",
        "ServedSignals",
        "alias_signals",
        "end_promotion",
        "get_promotion",
        "insert_promotion",
        "list_promotions",
        "new_promotion_id",
        "open_promotion",
        "open_promotions",
        "record_signals",
        "update_promotion",
    } <= set(storage.__all__)


def test_layers_import_only_downwards() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    forbidden = {"storage": {"proxy", "finetune"}, "finetune": {"proxy"}}
    offenders = []
    for package, banned in forbidden.items():
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                offenders += [
                    f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in banned
                ]
    assert offenders == []


def test_finetune_exports_the_overview_and_usage_prices() -> None:
    overview = {
        "DEFAULT_USAGE_PRICES",
        "MAX_OVERVIEW_HOURS",
        "AliasUsage",
        "ModelPrice",
        "ModelUsage",
        "Overview",
        "OverviewTotals",
        "TrafficPoint",
        "UsageGroup",
        "build_overview",
        "model_family",
        "price_entry",
        "price_of",
        "usage_price_table",
    }
    assert overview <= set(finetune.__all__)
    assert all(hasattr(finetune, name) for name in overview)


def test_storage_exports_the_overview_tallies() -> None:
    tallies = {"CaptureTallies", "RouteUsage", "TrafficBucket", "capture_tallies"}
    assert tallies <= set(storage.__all__)


def test_evaluation_runners_are_exported() -> None:
    runners = {"EvaluationLease", "EvaluationWorker", "LeaseLost", "run_claimed", "run_evaluation"}
    assert runners <= set(finetune.__all__)
    leases = {
        "claim_evaluation",
        "claimable_evaluation_ids",
        "fail_abandoned_evaluations",
        "finish_held_evaluation",
        "refresh_evaluation_progress",
        "release_evaluation",
        "renew_evaluation_lease",
        "stored_positions",
    }
    assert leases <= set(storage.__all__)


ROOMS = [
    "finetune.curation",
    "finetune.datasets",
    "finetune.training",
    "finetune.evaluation",
    "finetune.routing",
    "finetune.cycles",
    "finetune.costs",
    "proxy.gateway",
    "proxy.admin",
    "proxy.cli",
    "proxy.ui",
]


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_states_its_public_names_and_says_what_it_owns(room: str) -> None:
    module = importlib.import_module(room)
    assert module.__doc__
    assert len(module.__all__) == len(set(module.__all__))
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_finetune_re_exports_every_public_name_of_its_rooms() -> None:
    rooms = [importlib.import_module(room) for room in ROOMS if room.startswith("finetune.")]
    missing = [
        f"{room.__name__}.{name}"
        for room in rooms
        for name in room.__all__
        if name not in finetune.__all__
    ]
    assert missing == []
