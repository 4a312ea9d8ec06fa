"""The curation console in a real headless Chromium against a running `stillroom serve`: sign
in, review captures with the keyboard, act on a whole filter, build a dataset and read its
validation report, follow a job and an evaluation, promote and roll back an alias — all
through the page, each checked afterwards through the admin API.

Screenshots of every page land in test-artifacts/ui/ (or $STILLROOM_UI_ARTIFACTS)."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.ui._seed import ALIAS, BULK_PROMPTS, HOSTILE_TEXT, SETUP_PROMPTS, TEACHER
from tests.ui.conftest import Console, shot, sign_in


def _capture(console: Console, capture_id: str) -> dict[str, Any]:
    found: dict[str, Any] = console.admin.get(f"/admin/captures/{capture_id}")
    return found


def _expect_selected(page: Page, capture_id: str) -> None:
    """The row is selected and the review pane has caught up with it."""
    expect(page.locator("#capture-table tr.selected")).to_have_attribute("data-id", capture_id)
    expect(page.locator("#capture-detail [data-capture-id]")).to_have_attribute(
        "data-capture-id", capture_id
    )


def test_sign_in_refuses_a_wrong_key_and_labels_the_sandbox_upstream(
    page: Page, console: Console
) -> None:
    page.goto(console.url)
    expect(page.locator("#login")).to_be_visible()
    shot(page, "01-login")
    page.fill("#admin-key", "not-the-key")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("That is not the admin key.")

    sign_in(page, console)
    label = page.locator("#upstream [data-upstream-kind]")
    expect(label).to_have_attribute("data-upstream-kind", "sandbox")
    expect(page.locator("#upstream")).to_contain_text("127.0.0.1")
    expect(page.locator("#capture-count")).to_have_text(f"{console.seeded.captures} captures")
    expect(page.locator("#overview-totals, .banner")).to_be_visible()
    shot(page, "02-overview")

    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    page.reload()
    expect(page.locator("#login")).to_be_visible()


def test_a_keyboard_review_session_approves_rejects_edits_tags_and_rates(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures?search=Review+question&status=pending")
    rows = page.locator("#capture-table tbody tr")
    expect(rows).to_have_count(4)
    ids = [row.get_attribute("data-id") for row in rows.all()]
    page.keyboard.press("j")  # open the first
    # Newest first: question 4 was asked last.
    expect(page.locator("#capture-detail")).to_contain_text("Review question 4")
    expect(page.locator("#request-parameters")).to_contain_text('"max_tokens": 300')
    shot(page, "03-captures-review")

    page.keyboard.press("a")  # approve question 4, move to 3
    expect(page.locator("#capture-detail")).to_contain_text("Review question 3")
    shot(page, "04-capture-tool-result")
    page.keyboard.press("a")  # approve question 3, move to 2
    expect(page.locator("#capture-detail")).to_contain_text("Review question 2")
    expect(page.locator("#capture-detail .tool-call .fn").first).to_have_text("get_weather")
    shot(page, "05-capture-tool-call")
    page.keyboard.press("r")  # reject question 2, move to 1
    _expect_selected(page, str(ids[3]))
    expect(page.locator("#capture-detail .msg-system")).to_contain_text("terse support agent")

    page.keyboard.press("e")
    editor = page.locator("#edit-content")
    expect(editor).to_be_focused()
    editor.fill("Open Settings, choose Security, then Reset password.")
    page.fill("#edit-reason", "clearer steps")
    shot(page, "06-capture-editor")
    page.locator("#edit-content").press("Control+Enter")
    expect(page.locator("#answer .msg-answer")).to_contain_text("choose Security")
    expect(page.locator("#answer")).to_contain_text("Original answer")

    page.keyboard.press("t")
    page.fill("#tag-input", "password, onboarding")
    page.locator("#tag-input").press("Enter")
    expect(page.locator("[data-tags]")).to_contain_text("onboarding")
    page.keyboard.press("4")
    expect(page.locator("#capture-detail .stars button.on")).to_have_count(4)

    page.keyboard.press("k")  # back to question 2: rejected
    _expect_selected(page, str(ids[2]))
    expect(page.locator("#capture-detail .detail-head .pill").first).to_have_text("rejected")
    page.keyboard.press("?")
    expect(page.locator("#shortcuts-dialog")).to_contain_text("approve, then next")
    shot(page, "07-shortcuts")
    page.keyboard.press("Escape")
    expect(page.locator("#shortcuts-dialog")).to_have_count(0)

    statuses = [_capture(console, str(i))["review_status"] for i in ids]
    assert statuses == ["approved", "approved", "rejected", "pending"]
    edited = _capture(console, str(ids[3]))
    assert edited["answer"]["content"] == "Open Settings, choose Security, then Reset password."
    assert edited["original_answer"]["content"].startswith(f"[{TEACHER}]")
    assert edited["current_edit"]["author"] == "console"
    assert edited["current_edit"]["reason"] == "clearer steps"
    assert sorted(edited["tags"]) == ["onboarding", "password"]
    assert edited["rating"] == 4


def test_a_bulk_action_on_the_filter_shows_its_count_before_it_runs(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures")
    page.fill("#f-search", "Bulk question")
    page.press("#f-search", "Enter")
    expect(page.locator("#capture-table tbody tr")).to_have_count(BULK_PROMPTS)
    page.click("#bulk-approve")
    dialog = page.locator("#bulk-dialog")
    expect(dialog).to_contain_text(f"Approve {BULK_PROMPTS} captures?")
    expect(dialog).to_contain_text('search "Bulk question"')
    shot(page, "08-bulk-confirm")
    dialog.locator("[data-action=cancel]").click()
    approved = console.admin.get("/admin/captures", search="Bulk question", status="approved")
    assert approved["data"] == []

    page.click("#bulk-approve")
    page.locator("#bulk-dialog [data-action=confirm]").click()
    expect(page.locator("#capture-table tbody tr[data-status=approved]")).to_have_count(
        BULK_PROMPTS
    )
    approved = console.admin.get("/admin/captures", search="Bulk question", status="approved")
    assert len(approved["data"]) == BULK_PROMPTS


def test_captured_markup_is_shown_as_text_and_never_run(page: Page, console: Console) -> None:
    sign_in(page, console, "#/captures?search=Markup+check")
    page.locator("#capture-table tbody tr").first.click()
    user = page.locator("#capture-detail .msg-user .msg-body")
    expect(user).to_have_text(HOSTILE_TEXT)
    assert page.locator("#capture-detail img, #capture-detail script").count() == 0
    assert page.title() != "owned"


def test_a_dataset_built_from_the_filter_shows_its_validation_report_and_downloads(
    page: Page, console: Console
) -> None:
    sign_in(page, console, "#/captures?search=Setup+question")
    expect(page.locator("#capture-table tbody tr")).to_have_count(SETUP_PROMPTS)
    page.click("#new-dataset")
    dialog = page.locator("#dataset-dialog")
    dialog.locator("#dlg-name").fill("console-setup")
    dialog.locator("#dlg-approved_only").uncheck()
    dialog.locator("[data-action=confirm]").click()

    expect(page).to_have_url(re.compile(r"#/datasets/"))
    dataset_id = page.url.rsplit("/", 1)[1]
    dataset = console.admin.get(f"/admin/datasets/{dataset_id}")
    assert dataset["name"] == "console-setup"
    assert dataset["filter"]["search"] == "Setup question"
    assert dataset["counts"]["total"] == SETUP_PROMPTS
    report = page.locator("#validation-report")
    expect(report).to_be_visible()
    expect(page.locator("#dataset-counts")).to_contain_text(str(SETUP_PROMPTS))
    expected = console.admin.get(f"/admin/datasets/{dataset_id}/validation", split="train")
    expect(report).to_contain_text(f"{expected['total_tokens']:,}")
    expect(report).to_have_attribute("data-passed", str(expected["passed"]).lower())
    shot(page, "10-dataset-validation")
    page.click("text=← Datasets")
    expect(page.locator(f"a[href='#/datasets/{dataset_id}']")).to_have_text("console-setup")
    shot(page, "11-datasets")
    page.go_back()

    with page.expect_download() as download_info:
        page.click("#download")
    saved = download_info.value.path()
    lines = saved.read_text().splitlines()
    assert len(lines) == SETUP_PROMPTS
    assert json.loads(lines[0])["messages"][-1]["role"] == "assistant"
    assert download_info.value.suggested_filename == "console-setup-v1-all-sft.jsonl"


def test_the_job_page_draws_the_loss_curve_and_the_evaluation_puts_answers_side_by_side(
    page: Page, console: Console
) -> None:
    seeded = console.seeded
    sign_in(page, console, "#/jobs")
    expect(page.locator(f"a[href='#/jobs/{seeded.job_id}']")).to_be_visible()
    shot(page, "12-jobs")
    page.click(f"a[href='#/jobs/{seeded.job_id}']")
    job = console.admin.get(f"/admin/jobs/{seeded.job_id}")
    assert len(job["checkpoints"]) >= 2
    expect(page.locator("#loss-chart svg path.line")).to_have_count(1)
    expect(page.locator("#loss-chart circle")).to_have_count(len(job["checkpoints"]))
    expect(page.locator("#job-events tbody tr")).to_have_count(len(job["events"]))
    shot(page, "13-job")

    page.goto(f"{console.url}#/evals")
    expect(page.locator(f"a[href='#/evals/{seeded.evaluation_id}']")).to_be_visible()
    shot(page, "14-evaluations")
    page.click(f"a[href='#/evals/{seeded.evaluation_id}']")
    evaluation = console.admin.get(f"/admin/evals/{seeded.evaluation_id}/results", limit=20)
    results = page.locator("#eval-results .result")
    expect(results).to_have_count(min(evaluation["total"], 20))
    first = results.first
    expect(first.locator(".msg").first).to_contain_text("Teacher")
    expect(first.locator(".msg").nth(1)).to_contain_text(seeded.fine_tuned_model)
    shot(page, "15-evaluation-results")


def test_promote_and_rollback_through_the_page_are_in_the_alias_history(
    page: Page, console: Console
) -> None:
    model = console.seeded.fine_tuned_model
    sign_in(page, console, "#/aliases")
    shot(page, "16-aliases")
    page.click(f"a[href='#/aliases/{ALIAS}']")
    expect(page.locator("#promote")).to_be_visible()
    before = console.admin.get(f"/admin/aliases/{ALIAS}")["version"]

    page.click("#promote")
    dialog = page.locator("#promote-dialog")
    dialog.locator("#dlg-model").fill(model)
    dialog.locator("#dlg-full").check()
    dialog.locator("#dlg-reason").fill("student passed the gate")
    shot(page, "17-promote-form")
    dialog.locator("[data-action=confirm]").click()
    confirm = page.locator("#confirm-dialog")
    expect(confirm).to_contain_text(f"Route {ALIAS} to {model}")
    shot(page, "18-promote-confirm")
    confirm.locator("[data-action=confirm]").click()
    expect(page.locator(".card-title h2").first).to_have_text(f"{ALIAS} · v{before + 1}")
    expect(page.locator("#alias-history")).to_contain_text("promote")
    shot(page, "19-alias-promoted")
    promoted = console.admin.get(f"/admin/aliases/{ALIAS}")
    assert {t["model"] for t in promoted["targets"] if t["weight"] > 0} == {model}

    page.click("#rollback")
    rollback = page.locator("#rollback-dialog")
    expect(rollback).to_contain_text(f"from v{before + 1} to v{before}")
    rollback.locator("#dlg-reason").fill("checking the rollback")
    shot(page, "20-rollback-confirm")
    rollback.locator("[data-action=confirm]").click()
    expect(page.locator(".card-title h2").first).to_have_text(f"{ALIAS} · v{before}")
    shot(page, "21-alias-rolled-back")

    history = console.admin.get(f"/admin/aliases/{ALIAS}/history")
    assert [(e["action"], e["actor"]) for e in history[:2]] == [
        ("rollback", "console"),
        ("promote", "console"),
    ]
    assert history[0]["reason"] == "checking the rollback"
    assert history[1]["reason"].endswith(f"full to {model} (student passed the gate)")
    current = console.admin.get(f"/admin/aliases/{ALIAS}")
    assert [t["model"] for t in current["targets"]] == [TEACHER]


def test_a_cycle_started_from_the_page_shows_its_steps(page: Page, console: Console) -> None:
    sign_in(page, console, "#/jobs")
    page.click("text=Start cycle…")
    dialog = page.locator("#cycle-dialog")
    expect(dialog.locator("#dlg-alias")).to_have_value(ALIAS)
    dialog.locator("[data-action=confirm]").click()
    expect(page).to_have_url(re.compile(r"#/cycles/"))
    cycle_id = page.url.rsplit("/", 1)[1]
    cycle = console.admin.get(f"/admin/cycles/{cycle_id}")
    assert (cycle["alias"], cycle["trigger"]) == (ALIAS, "manual")
    expect(page.locator(".card").first).to_contain_text(ALIAS)
    shot(page, "22-cycle")
    page.click("text=← Jobs & cycles")
    expect(page.locator(f"a[href='#/cycles/{cycle_id}']")).to_be_visible()
    shot(page, "23-jobs-and-cycles")
