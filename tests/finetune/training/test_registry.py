"""The training-backend registry finds backends by kind and knows none of them itself."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

import pytest
from pydantic import SecretStr

from finetune import BackendConfig, InvalidTrainingRequest, make_backend, register_backend
from finetune.training import ENTRY_POINT_GROUP, _registry, backend_kinds
from finetune.training._openai import OpenAIBackend


@pytest.fixture(autouse=True)
def _no_registrations_left() -> Iterator[None]:
    before = dict(_registry._REGISTERED)
    yield
    _registry._REGISTERED.clear()
    _registry._REGISTERED.update(before)


def test_the_openai_kind_comes_from_its_entry_point() -> None:
    declared = {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}
    assert declared["openai"] == "finetune.training._openai:openai_from_config"
    backend = make_backend("main", BackendConfig(api_key=SecretStr("k")))
    assert isinstance(backend, OpenAIBackend)


def test_a_registered_kind_is_built_with_its_name_and_config() -> None:
    built: list[tuple[str, str]] = []

    def factory(name: str, config: BackendConfig) -> OpenAIBackend:
        built.append((name, config.kind))
        return OpenAIBackend(name, base_url="http://127.0.0.1:9/v1", api_key="k")

    register_backend("mine", factory)
    make_backend("lab", BackendConfig(kind="mine"))
    assert built == [("lab", "mine")]
    assert "mine" in backend_kinds()


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidTrainingRequest) as refused:
        make_backend("x", BackendConfig(kind="nope"))
    assert "unknown training backend kind 'nope'" in refused.value.message
    assert "openai" in refused.value.message
    assert refused.value.param == "backend"
