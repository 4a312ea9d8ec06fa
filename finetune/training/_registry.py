"""The registry of training backends: a kind's name to the factory that builds it.

It knows no backend. Each one is found by its kind under the ``stillroom.training_backends``
entry-point group (stillroom's own are declared in ``pyproject.toml``, a third party's in its
own package), or registered at run time with ``register_backend``, which wins.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from finetune.training._protocol import BackendConfig, InvalidTrainingRequest, TrainingBackend

ENTRY_POINT_GROUP = "stillroom.training_backends"

BackendFactory = Callable[[str, BackendConfig], TrainingBackend]
"""(backend name, its config) -> a backend."""

_REGISTERED: dict[str, BackendFactory] = {}


def register_backend(kind: str, factory: BackendFactory) -> None:
    """Make ``kind`` available to ``make_backend``, over an entry point of the same kind."""
    _REGISTERED[kind] = factory


def backend_kinds() -> list[str]:
    """Every kind ``make_backend`` can build, registered or declared as an entry point."""
    declared = {point.name for point in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(declared | set(_REGISTERED))


def make_backend(name: str, config: BackendConfig) -> TrainingBackend:
    factory = _REGISTERED.get(config.kind) or _declared_factory(config.kind)
    if factory is None:
        known = ", ".join(backend_kinds())
        raise InvalidTrainingRequest(
            f"unknown training backend kind '{config.kind}' (known: {known})", param="backend"
        )
    return factory(name, config)


def _declared_factory(kind: str) -> BackendFactory | None:
    for point in entry_points(group=ENTRY_POINT_GROUP, name=kind):
        factory: BackendFactory = point.load()
        return factory
    return None
