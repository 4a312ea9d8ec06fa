// Overview: traffic, capture rate, review backlog and cost per alias (teacher against student,
// and the saving), as charts.

import { api } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import {
  card, empty, failed, fmt, h, link, stat, table,
} from "./dom.js";

const WINDOWS = [["24", "24 hours"], ["168", "7 days"], ["720", "30 days"]];

function timeAxis(bucketSeconds) {
  return (ms) => {
    const when = new Date(ms);
    return bucketSeconds >= 86_400
      ? when.toLocaleDateString(undefined, { month: "short", day: "numeric" })
      : when.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  };
}

function cards(totals, traffic) {
  const requests = totals.requests || 0;
  const captured = traffic.reduce((sum, b) => sum + (b.captured || 0), 0);
  return h("div", { class: "stats", id: "overview-totals" },
    stat("Requests", fmt.num(requests)),
    stat("Errors", fmt.num(totals.errors), requests ? `${fmt.pct(totals.errors / requests)} of requests` : null, totals.errors ? "bad" : null),
    stat("Capture rate", requests ? fmt.pct(Math.min(captured / requests, 1)) : "—", `${fmt.num(captured)} captured`),
    stat("Approved", fmt.num(totals.approved), null, "good"),
    stat("Pending review", fmt.num(totals.pending)),
    stat("Rejected", fmt.num(totals.rejected)),
    stat("Cost", fmt.usd(totals.cost_usd)),
    stat("Saving", fmt.usd(totals.saving_usd), "against teacher-only", totals.saving_usd > 0 ? "good" : null));
}

function trafficChart(data) {
  const at = (b) => new Date(b.start).getTime();
  return lineChart({
    series: [
      { name: "requests", points: data.traffic.map((b) => [at(b), b.requests]) },
      { name: "captured", points: data.traffic.map((b) => [at(b), b.captured]) },
      { name: "approved", points: data.traffic.map((b) => [at(b), b.approved]) },
      { name: "errors", points: data.traffic.map((b) => [at(b), b.errors]), cls: "s4" },
    ],
    xFormat: timeAxis(data.bucket_seconds),
    yFormat: (v) => fmt.num(v),
  });
}

function captureRateChart(data) {
  const at = (b) => new Date(b.start).getTime();
  return lineChart({
    series: [{
      name: "capture rate",
      points: data.traffic.filter((b) => b.requests > 0).map((b) => [at(b), Math.min(b.captured / b.requests, 1)]),
    }],
    xFormat: timeAxis(data.bucket_seconds),
    yFormat: (v) => fmt.pct(v, 0),
    height: 180,
  });
}

function costChart(aliases) {
  return barChart({
    groups: aliases.map((a) => ({
      label: a.alias,
      bars: [
        { name: "teacher cost", value: a.teacher?.cost_usd || 0, cls: "s5" },
        { name: "student cost", value: a.student?.cost_usd || 0, cls: "s2" },
        { name: "teacher-only cost", value: a.teacher_only_cost_usd || 0, cls: "s3" },
      ],
    })),
    yFormat: (v) => fmt.usd(v),
  });
}

function aliasTable(aliases) {
  return table([
    { label: "Alias", cell: (a) => link(["aliases", a.alias], a.alias) },
    { label: "Requests", cell: (a) => fmt.num(a.requests), class: "num" },
    { label: "Teacher", cell: (a) => fmt.num(a.teacher?.requests), class: "num" },
    { label: "Student", cell: (a) => fmt.num(a.student?.requests), class: "num" },
    { label: "Shadow", cell: (a) => fmt.num(a.shadow?.requests), class: "num" },
    { label: "Student share", cell: (a) => fmt.pct(a.student_share), class: "num" },
    { label: "Cost", cell: (a) => fmt.usd(a.cost_usd), class: "num" },
    { label: "Teacher-only cost", cell: (a) => fmt.usd(a.teacher_only_cost_usd), class: "num" },
    { label: "Saving", cell: (a) => fmt.usd(a.saving_usd), class: "num" },
  ], aliases, { emptyText: "No alias served traffic in this window." });
}

function modelTable(models) {
  return table([
    { label: "Model", cell: (m) => h("span", { class: "mono" }, m.model) },
    { label: "Requests", cell: (m) => fmt.num(m.requests), class: "num" },
    { label: "Prompt tokens", cell: (m) => fmt.num(m.prompt_tokens), class: "num" },
    { label: "Completion tokens", cell: (m) => fmt.num(m.completion_tokens), class: "num" },
    { label: "Cost", cell: (m) => (m.priced ? fmt.usd(m.cost_usd) : "unpriced"), class: "num" },
  ], models, { emptyText: "No traffic in this window." });
}

export function render(root, route) {
  route.title("Overview");
  const hours = route.params.get("hours") || "24";
  const picker = h("select", { id: "overview-window", onchange: (event) => { window.location.hash = `#/overview?hours=${event.target.value}`; } },
    WINDOWS.map(([value, label]) => h("option", { value, selected: value === hours }, label)));
  const body = h("div", {}, empty("Loading…"));
  root.append(h("div", { class: "stack" },
    h("div", { class: "row" }, h("label", { for: "overview-window" }, "Window"), picker, h("span", { class: "spacer" }),
      link(["captures"], "Review captures ›")),
    body));
  api("/admin/overview", { query: { hours } }).then((data) => {
    body.replaceChildren(h("div", { class: "stack" },
      cards(data.totals || {}, data.traffic || []),
      card("Traffic", h("span", { class: "muted small" }, `${fmt.time(data.since)} – ${fmt.time(data.until)}, shadow requests excluded`),
        h("div", { id: "traffic-chart" }, trafficChart(data))),
      h("div", { class: "grid-2" },
        card("Capture rate", null, captureRateChart(data)),
        card("Cost per alias", h("span", { class: "muted small" }, "teacher and student against teacher-only"),
          h("div", { id: "cost-chart" }, costChart(data.aliases || [])))),
      card("Aliases", null, aliasTable(data.aliases || [])),
      card("Models", null, modelTable(data.models || []))));
  }).catch((error) => {
    failed(error);
    body.replaceChildren(h("div", { class: "banner banner-error" }, `The overview is not available: ${error.message}`));
  });
}
