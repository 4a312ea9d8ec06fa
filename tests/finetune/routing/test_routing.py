"""Routing: weights split traffic, a user stays put, bad configs change nothing, and every
change of an alias is a version with who and why, one call away from rollback."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import Engine

from finetune import (
    AliasConfig,
    AliasConflict,
    AliasNotFound,
    InvalidAlias,
    TargetSpec,
    alias_history,
    alias_versions,
    build_route,
    delete_alias,
    get_alias_view,
    list_alias_views,
    load_routes,
    rollback_alias,
    set_alias,
    sticky_point,
)
from storage import session_scope
from tests.routing_support import config, empty_alias_tables

CANARY = config(("gpt-4o", 90, "teacher"), ("ft:small", 10, "student"))


@pytest.fixture(autouse=True)
def _no_aliases(engine: Engine) -> None:
    empty_alias_tables(engine)


def test_weights_split_random_traffic_in_proportion() -> None:
    route = build_route("bot", 1, CANARY.targets, 0.0)
    draws = iter(i / 1000 for i in range(1000))
    picked = Counter(route.pick(None, lambda: next(draws)).model for _ in range(1000))
    assert picked == {"gpt-4o": 900, "ft:small": 100}


def test_a_user_keeps_their_target_and_users_spread_by_weight() -> None:
    route = build_route("bot", 1, CANARY.targets, 0.0)
    first = {f"user-{i}": route.pick(f"user-{i}").model for i in range(2000)}
    again = {f"user-{i}": route.pick(f"user-{i}").model for i in range(2000)}
    assert first == again
    share = Counter(first.values())["ft:small"] / 2000
    assert 0.08 < share < 0.12


def test_growing_a_canary_keeps_its_first_users() -> None:
    small = build_route(
        "bot", 1, config(("ft:small", 10, "student"), ("gpt-4o", 90, "teacher")).targets, 0
    )
    large = build_route(
        "bot", 2, config(("ft:small", 50, "student"), ("gpt-4o", 50, "teacher")).targets, 0
    )
    users = [f"u{i}" for i in range(1000)]
    canaried = {u for u in users if small.pick(u).model == "ft:small"}
    assert canaried and all(large.pick(u).model == "ft:small" for u in canaried)


def test_sticky_point_is_stable_and_in_range() -> None:
    assert sticky_point("bot", "alice") == sticky_point("bot", "alice")
    assert sticky_point("bot", "alice") != sticky_point("other", "alice")
    assert 0 <= sticky_point("bot", "alice") < 1


def test_a_zero_weight_teacher_never_serves_but_stays_the_teacher() -> None:
    route = build_route(
        "bot", 1, config(("gpt-4o", 0, "teacher"), ("ft:s", 1, "student")).targets, 0
    )
    assert {route.pick(f"u{i}").model for i in range(200)} == {"ft:s"}
    assert route.teacher is not None and route.teacher.model == "gpt-4o"


@pytest.mark.parametrize(
    ("cfg", "code"),
    [
        (config(("a", 0, "teacher"), ("b", 0, "student")), "no_weight"),
        (config(("a", 1, "teacher"), ("b", 1, "teacher")), "several_teachers"),
        (config(("a", 1, "student"), ("a", 1, "student")), "duplicate_target"),
        (config(("a", 1, "student"), shadow_rate=0.1), "no_teacher"),
    ],
)
def test_a_config_that_cannot_route_is_refused_and_writes_nothing(
    engine: Engine, cfg: AliasConfig, code: str
) -> None:
    with pytest.raises(InvalidAlias) as refused, session_scope(engine) as session:
        set_alias("bot", cfg, actor="ops", reason=None, session=session)
    assert refused.value.code == code
    with session_scope(engine) as session:
        assert list_alias_views(session=session) == []


def test_an_unknown_upstream_and_a_bad_name_are_refused(engine: Engine) -> None:
    elsewhere = AliasConfig(targets=[TargetSpec(upstream="vllm", model="m", weight=1)])
    with pytest.raises(InvalidAlias) as refused, session_scope(engine) as session:
        set_alias(
            "bot", elsewhere, actor="ops", reason=None, session=session, known_upstreams=["default"]
        )
    assert refused.value.code == "unknown_upstream"
    with pytest.raises(InvalidAlias) as refused, session_scope(engine) as session:
        set_alias("has space", CANARY, actor="ops", reason=None, session=session)
    assert refused.value.code == "invalid_alias_name"


def test_changes_make_versions_and_history_with_who_and_why(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_alias(
            "bot", config(("gpt-4o", 1, "teacher")), actor="alice", reason="launch", session=session
        )
    with session_scope(engine) as session:
        view = set_alias(
            "bot", CANARY, actor="gate", reason="canary 10%", action="promote", session=session
        )
    assert (view.version, view.previous_version, view.changed_by) == (2, 1, "gate")
    with session_scope(engine) as session:
        history = alias_history("bot", session=session)
        versions = alias_versions("bot", session=session)
    assert [(e.action, e.from_version, e.to_version, e.actor, e.reason) for e in history] == [
        ("promote", 1, 2, "gate", "canary 10%"),
        ("create", None, 1, "alice", "launch"),
    ]
    assert [[t.model for t in v.targets] for v in versions] == [["gpt-4o"], ["gpt-4o", "ft:small"]]


def test_rollback_is_one_call_and_twice_returns(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_alias("bot", config(("gpt-4o", 1, "teacher")), actor="a", reason=None, session=session)
        set_alias("bot", CANARY, actor="a", reason=None, session=session)
    with session_scope(engine) as session:
        back = rollback_alias("bot", actor="bob", reason="student regressed", session=session)
    assert (back.version, back.previous_version) == (1, 2)
    assert [t.model for t in back.targets] == ["gpt-4o"]
    with session_scope(engine) as session:
        assert load_routes(session=session)["bot"].version == 1
        forward = rollback_alias("bot", actor="bob", reason="false alarm", session=session)
    assert forward.version == 2
    with session_scope(engine) as session:
        assert alias_history("bot", session=session)[0].reason == "false alarm"


def test_rollback_without_a_previous_version_is_refused(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_alias("bot", CANARY, actor="a", reason=None, session=session)
    with pytest.raises(InvalidAlias) as refused, session_scope(engine) as session:
        rollback_alias("bot", actor="a", reason=None, session=session)
    assert refused.value.code == "nothing_to_roll_back"
    with pytest.raises(AliasNotFound), session_scope(engine) as session:
        rollback_alias("bot", actor="a", reason=None, session=session, to_version=7)


def test_create_only_refuses_an_existing_alias(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_alias("bot", CANARY, actor="a", reason=None, session=session)
    with pytest.raises(AliasConflict), session_scope(engine) as session:
        set_alias("bot", CANARY, actor="a", reason=None, session=session, create_only=True)


def test_deleting_an_alias_keeps_its_history_and_frees_the_name(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_alias("bot", CANARY, actor="a", reason=None, session=session)
    with session_scope(engine) as session:
        delete_alias("bot", actor="b", reason="retired", session=session)
    with session_scope(engine) as session:
        assert load_routes(session=session) == {}
        with pytest.raises(AliasNotFound):
            get_alias_view("bot", session=session)
        assert [e.action for e in alias_history("bot", session=session)] == ["delete", "create"]
        again = set_alias("bot", CANARY, actor="a", reason=None, session=session)
    assert again.version == 2


def test_the_route_table_holds_each_alias_current_version(engine: Engine) -> None:
    with session_scope(engine) as session:
        set_alias(
            "bot",
            config(("gpt-4o", 1, "teacher"), ("ft:s", 1, "student")),
            actor="a",
            reason=None,
            session=session,
        )
        set_alias(
            "bot",
            config(("gpt-4o", 3, "teacher"), ("ft:s", 1, "student"), shadow_rate=0.25),
            actor="a",
            reason=None,
            session=session,
        )
        routes = load_routes(session=session)
    route = routes["bot"]
    assert (route.version, route.shadow_rate, route.bounds) == (2, 0.25, (0.75, 1.0))
    assert route.teacher is not None and route.teacher.model == "gpt-4o"
