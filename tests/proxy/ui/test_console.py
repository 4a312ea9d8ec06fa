"""The console's routes: the page under a strict Content-Security-Policy, every module it
imports served from the package as JavaScript, nothing else reachable, nothing in the OpenAPI
schema; and the admin stats name the upstream the console labels."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from proxy import create_app
from proxy.ui._console import UI_DIR
from storage import make_engine, upgrade
from tests.support import ADMIN, admin_settings, openai_error

IMPORT = re.compile(r'from "\./([a-z_]+\.js)"')


def _client(tmp_path: Path, **overrides: str) -> TestClient[Litestar]:
    database_url = f"sqlite:///{tmp_path / 'stillroom.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return TestClient(app=create_app(admin_settings(database_url, tmp_path, **overrides)))


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient[Litestar]]:
    with _client(tmp_path) as test_client:
        yield test_client


def test_the_page_is_html_under_a_policy_that_allows_only_its_own_origin(
    client: TestClient[Litestar],
) -> None:
    for path in ("/ui", "/ui/"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        policy = answer.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy and "style-src 'self';" in policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert '<script type="module" src="/ui/static/app.js"></script>' in answer.text


def _modules(name: str, seen: set[str]) -> set[str]:
    """``name`` and every module it imports, transitively, as the browser would fetch them."""
    if name not in seen:
        seen.add(name)
        for imported in IMPORT.findall((UI_DIR / name).read_text()):
            _modules(imported, seen)
    return seen


def test_every_module_the_page_loads_is_served_as_javascript(
    client: TestClient[Litestar],
) -> None:
    modules = _modules("app.js", set())
    assert {"api.js", "captures.js", "charts.js", "aliases.js", "overview.js"} <= modules
    for name in sorted(modules):
        answer = client.get(f"/ui/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
        assert answer.content == (UI_DIR / name).read_bytes()
        assert "default-src 'self'" in answer.headers["content-security-policy"]
    style = client.get("/ui/static/style.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/missing.js",
        "/ui/static/index.html",
        "/ui/static/..%2F_ui.py",
        "/ui/static/%2E%2E%2F%2E%2E%2Fpyproject.toml",
        "/ui/static/App.js",
    ],
)
def test_nothing_but_the_console_files_is_served(client: TestClient[Litestar], path: str) -> None:
    error = openai_error(client.get(path), 404)
    assert error["code"] == "not_found"


def test_the_console_stays_out_of_the_admin_api_schema(client: TestClient[Litestar]) -> None:
    paths = client.get("/admin/docs/openapi.json", headers=ADMIN).json()["paths"]
    assert "/admin/stats" in paths
    assert [p for p in paths if p.startswith("/ui")] == []


def test_the_page_code_never_writes_markup() -> None:
    # Captures hold untrusted text: the modules build elements and set text, never HTML.
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function"
    )
    offenders = {
        path.name: sinks.findall(path.read_text())
        for path in sorted(UI_DIR.glob("*.js"))
        if sinks.search(path.read_text())
    }
    assert offenders == {}
    assert "style=" not in (UI_DIR / "index.html").read_text()


def test_stats_name_the_upstream_without_its_credentials(tmp_path: Path) -> None:
    with _client(tmp_path, upstream_base_url="http://reader:hunter2@127.0.0.1:9/v1") as client:
        stats = client.get("/admin/stats", headers=ADMIN).json()
    assert stats["upstream_base_url"] == "http://127.0.0.1:9/v1"
