"""The committed contract cassettes are what the recordings in the repository build."""

from __future__ import annotations

from tests.finetune._cassettes import CASSETTES, render_cassettes


def test_contract_cassettes_rebuild_identically_from_the_recordings() -> None:
    rendered = render_cassettes()

    assert sorted(rendered) == sorted(p.name for p in CASSETTES.glob("*.yaml"))
    changed = [name for name, text in rendered.items() if (CASSETTES / name).read_text() != text]
    assert changed == []
