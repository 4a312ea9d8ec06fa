"""``python -m bench.curation_console``: the review console in Chromium over the million captures
that ``python -m bench.curation`` keeps in PostgreSQL.

Times what a reviewer waits for, measured in the page (``performance.now()`` up to the frame
after the change is in the document): the list of the first 50 captures drawn under a filter,
a capture opened by a click (fetched, then drawn), the next one by ``j`` (fetched ahead while
the first was read), and a reload of a capture's address (the whole page, list and capture).
Needs Chromium at /usr/bin/chromium (``make chromium``). Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from bench import curation_data
from bench.curation_corpus import SEARCH_TERMS
from bench.processes import Fleet, free_port, wait_until_healthy
from bench.targets import stillroom_binary

ADMIN_KEY = "bench-admin-key"
CHROMIUM = Path(os.environ.get("STILLROOM_CHROMIUM", "/usr/bin/chromium"))
COMMON_TERM = next(iter(SEARCH_TERMS))
FILTERS = [
    ("no filter", ""),
    ("status=approved", "status=approved"),
    ("status=pending & model=gpt-4o", "status=pending&model=gpt-4o"),
    ("tag=gold", "tag=gold"),
    ("edited=true", "edited=true"),
    ("has_tool_calls=true", "has_tool_calls=true"),
    (f"search={COMMON_TERM} (~3 %)", f"search={COMMON_TERM}"),
]

# Resolves, after the next frame, once `ready()` holds; returns the milliseconds since `start`.
_WAIT = """
const drawn = (ready, start) => new Promise((resolve) => {
  const done = () => requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - start)));
  if (ready()) return done();
  const watch = new MutationObserver(() => { if (ready()) { watch.disconnect(); done(); } });
  watch.observe(document.body, { childList: true, subtree: true, characterData: true, attributes: true });
});
"""

_LIST = (
    "async (hash) => {"
    + _WAIT
    + """
  const old = document.getElementById("capture-list");
  const start = performance.now();
  location.hash = hash;
  return drawn(() => {
    const list = document.getElementById("capture-list");
    const label = document.getElementById("capture-count-label");
    return list && list !== old && label && label.textContent !== "Loading…";
  }, start);
}"""
)

_OPEN = (
    "async ([index, key]) => {"
    + _WAIT
    + """
  const rows = document.querySelectorAll("#capture-table tbody tr");
  const target = key ? rows[index + 1] : rows[index];
  const start = performance.now();
  if (key) document.dispatchEvent(new KeyboardEvent("keydown", { key: "j", bubbles: true }));
  else rows[index].click();
  return drawn(() => document.querySelector(
    `#capture-detail [data-capture-id="${target.dataset.id}"]`) !== null, start);
}"""
)


def _median(samples: list[float]) -> str:
    return f"{statistics.median(samples):.0f} ms" if samples else "—"


def _server(database_url: str, workdir: Path) -> tuple[Fleet, int]:
    binary = stillroom_binary()
    if binary is None:
        raise SystemExit("no `stillroom` executable beside this Python or on PATH")
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "STILLROOM_DATABASE_URL": database_url,
            "STILLROOM_ADMIN_KEY": ADMIN_KEY,
            "STILLROOM_UPSTREAM_BASE_URL": "http://127.0.0.1:9/v1",
            "STILLROOM_SPOOL_DIR": str(workdir / "spool"),
            "STILLROOM_LOG_LEVEL": "WARNING",
        }
    )
    fleet = Fleet(logdir=workdir)
    argv = [str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    child = fleet.spawn("stillroom-console", argv, env=env, cwd=workdir)
    wait_until_healthy(child, f"http://127.0.0.1:{port}/healthz", 90.0)
    return fleet, port


def measure(page: Page, base: str, runs: int) -> list[tuple[str, str, str, str]]:
    """(filter, list drawn, capture opened by a click, next one by j): medians of ``runs``."""
    page.goto(base + "/ui#/overview")
    page.fill("#admin-key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#shell:not([hidden])")
    rows: list[tuple[str, str, str, str]] = []
    for name, query in FILTERS:
        listed, opened, following = [], [], []
        for run in range(runs + 1):
            # An unknown parameter makes each address new, so the list is fetched each time.
            hash_route = f"#/captures?{query}&run={run}" if query else f"#/captures?run={run}"
            took = float(page.evaluate(_LIST, hash_route))
            count = page.locator("#capture-table tbody tr").count()
            if count < 2 or run == 0:  # the first run warms the server and the browser
                continue
            listed.append(took)
            # A row the list did not fetch ahead, then the one after it, which was.
            index = min(2 + 2 * run, count - 2)
            opened.append(float(page.evaluate(_OPEN, [index, False])))
            page.wait_for_timeout(300)
            following.append(float(page.evaluate(_OPEN, [index, True])))
        rows.append((name, _median(listed), _median(opened), _median(following)))
    return rows


def measure_reload(page: Page, runs: int) -> str:
    samples = []
    for _ in range(runs):
        page.reload()
        page.wait_for_selector("#capture-detail [data-capture-id]")
        page.wait_for_selector("#capture-table tbody tr")
        samples.append(
            float(
                page.evaluate(
                    "() => new Promise((r) => requestAnimationFrame(() => r(performance.now())))"
                )
            )
        )
    return _median(samples)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.curation_console", description=__doc__)
    parser.add_argument("--database-url", default=curation_data.URL)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stillroom-console-bench-") as tmp:
        fleet, port = _server(args.database_url, Path(tmp))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"]
                )
                page: Any = browser.new_page(viewport={"width": 1440, "height": 900})
                base = f"http://127.0.0.1:{port}"
                rows = measure(page, base, args.runs)
                reload = measure_reload(page, args.runs)
                browser.close()
        finally:
            fleet.close()
    print("| filter (50 rows) | list drawn | capture opened (click) | next capture (j) |")
    print("|:--|--:|--:|--:|")
    for name, listed, opened, following in rows:
        print(f"| {name} | {listed} | {opened} | {following} |")
    print(f"\nreload of a capture's address (page, list and capture drawn): {reload}")


if __name__ == "__main__":
    main()
