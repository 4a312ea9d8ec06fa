// Evaluations: scores, the comparison with the base model, and teacher and student answers
// side by side, worst first.

import { api } from "./api.js";
import { barChart } from "./charts.js";
import { messageView } from "./conversation.js";
import {
  card, empty, failed, fmt, h, kv, link, pill, stat, table,
} from "./dom.js";

const PAGE = 20;

function summaryOf(evaluation) {
  return evaluation.summary || {};
}

function list(root) {
  const holder = h("div", {}, empty("Loading…"));
  root.append(card("Evaluations", h("span", { class: "muted small" }, "Start one with POST /admin/evals or `stillroom evals run`."), holder));
  api("/admin/evals").then((found) => {
    holder.replaceChildren(table([
      { label: "Evaluation", cell: (e) => link(["evals", e.id], fmt.short(e.id)) },
      { label: "Model", cell: (e) => h("span", { class: "mono" }, e.model) },
      { label: "Role", cell: (e) => pill(e.role) },
      { label: "State", cell: (e) => pill(e.state) },
      { label: "Dataset", cell: (e) => link(["datasets", e.dataset_id], fmt.short(e.dataset_id)) },
      { label: "Examples", cell: (e) => fmt.num(summaryOf(e).examples), class: "num" },
      { label: "Rubric mean", cell: (e) => fmt.num(summaryOf(e).rubric?.mean, 2), class: "num" },
      { label: "Win rate", cell: (e) => fmt.pct(summaryOf(e).pairwise?.win_rate), class: "num" },
      { label: "Errors", cell: (e) => fmt.num(summaryOf(e).errors), class: "num" },
      { label: "Created", cell: (e) => fmt.time(e.created_at), class: "nowrap" },
    ], found.data, {
      onRow: (e) => { window.location.hash = `#/evals/${encodeURIComponent(e.id)}`; },
      emptyText: "No evaluations yet.",
    }));
  }).catch((error) => {
    failed(error);
    holder.replaceChildren(empty(error.message));
  });
}

function scoreStats(summary) {
  const rubric = summary.rubric || {};
  const pairwise = summary.pairwise || {};
  return h("div", { class: "stats", id: "eval-scores" },
    stat("Examples", fmt.num(summary.examples)),
    stat("Rubric mean", fmt.num(rubric.mean, 2), `${fmt.num(rubric.scored)} scored, 1–5`),
    stat("Win rate", fmt.pct(pairwise.win_rate), `${fmt.num(pairwise.wins)} wins · ${fmt.num(pairwise.ties)} ties · ${fmt.num(pairwise.losses)} losses`),
    stat("Similarity", fmt.num(summary.similarity_mean, 3)),
    stat("Errors", fmt.num(summary.errors), `${fmt.num(summary.judge_errors)} judge errors`, summary.errors ? "bad" : null),
    latencyStat(summary.latency_ms),
    stat("Tokens", fmt.num((summary.prompt_tokens || 0) + (summary.completion_tokens || 0)), `${fmt.num(summary.prompt_tokens)} in · ${fmt.num(summary.completion_tokens)} out`));
}

function latencyStat(latency) {
  // A number in older summaries; mean, p50 and p95 now.
  if (latency && typeof latency === "object") {
    return stat("Latency p50", fmt.ms(latency.p50), `mean ${fmt.ms(latency.mean)} · p95 ${fmt.ms(latency.p95)}`);
  }
  return stat("Latency", fmt.ms(latency));
}

function histogram(summary) {
  const counts = (summary.rubric || {}).histogram || {};
  return barChart({
    groups: [1, 2, 3, 4, 5].map((score) => ({ label: `${score}`, bars: [{ name: "answers with this rubric score", value: counts[score] ?? counts[String(score)] ?? 0 }] })),
    height: 180,
    yFormat: (v) => fmt.num(v),
  });
}

function checksTable(summary) {
  const rows = Object.entries(summary.checks || {}).map(([name, c]) => ({ name, ...c }));
  return table([
    { label: "Check", cell: (c) => h("span", { class: "mono" }, c.name) },
    { label: "Passed", cell: (c) => `${fmt.num(c.passed)} of ${fmt.num(c.applied)}`, class: "num" },
    { label: "Rate", cell: (c) => fmt.pct(c.rate), class: "num" },
  ], rows, { emptyText: "No deterministic check applied." });
}

function comparisonTable(comparison) {
  const rows = Object.entries(comparison || {}).map(([figure, v]) => ({ figure, ...(v || {}) }));
  const value = (x) => (typeof x === "number" ? fmt.num(x, 3) : x ?? "—");
  return table([
    { label: "Figure", cell: (r) => r.figure },
    { label: "Candidate", cell: (r) => value(r.candidate), class: "num" },
    { label: "Base", cell: (r) => value(r.base), class: "num" },
    { label: "Delta", cell: (r) => (typeof r.delta === "number" ? (r.delta > 0 ? "+" : "") + fmt.num(r.delta, 3) : "—"), class: "num" },
  ], rows);
}

function resultView(result, model, rank) {
  const outcome = result.pairwise_outcome;
  const score = result.rubric_score;
  const failedAnswer = result.error
    ? h("div", { class: "msg msg-error" }, h("div", { class: "msg-role" }, "Candidate failed"), h("div", { class: "msg-body" }, result.error))
    : null;
  return h("div", { class: "result", "data-position": result.position },
    h("div", { class: "result-head" },
      h("strong", {}, `${rank}.`),
      h("span", { class: "muted small" }, `example ${result.position}`),
      score !== null ? pill(`score ${score}`, score <= 2 ? "pill-loss" : score >= 4 ? "pill-win" : "pill-tie") : pill("unscored"),
      outcome && pill(outcome),
      Object.entries(result.checks || {}).map(([name, c]) => pill(`${name} ${c && c.passed === false ? "failed" : "ok"}`, c && c.passed === false ? "pill-loss" : "")),
      h("span", { class: "spacer" }),
      fmt.ms(result.latency_ms),
      link(["captures", result.capture_id], "prompt ›")),
    h("div", { class: "compare" },
      messageView(result.teacher_answer, { title: "Teacher" }),
      failedAnswer || (result.candidate_answer
        ? messageView(result.candidate_answer, { title: "Student", note: model })
        : h("div", { class: "msg muted" }, "No answer"))),
    result.rubric_reason && h("div", { class: "reason" }, h("strong", {}, "Judge: "), result.rubric_reason),
    result.pairwise_reason && h("div", { class: "reason" }, h("strong", {}, "Pairwise: "), result.pairwise_reason),
    result.judge_error && h("div", { class: "reason" }, h("strong", {}, "Judge error: "), result.judge_error));
}

function detail(root, route, id) {
  const head = h("div", {}, empty("Loading…"));
  const results = h("div", { id: "eval-results" });
  const pager = h("div", { class: "row" });
  let offset = 0;
  let model = "";

  async function page() {
    try {
      const found = await api(`/admin/evals/${encodeURIComponent(id)}/results`, { query: { limit: PAGE, offset } });
      results.replaceChildren(...(found.data.length ? found.data.map((r, i) => resultView(r, model, offset + i + 1)) : [empty("No results yet.")]));
      pager.replaceChildren(
        h("span", { class: "muted" }, found.total ? `${offset + 1}–${Math.min(offset + PAGE, found.total)} of ${found.total}, worst first` : ""),
        h("span", { class: "spacer" }),
        h("button", { type: "button", class: "btn btn-small", disabled: offset === 0, onclick: () => { offset -= PAGE; page(); } }, "← Worse"),
        h("button", { type: "button", class: "btn btn-small", disabled: offset + PAGE >= found.total, onclick: () => { offset += PAGE; page(); } }, "Better →"));
    } catch (error) {
      failed(error);
    }
  }

  root.append(h("div", { class: "stack" },
    h("div", {}, link(["evals"], "← Evaluations")),
    head,
    card("Answers, worst first", pager, results)));

  api(`/admin/evals/${encodeURIComponent(id)}`, { query: { worst: 0 } }).then((evaluation) => {
    model = evaluation.model;
    route.title(`Evaluation · ${evaluation.model}`);
    const summary = summaryOf(evaluation);
    head.replaceChildren(h("div", { class: "stack" },
      h("div", { class: "row" }, pill(evaluation.state), h("span", { class: "mono" }, evaluation.model),
        h("span", { class: "muted" }, `${evaluation.role} · judged by ${evaluation.judge_model}`),
        evaluation.error && h("span", { class: "pill pill-failed" }, evaluation.error)),
      scoreStats(summary),
      h("div", { class: "grid-2" },
        card("Rubric scores", null, histogram(summary)),
        card("Details", null, kv([
          ["Id", h("span", { class: "mono" }, evaluation.id)],
          ["Dataset", link(["datasets", evaluation.dataset_id], evaluation.dataset_id)],
          ["Base evaluation", evaluation.base_evaluation_id ? link(["evals", evaluation.base_evaluation_id], evaluation.base_evaluation_id) : "—"],
          ["Started", fmt.time(evaluation.started_at)],
          ["Finished", fmt.time(evaluation.finished_at)],
        ]), h("h3", {}, "Checks"), checksTable(summary))),
      evaluation.comparison && card("Against the base model", null, comparisonTable(evaluation.comparison))));
    page();
  }).catch((error) => {
    failed(error);
    head.replaceChildren(empty(error.message));
  });
}

export function render(root, route) {
  route.title("Evaluations");
  const id = route.parts[1];
  if (id) detail(root, route, id);
  else list(root);
}
