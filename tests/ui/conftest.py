"""The console tests' world: the sandbox upstream, a real `stillroom serve` on SQLite with
traffic and history in it, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.sandbox import SandboxConfig, running_sandbox
from tests.support import PROJECT_ROOT, ServerProcess, running_server
from tests.ui._seed import Admin, Seeded, seed

CHROMIUM = Path(os.environ.get("STILLROOM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("STILLROOM_UI_ARTIFACTS", PROJECT_ROOT / "test-artifacts" / "ui"))
"""Screenshots of every page the tests visit (git ignores test-artifacts/)."""
UI_ADMIN_KEY = "ui-admin-key"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


@dataclass(frozen=True)
class Console:
    server: ServerProcess
    admin: Admin
    seeded: Seeded

    @property
    def url(self) -> str:
        return self.server.base_url + "/ui"


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    workdir = tmp_path_factory.mktemp("console")
    env = {
        "STILLROOM_ADMIN_KEY": UI_ADMIN_KEY,
        # The sandbox takes any key; the training backend insists on having one.
        "STILLROOM_UPSTREAM_API_KEY": "sk-" + "sandbox",
        "STILLROOM_TRAINING_POLL_SECONDS": "0.2",
        "STILLROOM_TRAINING_FILE_WAIT_SECONDS": "10",
        "STILLROOM_EVAL_POLL_SECONDS": "0.2",
        "STILLROOM_LOG_LEVEL": "INFO",
    }
    with (
        running_sandbox(SandboxConfig(step_seconds=0.2, epochs=3)) as upstream,
        running_server(
            database_url=f"sqlite:///{workdir / 'stillroom.db'}",
            upstream_base_url=upstream,
            workdir=workdir,
            env=env,
        ) as server,
    ):
        admin = Admin(server, UI_ADMIN_KEY)
        try:
            yield Console(server, admin, seed(server, admin))
        finally:
            admin.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"Chromium is not installed at {CHROMIUM} (run `make test`, or sh .ci/ensure-chromium)"
        )
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield found
        found.close()


@pytest.fixture
def page(browser: Browser, console: Console) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(10_000)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    yield opened
    context.close()
    # A broken module or a refused inline script shows up here, not as a failed click.
    assert [e for e in errors if "Failed to load resource" not in e] == []


def sign_in(page: Page, console: Console, hash_route: str = "#/overview") -> None:
    page.goto(console.url + hash_route)
    page.fill("#admin-key", UI_ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#shell")).to_be_visible()


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot kept as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe.min.js"
"""axe-core, vendored (see vendor/SOURCES.md): the accessibility audit run in the page."""


def accessibility_violations(page: Page, context: str = "body") -> list[str]:
    """What axe-core finds wrong in ``context`` of the page as it stands (WCAG 2.x A and AA,
    and best practices), one line per rule and element."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # Through the DevTools protocol, which the console's Content-Security-Policy (rightly)
        # does not let a page's own <script> do.
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8") + "\n;undefined")
    results = page.evaluate(
        """async (selector) => {
            const found = await window.axe.run(document.querySelector(selector), {
                resultTypes: ["violations"],
            });
            return found.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.map((n) => n.target.join(" ") + " :: " + n.failureSummary),
            }));
        }""",
        context,
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {target}"
        for v in results
        for target in v["targets"]
    ]
