// Captures: a filterable, searchable table beside the review pane, keyboard shortcuts for fast
// review, bulk actions and new datasets on the current filter.

import { api } from "./api.js";
import { captureDetailView } from "./capture_detail.js";
import { describeFilter, filterBar, filterFromParams } from "./capture_filter.js";
import {
  chip, dialogOpen, empty, failed, fmt, formDialog, h, pill, stars, toast,
} from "./dom.js";

const PAGE_SIZE = 100;

const SHORTCUTS = [
  ["j / ↓", "next capture"],
  ["k / ↑", "previous capture"],
  ["a", "approve, then next"],
  ["r", "reject, then next"],
  ["u", "back to pending"],
  ["e", "edit the answer (Ctrl+Enter saves, Esc cancels)"],
  ["t", "add or remove tags"],
  ["1 – 5", "rate"],
  ["/", "search"],
  ["?", "this list"],
];

function row(item, index, selected) {
  const model = item.served_model ?? item.requested_model ?? "—";
  const failedCall = item.error_kind || (item.status_code && item.status_code >= 400);
  return h("tr", { class: `clickable${selected ? " selected" : ""}`, "data-id": item.id, "data-index": index, "data-status": item.review_status },
    h("td", { class: "nowrap", title: fmt.time(item.created_at) }, fmt.clock(item.created_at)),
    h("td", { class: "nowrap" }, pill(item.review_status),
      item.feedback && item.feedback !== "neutral" ? h("span", { class: `feedback feedback-${item.feedback}`, title: `end-user feedback: ${item.feedback}` }, item.feedback === "positive" ? " ▲" : " ▼") : null),
    h("td", { class: "ellipsis", title: `${item.alias ?? ""} ${model}`.trim() },
      item.alias ? h("strong", {}, item.alias + " ") : null, h("span", { class: item.alias ? "muted" : "" }, model)),
    h("td", { class: "nowrap" }, failedCall ? pill(item.error_kind || String(item.status_code), "pill-error") : item.finish_reason ?? "—",
      item.has_tool_calls && item.finish_reason !== "tool_calls" ? h("span", { class: "muted small" }, " · tools") : null),
    h("td", { class: "num", title: `${fmt.ms(item.total_ms)}` }, item.total_tokens === null ? "—" : fmt.num(item.total_tokens)),
    h("td", {}, item.rating ? stars(item.rating) : null, item.rating && item.tags.length ? " " : null, item.tags.map((tag) => chip(tag))));
}

export function render(root, route) {
  route.title("Captures");
  route.main.classList.add("flush");
  const single = route.parts[1] || null;
  const filter = filterFromParams(route.params);
  const state = { items: [], cursor: null, index: -1, mode: null, details: new Map(), shown: 0, generation: 0 };

  const listPane = h("div", { class: "review-list", id: "capture-list" });
  const detailPane = h("div", { class: "review-detail", id: "capture-detail" }, empty("Select a capture."));
  const countLabel = h("span", { class: "muted", id: "capture-count-label" }, "Loading…");

  function current() {
    return state.items[state.index] || null;
  }

  function renderList() {
    if (!state.items.length) {
      listPane.replaceChildren(empty(`No captures match: ${describeFilter(filter)}.`));
      return;
    }
    const head = h("tr", {}, ["Time", "Review", "Alias · model", "Finish", "Tokens", "Labels"]
      .map((label) => h("th", { class: label === "Tokens" ? "num" : "" }, label)));
    const body = h("tbody", {}, state.items.map((item, i) => row(item, i, i === state.index)));
    body.addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-index]");
      if (tr) select(Number(tr.dataset.index));
    });
    listPane.replaceChildren(h("table", { class: "data", id: "capture-table" }, h("thead", {}, head), body));
    if (state.cursor) {
      listPane.append(h("div", { class: "load-more" }, h("button", { type: "button", class: "btn", onclick: () => load(true) }, "Load more")));
    }
    countLabel.textContent = `${state.items.length}${state.cursor ? "+" : ""} captures · ${describeFilter(filter)}`;
  }

  function refreshRow(index) {
    const old = listPane.querySelector(`tr[data-index="${index}"]`);
    if (old) old.replaceWith(row(state.items[index], index, index === state.index));
  }

  async function load(more = false) {
    try {
      const page = await api("/admin/captures/query", {
        method: "POST",
        body: { filter, limit: PAGE_SIZE, cursor: more ? state.cursor : null },
      });
      state.items = more ? state.items.concat(page.data) : page.data;
      state.cursor = page.next_cursor;
      renderList();
      if (!more && state.items.length) select(0);
      if (!state.items.length) detailPane.replaceChildren(empty("Nothing to review here."));
    } catch (error) {
      failed(error);
      listPane.replaceChildren(empty(`Could not load captures: ${error.message}`));
    }
  }

  async function loadSingle(id) {
    try {
      const detail = await api(`/admin/captures/${encodeURIComponent(id)}`);
      state.items = [detail];
      state.details.set(id, detail);
      state.index = 0;
      countLabel.textContent = `Capture ${id}`;
      showDetail();
    } catch (error) {
      failed(error);
      detailPane.replaceChildren(empty(`Could not load capture: ${error.message}`));
    }
  }

  function select(index) {
    if (index < 0 || index >= state.items.length) return;
    const previous = listPane.querySelector("tr.selected");
    if (previous) previous.classList.remove("selected");
    state.index = index;
    state.mode = null;
    const tr = listPane.querySelector(`tr[data-index="${index}"]`);
    if (tr) {
      tr.classList.add("selected");
      tr.scrollIntoView({ block: "nearest" });
    }
    showDetail();
  }

  async function showDetail() {
    const item = current();
    if (!item) return;
    const ticket = ++state.shown;
    let detail = state.details.get(item.id);
    if (!detail) {
      try {
        detail = await api(`/admin/captures/${encodeURIComponent(item.id)}`);
      } catch (error) {
        failed(error);
        return;
      }
      state.details.set(item.id, detail);
    }
    if (ticket !== state.shown) return;
    detailPane.replaceChildren(captureDetailView(detail, state.mode, actions));
    prefetch(state.index + 1);
  }

  /** The next capture's detail, fetched ahead so that j and a show it at once. */
  function prefetch(index) {
    const next = state.items[index];
    if (!next || state.details.has(next.id)) return;
    const generation = state.generation;
    api(`/admin/captures/${encodeURIComponent(next.id)}`)
      // A change made while it was on its way makes it stale.
      .then((detail) => { if (generation === state.generation) state.details.set(next.id, detail); })
      // Only a head start: showing the capture fetches it again and reports any failure.
      .catch(() => {});
  }

  function changed(summary, message) {
    const index = state.items.findIndex((item) => item.id === summary.id);
    if (index >= 0) {
      state.items[index] = { ...state.items[index], ...summary };
      refreshRow(index);
    }
    state.details.delete(summary.id);
    state.generation += 1;
    if (message) toast(message, "ok");
  }

  const actions = {
    async status(status) {
      const item = current();
      if (!item) return;
      const verb = { approved: "approve", rejected: "reject", pending: "pending" }[status];
      try {
        const summary = await api(`/admin/captures/${encodeURIComponent(item.id)}/${verb}`, { method: "POST" });
        changed(summary, `${status === "pending" ? "Back to pending" : status[0].toUpperCase() + status.slice(1)}: ${fmt.short(item.id)}`);
        if (status !== "pending" && state.index < state.items.length - 1) select(state.index + 1);
        else showDetail();
      } catch (error) {
        failed(error);
      }
    },
    async rate(rating) {
      const item = current();
      if (!item) return;
      try {
        changed(await api(`/admin/captures/${encodeURIComponent(item.id)}/rating`, { method: "POST", body: { rating } }), `Rated ${rating}`);
        showDetail();
      } catch (error) {
        failed(error);
      }
    },
    async retag(add, remove) {
      const item = current();
      if (!item) return;
      try {
        const summary = await api(`/admin/captures/${encodeURIComponent(item.id)}/tags`, { method: "POST", body: { add, remove } });
        state.mode = null;
        changed(summary, "Tags saved");
        showDetail();
      } catch (error) {
        failed(error);
      }
    },
    async saveEdit(body) {
      const item = current();
      if (!item) return;
      try {
        await api(`/admin/captures/${encodeURIComponent(item.id)}/edits`, { method: "POST", body });
        state.mode = null;
        state.details.delete(item.id);
        state.generation += 1;
        toast("Edit saved; training uses it", "ok");
        showDetail();
      } catch (error) {
        failed(error);
      }
    },
    edit() {
      if (!current()) return;
      state.mode = "edit";
      showDetail();
    },
    tag() {
      if (!current()) return;
      state.mode = "tag";
      showDetail();
    },
    cancel() {
      state.mode = null;
      showDetail();
    },
  };

  async function bulk(action, verb, tags = []) {
    try {
      const preview = await api("/admin/captures/bulk", { method: "POST", body: { filter, action, tags, dry_run: true } });
      if (!preview.count) {
        toast(`No capture of the current filter would change (${describeFilter(filter)}).`);
        return;
      }
      const ok = await formDialog({
        id: "bulk-dialog",
        title: `${verb} ${preview.count} capture${preview.count === 1 ? "" : "s"}?`,
        message: `Every capture that matches the current filter and would change: ${describeFilter(filter)}.`,
        confirm: `${verb} ${preview.count}`,
        danger: action === "reject" || action === "delete",
      });
      if (!ok) return;
      const done = await api("/admin/captures/bulk", { method: "POST", body: { filter, action, tags } });
      toast(`${verb}: ${done.count} captures`, "ok");
      state.details.clear();
      state.generation += 1;
      load();
    } catch (error) {
      failed(error);
    }
  }

  async function bulkTag() {
    const values = await formDialog({
      title: "Tag every capture of the filter",
      fields: [{ name: "tags", label: "Tags (comma separated)", required: true }],
      confirm: "Count them",
    });
    if (!values) return;
    const tags = values.tags.split(",").map((t) => t.trim()).filter(Boolean);
    if (tags.length) bulk("tag", "Tag", tags);
  }

  async function newDataset() {
    const restrict = !filter.status;
    const values = await formDialog({
      id: "dataset-dialog",
      title: "New dataset from the current filter",
      message: `Captures: ${describeFilter(filter)}. Each build of a name is its next version.`,
      fields: [
        { name: "name", label: "Name", required: true, pattern: "[A-Za-z0-9._\\-]+", placeholder: "support-bot-train", hint: "letters, digits, '.', '_' and '-'" },
        { name: "dedupe", label: "Repeated prompts keep", type: "select", value: "latest_approved", options: [["latest_approved", "the latest approved capture"], ["best_rated", "the best rated capture"]] },
        restrict && { name: "approved_only", label: "Approved captures only", type: "checkbox", value: true },
      ].filter(Boolean),
      confirm: "Build dataset",
    });
    if (!values) return;
    const chosen = values.approved_only ? { ...filter, status: ["approved"] } : filter;
    try {
      const dataset = await api("/admin/datasets", { method: "POST", body: { name: values.name, filter: chosen, dedupe: values.dedupe } });
      toast(`Built ${dataset.name} v${dataset.version}: ${dataset.counts.total} examples`, "ok");
      window.location.hash = `#/datasets/${encodeURIComponent(dataset.id)}`;
    } catch (error) {
      failed(error);
    }
  }

  function help() {
    formDialog({
      id: "shortcuts-dialog",
      title: "Keyboard shortcuts",
      message: h("div", { class: "shortcuts" }, SHORTCUTS.flatMap(([key, what]) => [h("kbd", {}, key), h("span", {}, what)])),
      confirm: "Close",
      cancel: null,
    });
  }

  function onKey(event) {
    if (event.defaultPrevented || event.altKey || event.metaKey || event.ctrlKey || dialogOpen()) return;
    if (event.target.closest && event.target.closest("input, textarea, select")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const keys = {
      j: () => select(state.index + 1),
      ArrowDown: () => select(state.index + 1),
      k: () => select(state.index - 1),
      ArrowUp: () => select(state.index - 1),
      a: () => actions.status("approved"),
      r: () => actions.status("rejected"),
      u: () => actions.status("pending"),
      e: () => actions.edit(),
      t: () => actions.tag(),
      "/": () => document.getElementById("f-search")?.focus(),
      "?": help,
      Escape: () => state.mode && actions.cancel(),
    };
    const handler = /^[1-5]$/.test(event.key) ? () => actions.rate(Number(event.key)) : keys[event.key];
    if (!handler) return;
    event.preventDefault();
    handler();
  }

  const toolbar = h("div", { class: "toolbar" },
    countLabel,
    h("span", { class: "spacer" }),
    h("span", { class: "muted small" }, "Current filter:"),
    h("button", { type: "button", class: "btn btn-small btn-approve", id: "bulk-approve", onclick: () => bulk("approve", "Approve") }, "Approve all"),
    h("button", { type: "button", class: "btn btn-small btn-reject", id: "bulk-reject", onclick: () => bulk("reject", "Reject") }, "Reject all"),
    h("button", { type: "button", class: "btn btn-small", id: "bulk-tag", onclick: bulkTag }, "Tag all…"),
    h("button", { type: "button", class: "btn btn-small", id: "bulk-pending", onclick: () => bulk("pending", "Reset") }, "Reset to pending"),
    h("button", { type: "button", class: "btn btn-small btn-primary", id: "new-dataset", onclick: newDataset }, "New dataset from filter"),
    h("button", { type: "button", class: "btn btn-small btn-ghost", onclick: help, title: "Keyboard shortcuts" }, h("kbd", {}, "?")));

  if (single) {
    root.append(h("div", { class: "toolbar" }, h("a", { href: "#/captures" }, "← All captures"), countLabel),
      h("div", { class: "review review-single" }, detailPane));
    loadSingle(single);
  } else {
    root.append(filterBar(route.params), toolbar, h("div", { class: "review" }, listPane, detailPane));
    load();
  }
  document.addEventListener("keydown", onKey);
  return () => document.removeEventListener("keydown", onKey);
}
