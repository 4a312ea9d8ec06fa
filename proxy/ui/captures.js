// Captures: a filterable, searchable table beside the review pane, keyboard shortcuts for fast
// review, bulk actions and new datasets on the current filter. The open capture is part of the
// address (#/captures/<id>?<filter>), so it can be linked and reloaded, and Back closes it.

import { api } from "./api.js";
import { captureDetailView } from "./capture_detail.js";
import { describeFilter, filterBar, filterFromParams } from "./capture_filter.js";
import { COLUMNS, captureRow } from "./capture_rows.js";
import { dialogOpen, empty, failed, fmt, formDialog, h, plural, toast } from "./dom.js";

const PAGE_SIZE = 50;

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

/** What a row shows of an answer saved in the editor, as the list API would now show it. */
function editedPreview(message) {
  const text = typeof message.content === "string" ? message.content.split(/\s+/).filter(Boolean).join(" ") : "";
  return {
    edited: true,
    answer_text: text ? (text.length > 200 ? text.slice(0, 199).trimEnd() + "…" : text) : null,
    answer_tools: (message.tool_calls || []).map((call) => call?.function?.name).filter((name) => typeof name === "string"),
  };
}

export function render(root, route) {
  route.title("Captures");
  route.main.classList.add("flush");
  const filter = filterFromParams(route.params);
  const query = route.params.toString();
  const state = {
    items: [], cursor: null, index: -1, open: null, mode: null, details: new Map(), shown: 0, generation: 0,
    queue: Promise.resolve(),
  };

  /** Review actions run one after another, in the order they were asked for: keys pressed
   * faster than the server answers still store the last one, and act on the capture shown. */
  function queued(work) {
    const next = state.queue.then(work);
    state.queue = next.catch(() => {});
    return next;
  }

  const listPane = h("div", { class: "review-list", id: "capture-list" });
  const detailPane = h("div", { class: "review-detail", id: "capture-detail" }, empty("Select a capture."));
  const countLabel = h("span", { class: "muted", id: "capture-count-label", role: "status" }, "Loading…");

  /** The open capture: its list row, or just its id when it is not in the list. */
  function current() {
    return state.open;
  }

  function hashOf(id) {
    return "#/captures" + (id ? "/" + encodeURIComponent(id) : "") + (query ? "?" + query : "");
  }

  function renderList() {
    if (!state.items.length) {
      listPane.replaceChildren(empty(`No captures match: ${describeFilter(filter)}.`));
      countLabel.textContent = `No captures · ${describeFilter(filter)}`;
      return;
    }
    const head = h("tr", {}, COLUMNS.map((label) => h("th", { scope: "col" }, label)));
    const openId = state.open?.id;
    const body = h("tbody", {}, state.items.map((item, i) => captureRow(item, i, item.id === openId)));
    body.addEventListener("click", (event) => {
      const tr = event.target.closest("tr[data-index]");
      if (tr) select(Number(tr.dataset.index));
    });
    listPane.replaceChildren(h("table", { class: "data", id: "capture-table" },
      h("caption", { class: "visually-hidden" }, `Captures: ${describeFilter(filter)}`), h("thead", {}, head), body));
    if (state.cursor) {
      listPane.append(h("div", { class: "load-more" }, h("button", { type: "button", class: "btn", onclick: () => load(true) }, "Load more")));
    }
    countLabel.textContent = `${plural(state.items.length, "capture", state.cursor ? "+" : "")} · ${describeFilter(filter)}`;
  }

  function refreshRow(index) {
    const old = listPane.querySelector(`tr[data-index="${index}"]`);
    if (old) old.replaceWith(captureRow(state.items[index], index, index === state.index));
  }

  function markOpen() {
    const openId = state.open?.id;
    state.index = openId ? state.items.findIndex((item) => item.id === openId) : -1;
    if (state.index >= 0) state.open = state.items[state.index];
    for (const tr of listPane.querySelectorAll("tr[aria-current]")) {
      tr.classList.remove("selected");
      tr.removeAttribute("aria-current");
    }
    const tr = listPane.querySelector(`tr[data-index="${state.index}"]`);
    if (tr) {
      tr.classList.add("selected");
      tr.setAttribute("aria-current", "true");
      tr.scrollIntoView({ block: "nearest" });
    }
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
      markOpen();
      if (!state.open) {
        detailPane.replaceChildren(empty(state.items.length ? "Select a capture, or press j for the first." : "Nothing to review here."));
        prefetch(0);
      }
    } catch (error) {
      failed(error);
      listPane.replaceChildren(empty(`Could not load captures: ${error.message}`));
    }
  }

  /** Show capture `id` (null: none) in the pane, as the address says. */
  function show(id) {
    state.mode = null;
    state.open = id ? state.items.find((item) => item.id === id) || { id } : null;
    markOpen();
    if (!id) {
      state.shown += 1;
      detailPane.replaceChildren(empty("Select a capture, or press j for the first."));
      return;
    }
    showDetail();
  }

  /** Open the `index`-th capture of the list. From a closed pane it is a new history entry,
   * which Back undoes; moving on from an open capture replaces the entry instead. */
  function select(index) {
    if (index < 0 || index >= state.items.length) return;
    const id = state.items[index].id;
    if (!state.open) {
      window.location.hash = hashOf(id);
      return;
    }
    window.history.replaceState(window.history.state, "", hashOf(id));
    show(id);
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
        if (ticket !== state.shown) return;
        failed(error);
        detailPane.replaceChildren(empty(`Could not load capture ${item.id}: ${error.message}`));
        return;
      }
      state.details.set(item.id, detail);
    }
    if (ticket !== state.shown) return;
    detailPane.replaceChildren(captureDetailView(detail, state.mode, actions));
    prefetch(state.index + 1);
  }

  /** A capture's detail, fetched ahead so that j, a and a click show it at once. */
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
      if (state.open?.id === summary.id) state.open = state.items[index];
      refreshRow(index);
    }
    state.details.delete(summary.id);
    state.generation += 1;
    if (message) toast(message, "ok");
  }

  const actions = {
    status(status) {
      return queued(async () => {
        const item = current();
        if (!item) return;
        const verb = { approved: "approve", rejected: "reject", pending: "pending" }[status];
        try {
          const summary = await api(`/admin/captures/${encodeURIComponent(item.id)}/${verb}`, { method: "POST" });
          changed(summary, `${status === "pending" ? "Back to pending" : status[0].toUpperCase() + status.slice(1)}: ${fmt.short(item.id)}`);
          if (status !== "pending" && state.index >= 0 && state.index < state.items.length - 1) select(state.index + 1);
          else showDetail();
        } catch (error) {
          failed(error);
        }
      });
    },
    rate(rating) {
      return queued(async () => {
        const item = current();
        if (!item) return;
        try {
          changed(await api(`/admin/captures/${encodeURIComponent(item.id)}/rating`, { method: "POST", body: { rating } }), `Rated ${rating}`);
          showDetail();
        } catch (error) {
          failed(error);
        }
      });
    },
    retag(add, remove) {
      return queued(async () => {
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
      });
    },
    saveEdit(body) {
      return queued(async () => {
        const item = current();
        if (!item) return;
        try {
          await api(`/admin/captures/${encodeURIComponent(item.id)}/edits`, { method: "POST", body });
          state.mode = null;
          changed({ id: item.id, ...editedPreview(body.message) }, "Edit saved; training uses it");
          showDetail();
        } catch (error) {
          failed(error);
        }
      });
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
        title: `${verb} ${plural(preview.count, "capture")}?`,
        message: `Every capture that matches the current filter and would change: ${describeFilter(filter)}.`,
        confirm: `${verb} ${preview.count}`,
        danger: action === "reject" || action === "delete",
      });
      if (!ok) return;
      const done = await api("/admin/captures/bulk", { method: "POST", body: { filter, action, tags } });
      toast(`${verb}: ${plural(done.count, "capture")}`, "ok");
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
    h("button", { type: "button", class: "btn btn-small btn-ghost", onclick: help, title: "Keyboard shortcuts", "aria-label": "Keyboard shortcuts" }, h("kbd", {}, "?")));

  root.append(filterBar(route.params), toolbar, h("div", { class: "review" }, listPane, detailPane));
  show(route.parts[1] || null);
  load();
  document.addEventListener("keydown", onKey);
  return {
    cleanup: () => document.removeEventListener("keydown", onKey),
    /** A new address with the same filter only opens or closes a capture. */
    update(next) {
      if (next.params.toString() !== query) return false;
      const id = next.parts[1] || null;
      if (id !== (state.open?.id ?? null)) show(id);
      return true;
    },
  };
}
