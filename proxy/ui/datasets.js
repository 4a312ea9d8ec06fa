// Datasets: the list, and one dataset with its counts, its validation report (tokens and the
// cost estimate) and its JSONL download.

import { api, download } from "./api.js";
import {
  card, empty, failed, fmt, h, jsonBlock, kv, link, pill, stat, table, toast,
} from "./dom.js";

function counts(dataset) {
  return dataset.counts || {};
}

function list(root) {
  const holder = h("div", {}, empty("Loading…"));
  root.append(card("Datasets",
    h("span", { class: "muted small" }, "Build one from the captures page: filter, then “New dataset from filter”."),
    holder));
  api("/admin/datasets").then((found) => {
    holder.replaceChildren(table([
      { label: "Name", cell: (d) => link(["datasets", d.id], d.name) },
      { label: "Version", cell: (d) => `v${d.version}`, class: "num" },
      { label: "Created", cell: (d) => fmt.time(d.created_at), class: "nowrap" },
      { label: "Examples", cell: (d) => fmt.num(counts(d).total), class: "num" },
      { label: "Train", cell: (d) => fmt.num(counts(d).train), class: "num" },
      { label: "Validation", cell: (d) => fmt.num(counts(d).validation), class: "num" },
      { label: "Test", cell: (d) => fmt.num(counts(d).test), class: "num" },
      { label: "Duplicates dropped", cell: (d) => fmt.num(counts(d).duplicates_dropped), class: "num" },
      { label: "Created by", cell: (d) => (d.lineage || {}).created_by ?? "—" },
    ], found.data, {
      onRow: (d) => { window.location.hash = `#/datasets/${encodeURIComponent(d.id)}`; },
      emptyText: "No datasets yet.",
    }));
  }).catch((error) => {
    failed(error);
    holder.replaceChildren(empty(error.message));
  });
}

function distributionRow(label, value) {
  return value
    ? { label, ...value }
    : { label, count: null, min: null, mean: null, p50: null, p95: null, max: null, total: null };
}

function issuesTable(issues, emptyText) {
  return table([
    { label: "Line", cell: (i) => (i.line ?? "—"), class: "num" },
    { label: "Code", cell: (i) => h("span", { class: "mono" }, i.code) },
    { label: "Message", cell: (i) => i.message },
  ], issues, { emptyText });
}

/** Counts by code first; the issues themselves folded away when there are many. */
function issues(title, list, counts, emptyText) {
  const summary = Object.entries(counts || {}).sort((a, b) => b[1] - a[1]);
  const body = list.length > 6
    ? h("details", {}, h("summary", {}, `Show all ${list.length}`), issuesTable(list, emptyText))
    : issuesTable(list, emptyText);
  return h("div", {},
    h("h3", {}, `${title} (${list.length})`),
    summary.length > 0 && h("div", { class: "row issue-counts" },
      summary.map(([code, n]) => h("span", { class: "chip chip-meta" }, `${code} × ${n}`))),
    body);
}

function reportView(report) {
  const cost = report.cost || {};
  const rows = [
    distributionRow("Tokens per example", report.tokens_per_example),
    distributionRow("Assistant tokens per example", report.assistant_tokens_per_example),
    distributionRow("Messages per example", report.messages_per_example),
  ];
  return h("div", { class: "stack", id: "validation-report", "data-passed": String(report.passed) },
    h("div", { class: "row" },
      pill(report.passed ? "passed" : "failed"),
      h("span", {}, report.passed
        ? "Ready to upload: no blocking error."
        : `${report.errors.length} blocking error${report.errors.length === 1 ? "" : "s"}: an upload would be refused.`),
      h("span", { class: "muted small" }, `${report.format} · ${report.base_model} · ${report.encoding} · limit ${fmt.num(report.token_limit)} tokens per example`)),
    h("div", { class: "stats" },
      stat("Examples", fmt.num(report.examples)),
      stat("Total tokens", fmt.num(report.total_tokens)),
      stat("Billed tokens", fmt.num(cost.billed_tokens), `${fmt.num(cost.billed_tokens_per_epoch)} × ${cost.epochs} epochs (${cost.epochs_source})`),
      stat("Estimated cost", cost.estimated_usd === null || cost.estimated_usd === undefined ? "unpriced" : fmt.usd(cost.estimated_usd),
        cost.usd_per_million_tokens ? `${fmt.usd(cost.usd_per_million_tokens)} per 1M tokens` : "no price for this base model"),
      stat("File size", `${fmt.num(report.bytes / 1024, 1)} KiB`, `${fmt.num(report.lines)} lines`),
      stat("Over token limit", fmt.num(report.over_token_limit.length), "examples truncated", report.over_token_limit.length ? "bad" : null)),
    table([
      { label: "", hidden: "Measure", cell: (r) => r.label },
      { label: "Min", cell: (r) => fmt.num(r.min), class: "num" },
      { label: "Mean", cell: (r) => fmt.num(r.mean, 1), class: "num" },
      { label: "p50", cell: (r) => fmt.num(r.p50, 1), class: "num" },
      { label: "p95", cell: (r) => fmt.num(r.p95, 1), class: "num" },
      { label: "Max", cell: (r) => fmt.num(r.max), class: "num" },
      { label: "Total", cell: (r) => fmt.num(r.total), class: "num" },
    ], rows),
    h("div", { class: "grid-2" },
      issues("Errors", report.errors, report.error_counts, "No errors."),
      issues("Warnings", report.warnings, report.warning_counts, "No warnings.")),
    report.issues_left_off > 0 && h("p", { class: "muted" }, `${report.issues_left_off} more issues left off.`));
}

function detail(root, route, id) {
  const head = h("div", {}, empty("Loading…"));
  const validation = h("div", {}, empty("Validating…"));
  const splitSelect = h("select", { id: "validation-split" },
    ["train", "validation", "test", "all"].map((s) => h("option", { value: s }, s)));
  const baseModel = h("input", { id: "validation-base-model", type: "text", placeholder: "base model (gpt-4o-mini)", autocomplete: "off" });
  const exportSplit = h("select", { id: "export-split" }, ["all", "train", "validation", "test"].map((s) => h("option", { value: s }, s)));
  const exportFormat = h("select", { id: "export-format" }, [["sft", "chat fine-tuning (SFT)"], ["dpo", "preference pairs (DPO)"]].map(([v, l]) => h("option", { value: v }, l)));

  async function validate() {
    validation.replaceChildren(empty("Validating…"));
    try {
      const report = await api(`/admin/datasets/${encodeURIComponent(id)}/validation`, {
        query: { split: splitSelect.value, base_model: baseModel.value.trim() || undefined },
      });
      validation.replaceChildren(reportView(report));
    } catch (error) {
      failed(error);
      validation.replaceChildren(empty(error.message));
    }
  }

  async function save() {
    try {
      const saved = await download(`/admin/datasets/${encodeURIComponent(id)}/export`,
        { split: exportSplit.value, format: exportFormat.value }, `${id}.jsonl`);
      toast(`Downloaded ${saved.name} (${fmt.num(saved.bytes)} bytes)`, "ok");
    } catch (error) {
      failed(error);
    }
  }

  root.append(h("div", { class: "stack" },
    h("div", {}, link(["datasets"], "← Datasets")),
    head,
    card("Download JSONL", null, h("div", { class: "row" },
      h("label", { for: "export-split" }, "Split"), exportSplit,
      h("label", { for: "export-format" }, "Format"), exportFormat,
      h("button", { type: "button", class: "btn btn-primary", id: "download", onclick: save }, "Download"),
      h("span", { class: "muted small" }, "Redacted as the server's export redaction says."))),
    card("Validation", h("div", { class: "row" },
      h("label", { for: "validation-split" }, "Split"), splitSelect, baseModel,
      h("button", { type: "button", class: "btn", id: "validate", onclick: validate }, "Validate")),
    validation)));

  api(`/admin/datasets/${encodeURIComponent(id)}`).then((dataset) => {
    const c = counts(dataset);
    route.title(`Dataset ${dataset.name} v${dataset.version}`);
    const skipped = Object.entries(c.skipped || {}).map(([why, n]) => `${why}: ${n}`).join(", ");
    head.replaceChildren(h("div", { class: "stack" },
      h("div", { class: "stats", id: "dataset-counts" },
        stat("Examples", fmt.num(c.total)),
        stat("Train", fmt.num(c.train)),
        stat("Validation", fmt.num(c.validation)),
        stat("Test", fmt.num(c.test)),
        stat("Selected", fmt.num(c.selected), "captures the filter chose"),
        stat("Duplicates dropped", fmt.num(c.duplicates_dropped)),
        stat("Preference pairs", fmt.num(c.preference_pairs))),
      h("div", { class: "grid-2" },
        card("Dataset", null, kv([
          ["Id", h("span", { class: "mono" }, dataset.id)],
          ["Name", `${dataset.name} v${dataset.version}`],
          ["Created", fmt.time(dataset.created_at)],
          ["Split", Object.entries(dataset.split).map(([k, v]) => `${k} ${fmt.pct(v, 0)}`).join(" · ")],
          ["Skipped", skipped || "none"],
          ["Untaught turns", fmt.num(c.untaught_turns)],
          ["Built by", (dataset.lineage || {}).created_by ?? "—"],
        ])),
        card("Filter", null, jsonBlock(dataset.filter)))));
  }).catch((error) => {
    failed(error);
    head.replaceChildren(empty(error.message));
  });
  validate();
}

export function render(root, route) {
  route.title("Datasets");
  const id = route.parts[1];
  if (id) detail(root, route, id);
  else list(root);
}
