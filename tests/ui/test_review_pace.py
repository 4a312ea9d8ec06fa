"""The review console at a reviewer's pace, in Chromium: rows that tell captures apart, edited
captures marked and filterable, the open capture in the address (linkable, reloadable, closed by
Back), the small things (counts, placeholders, one Apply, quiet toasts), and an accessibility
audit of every page with axe-core."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Page, expect

from tests.ui._seed import ALIAS, TEACHER
from tests.ui.conftest import Console, accessibility_violations, shot, sign_in


def _rows(page: Page) -> Any:
    return page.locator("#capture-table tbody tr")


def _row_of(page: Page, text: str) -> Any:
    return page.locator("#capture-table tbody tr", has_text=text)


def test_each_row_shows_the_last_user_message_and_the_answer_or_the_tool_it_called(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures?search=Review+question")
    expect(_rows(page)).to_have_count(4)
    listed = console.admin.get("/admin/captures", search="Review question")["data"]
    by_question = {row["last_user_text"][:17]: row for row in listed}
    # The weather question was answered with a tool call; the Lyon one ends with a tool
    # result, so its last *user* message is the one to show.
    paris = _row_of(page, "Review question 2")
    expect(paris.locator(".convo-user")).to_have_text(
        "Review question 2: what is the weather in Paris?"
    )
    expect(paris.locator(".convo-answer .tool-name")).to_have_text("→ get_weather")
    lyon = _row_of(page, "Review question 3")
    expect(lyon.locator(".convo-user")).to_have_text("Review question 3: and in Lyon, in celsius?")
    refund = _row_of(page, "Review question 4")
    answer = by_question["Review question 4"]["answer_text"]
    assert answer is not None and answer.startswith(f"[{TEACHER}]")
    expect(refund.locator(".convo-answer")).to_have_text(answer)
    shot(page, "20-captures-rows")

    # Today's captures show the time; older ones the date too.
    clocks = page.evaluate(
        """async () => {
            const { fmt } = await import("/ui/static/dom.js");
            const today = new Date(); today.setHours(9, 5, 7, 0);
            return [fmt.clock(today.toISOString()), fmt.clock("2025-03-14T09:05:07Z")];
        }"""
    )
    assert clocks[0] == "09:05:07"
    assert re.fullmatch(r"Mar 14 \d\d:05:07", clocks[1]), clocks


def test_an_edit_marks_its_row_and_the_edited_filter_lists_exactly_the_edited(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures?search=Setup+question+7%3A")
    expect(_rows(page)).to_have_count(1)
    _rows(page).first.click()
    page.keyboard.press("e")
    page.fill("#edit-content", "Teal and seven.")
    page.locator("#edit-content").press("Control+Enter")
    row = _rows(page).first
    expect(row).to_have_attribute("data-edited", "true")
    expect(row.locator(".badge-edited")).to_have_text("edited")
    expect(row.locator(".convo-answer")).to_have_text("Teal and seven.")

    page.goto(console.url + "#/captures")
    page.select_option("#f-edited", "true")
    page.click("#capture-filters button[type=submit]")
    expect(page).to_have_url(re.compile(r"#/captures\?edited=true$"))
    edited = console.admin.get("/admin/captures", edited="true")["data"]
    assert edited and all(item["edited"] for item in edited)
    expect(_rows(page)).to_have_count(len(edited))
    expect(page.locator("#capture-table tbody tr[data-edited=true]")).to_have_count(len(edited))
    assert [r.get_attribute("data-id") for r in _rows(page).all()] == [i["id"] for i in edited]
    shot(page, "21-captures-edited")


def test_the_open_capture_is_in_the_address_so_reload_reopens_it_and_back_closes_it(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures?search=Bulk+question")
    rows = _rows(page)
    expect(rows).to_have_count(12)
    ids = [str(row.get_attribute("data-id")) for row in rows.all()]
    expect(page.locator("#capture-detail [data-capture-id]")).to_have_count(0)

    rows.nth(2).click()
    expect(page).to_have_url(re.compile(rf"#/captures/{ids[2]}\?search=Bulk\+question$"))
    expect(page.locator("#capture-detail [data-capture-id]")).to_have_attribute(
        "data-capture-id", ids[2]
    )
    page.keyboard.press("j")  # moving on names the next capture, without a new history entry
    expect(page).to_have_url(re.compile(rf"#/captures/{ids[3]}\?"))

    page.reload()
    expect(page.locator("#capture-detail [data-capture-id]")).to_have_attribute(
        "data-capture-id", ids[3]
    )
    expect(page.locator("#capture-table tr.selected")).to_have_attribute("data-id", ids[3])

    page.go_back()
    expect(page).to_have_url(re.compile(r"#/captures\?search=Bulk\+question$"))
    expect(page.locator("#capture-detail [data-capture-id]")).to_have_count(0)
    expect(page.locator("#capture-table tr.selected")).to_have_count(0)
    page.go_forward()
    expect(page.locator("#capture-detail [data-capture-id]")).to_have_attribute(
        "data-capture-id", ids[3]
    )

    # A link to a capture opens it in a new tab as well, once signed in there (the admin key
    # stays in the tab it was given to).
    fresh = page.context.new_page()
    sign_in(fresh, console, f"#/captures/{quote(ids[5])}")
    expect(fresh.locator("#capture-detail [data-capture-id]")).to_have_attribute(
        "data-capture-id", ids[5]
    )
    fresh.close()


def test_counts_placeholders_buttons_and_toasts_stay_out_of_the_way(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures?search=Markup+check")
    expect(_rows(page)).to_have_count(1)
    expect(page.locator("#capture-count-label")).to_have_text('1 capture · search "Markup check"')

    # Every filter's placeholder fits in its box.
    cut = page.evaluate(
        """() => [...document.querySelectorAll("#capture-filters input[placeholder]")].filter((input) => {
            const style = getComputedStyle(input);
            const context = document.createElement("canvas").getContext("2d");
            context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
            const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return context.measureText(input.placeholder).width > room;
        }).map((input) => input.id)"""
    )
    assert cut == []

    _rows(page).first.click()
    page.keyboard.press("t")
    expect(page.locator("#tag-input")).to_be_focused()
    expect(page.get_by_role("button", name="Apply", exact=True)).to_have_count(1)
    expect(page.get_by_role("button", name="Save tags")).to_have_count(1)
    page.keyboard.press("Escape")

    for key in ("1", "2", "3"):
        page.keyboard.press(key)
    expect(page.locator("#capture-detail .stars button.on")).to_have_count(3)
    # Keys faster than the server answers still store the last one pressed.
    shown = page.locator("#capture-detail [data-capture-id]").get_attribute("data-capture-id")
    assert console.admin.get(f"/admin/captures/{shown}")["rating"] == 3
    toasts = page.locator("#toasts .toast")
    expect(toasts).to_have_count(1)
    expect(toasts.first).to_have_text("Rated 3")
    toast_box = toasts.first.bounding_box()
    detail_box = page.locator("#capture-detail").bounding_box()
    assert toast_box is not None and detail_box is not None
    assert toast_box["x"] + toast_box["width"] <= detail_box["x"]
    expect(toasts).to_have_count(0)


def _audit(page: Page, where: str) -> list[str]:
    return [f"{where}: {line}" for line in accessibility_violations(page)]


def test_every_page_passes_an_accessibility_audit(page: Page, console: Console) -> None:
    seeded = console.seeded
    page.goto(console.url)
    expect(page.locator("#login")).to_be_visible()
    found = _audit(page, "sign-in")
    sign_in(page, console, "#/captures?search=Review+question")
    expect(_rows(page)).to_have_count(4)
    found += _audit(page, "captures")
    _row_of(page, "Review question 2").click()
    expect(page.locator("#capture-detail .tool-call")).not_to_have_count(0)
    found += _audit(page, "capture")
    page.keyboard.press("e")
    expect(page.locator("#edit-content")).to_be_focused()
    found += _audit(page, "editor")
    page.keyboard.press("Escape")
    page.keyboard.press("t")
    expect(page.locator("#tag-input")).to_be_focused()
    found += _audit(page, "tag form")
    page.keyboard.press("Escape")
    page.keyboard.press("?")
    expect(page.locator("#shortcuts-dialog")).to_be_visible()
    found += _audit(page, "shortcuts")
    page.keyboard.press("Escape")
    stars = page.locator("#capture-detail .stars button")
    expect(stars.nth(3)).to_have_accessible_name("Rate 4 of 5")
    expect(page.locator("#edit-content")).to_have_count(0)

    for where, route, ready in [
        ("overview", "#/overview", "#overview-totals, .banner"),
        ("datasets", "#/datasets", f"a[href='#/datasets/{seeded.setup_dataset_id}']"),
        ("dataset", f"#/datasets/{seeded.setup_dataset_id}", "#validation-report"),
        ("jobs", "#/jobs", f"a[href='#/jobs/{seeded.job_id}']"),
        ("job", f"#/jobs/{seeded.job_id}", "#loss-chart svg"),
        ("evaluations", "#/evals", f"a[href='#/evals/{seeded.evaluation_id}']"),
        ("evaluation", f"#/evals/{seeded.evaluation_id}", "#eval-results, .empty"),
        ("aliases", "#/aliases", "table.data"),
        ("alias", f"#/aliases/{ALIAS}", "#alias-history"),
    ]:
        page.goto(console.url + route)
        expect(page.locator(ready).first).to_be_visible()
        found += _audit(page, where)
    assert found == []
