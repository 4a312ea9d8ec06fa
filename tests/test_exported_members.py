"""Each package states its public names; this pins them so a change is a decision."""

from __future__ import annotations

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
