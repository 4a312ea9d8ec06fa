// Training jobs and distillation cycles: status, events, steps, and the loss curve from the
// checkpoints' metrics.

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import {
  card, confirmDialog, empty, failed, fmt, formDialog, h, jsonBlock, kv, link, pill, table, toast,
} from "./dom.js";

const ENDED_CYCLE = new Set(["done", "failed", "cancelled"]);
const ENDED_JOB = new Set(["succeeded", "failed", "cancelled"]);
const LOSS_SERIES = [
  ["train_loss", "train loss"],
  ["valid_loss", "validation loss"],
  ["full_valid_loss", "full validation loss"],
];

function cyclesTable(cycles) {
  return table([
    { label: "Cycle", cell: (c) => link(["cycles", c.id], fmt.short(c.id)) },
    { label: "Alias", cell: (c) => c.alias },
    { label: "State", cell: (c) => pill(c.state) },
    { label: "Trigger", cell: (c) => c.trigger },
    { label: "Started", cell: (c) => fmt.time(c.created_at), class: "nowrap" },
    { label: "Finished", cell: (c) => fmt.time(c.finished_at), class: "nowrap" },
    { label: "Gate", cell: (c) => (c.gate ? pill(c.gate.passed ? "passed" : "failed") : "—") },
    { label: "Reason", cell: (c) => c.reason ?? "", class: "ellipsis" },
  ], cycles, { onRow: (c) => { window.location.hash = `#/cycles/${encodeURIComponent(c.id)}`; }, emptyText: "No cycles yet." });
}

function jobsTable(jobs) {
  return table([
    { label: "Job", cell: (j) => link(["jobs", j.id], fmt.short(j.id)) },
    { label: "State", cell: (j) => pill(j.state) },
    { label: "Base model", cell: (j) => j.spec.base_model ?? "—", class: "nowrap" },
    { label: "Method", cell: (j) => j.spec.method ?? "supervised" },
    { label: "Dataset", cell: (j) => link(["datasets", j.dataset_id], fmt.short(j.dataset_id)) },
    { label: "Fine-tuned model", cell: (j) => h("span", { class: "mono" }, j.fine_tuned_model ?? "—") },
    { label: "Trained tokens", cell: (j) => fmt.num(j.trained_tokens), class: "num" },
    { label: "Updated", cell: (j) => fmt.time(j.updated_at), class: "nowrap" },
  ], jobs, { onRow: (j) => { window.location.hash = `#/jobs/${encodeURIComponent(j.id)}`; }, emptyText: "No training jobs yet." });
}

async function startCycle() {
  let aliases = [];
  try {
    aliases = await api("/admin/aliases");
  } catch (error) {
    failed(error);
    return;
  }
  if (!aliases.length) {
    toast("Create an alias first: a cycle distils one alias's traffic.", "error");
    return;
  }
  const values = await formDialog({
    id: "cycle-dialog",
    title: "Start a cycle",
    message: "Export, train, evaluate and, if the gate passes, promote — for one alias.",
    fields: [{ name: "alias", label: "Alias", type: "select", value: aliases[0].name, options: aliases.map((a) => [a.name, a.name]) }],
    confirm: "Start",
  });
  if (!values) return;
  try {
    const cycle = await api("/admin/cycles", { method: "POST", body: { alias: values.alias } });
    window.location.hash = `#/cycles/${encodeURIComponent(cycle.id)}`;
  } catch (error) {
    failed(error);
  }
}

function list(root) {
  const cycles = h("div", {}, empty("Loading…"));
  const jobs = h("div", {}, empty("Loading…"));
  root.append(h("div", { class: "stack" },
    card("Cycles", h("button", { type: "button", class: "btn btn-small", onclick: startCycle }, "Start cycle…"), cycles),
    card("Training jobs", null, jobs)));
  api("/admin/cycles", { query: { limit: 50 } })
    .then((found) => cycles.replaceChildren(cyclesTable(found.data)))
    .catch((error) => cycles.replaceChildren(empty(`Cycles are not available: ${error.message}`)));
  api("/admin/jobs", { query: { limit: 100 } })
    .then((found) => jobs.replaceChildren(jobsTable(found.data)))
    .catch((error) => {
      failed(error);
      jobs.replaceChildren(empty(error.message));
    });
}

/** Loss by step: from the checkpoints, or from the metric events when checkpoints are few. */
function lossSeries(job) {
  const fromCheckpoints = job.checkpoints.map((c) => ({ step: c.step, ...c.metrics }));
  const fromEvents = job.events.filter((e) => e.type === "metrics" && e.data && e.data.step !== undefined).map((e) => e.data);
  const rows = fromCheckpoints.length >= 2 || fromEvents.length < 2 ? fromCheckpoints : fromEvents;
  return LOSS_SERIES.map(([key, name]) => ({
    name,
    points: rows.filter((r) => typeof r[key] === "number").map((r) => [Number(r.step), r[key]]),
  })).filter((s) => s.points.length);
}

function jobDetail(root, route, id) {
  const holder = h("div", {}, empty("Loading…"));
  root.append(h("div", { class: "stack" }, h("div", {}, link(["jobs"], "← Jobs & cycles")), holder));
  let timer = null;
  const load = () => api(`/admin/jobs/${encodeURIComponent(id)}`).then((job) => {
    route.title(`Training job ${fmt.short(job.id)}`);
    timer = ENDED_JOB.has(job.state) ? null : setTimeout(load, 5000);
    const series = lossSeries(job);
    holder.replaceChildren(h("div", { class: "stack" },
      h("div", { class: "grid-2" },
        card("Job", pill(job.state), kv([
          ["Id", h("span", { class: "mono" }, job.id)],
          ["Backend", `${job.backend}${job.backend_job_id ? " · " + job.backend_job_id : ""}`],
          ["Dataset", link(["datasets", job.dataset_id], job.dataset_id)],
          ["Cycle", job.cycle_id ? link(["cycles", job.cycle_id], job.cycle_id) : "—"],
          ["Base model", job.spec.base_model ?? "—"],
          ["Fine-tuned model", h("span", { class: "mono" }, job.fine_tuned_model ?? "—")],
          ["Trained tokens", fmt.num(job.trained_tokens)],
          ["Created", fmt.time(job.created_at)],
          ["Updated", fmt.time(job.updated_at)],
        ]), job.error && h("div", { class: "banner banner-error" }, job.error.message ?? JSON.stringify(job.error))),
        card("Specification", null, jsonBlock(job.spec))),
      card("Loss", h("span", { class: "muted small" }, `${job.checkpoints.length} checkpoints`),
        h("div", { id: "loss-chart" }, lineChart({ series, xFormat: (x) => `step ${Math.round(x)}`, yFormat: (y) => y.toFixed(2) }))),
      card("Checkpoints", null, table([
        { label: "Step", cell: (c) => fmt.num(c.step), class: "num" },
        { label: "Model", cell: (c) => h("span", { class: "mono" }, c.model) },
        { label: "Metrics", cell: (c) => Object.entries(c.metrics).filter(([k]) => k !== "step").map(([k, v]) => `${k} ${typeof v === "number" ? v.toFixed(4) : v}`).join(" · ") },
        { label: "Created", cell: (c) => fmt.time(c.created_at), class: "nowrap" },
      ], job.checkpoints, { emptyText: "No checkpoints yet." })),
      card("Events", null, h("div", { id: "job-events" }, table([
        { label: "Time", cell: (e) => fmt.time(e.created_at), class: "nowrap" },
        { label: "Level", cell: (e) => pill(e.level === "error" ? "error" : e.level === "warn" ? "warning" : e.level) },
        { label: "Message", cell: (e) => e.message },
      ], [...job.events].reverse(), { emptyText: "No events yet." })))));
  }).catch((error) => {
    failed(error);
    holder.replaceChildren(empty(error.message));
  });
  load();
  return () => clearTimeout(timer);
}

const PIPELINE = ["collecting", "exporting", "training", "evaluating", "promoting"];

/** Every step of the pipeline: those recorded with their state, the rest still to come. */
function stepsView(cycle) {
  const recorded = new Map((cycle.steps || []).map((s) => [s.step, s]));
  const names = [...PIPELINE, ...[...recorded.keys()].filter((n) => !PIPELINE.includes(n))];
  return h("div", { class: "steps", id: "cycle-steps" }, names.map((name) => {
    const s = recorded.get(name);
    const state = s ? s.state : ENDED_CYCLE.has(cycle.state) ? "skipped" : "waiting";
    return h("div", { class: `step step-${state}`, "data-step": name },
      h("div", { class: "step-name" }, name),
      pill(state),
      s && h("div", { class: "muted small" }, s.finished_at ? fmt.time(s.finished_at) : s.started_at ? `since ${fmt.time(s.started_at)}` : ""),
      s && s.detail && h("div", { class: "small" }, typeof s.detail === "string" ? s.detail : JSON.stringify(s.detail)));
  }));
}

function cycleDetail(root, route, id) {
  const holder = h("div", {}, empty("Loading…"));
  root.append(h("div", { class: "stack" }, h("div", {}, link(["jobs"], "← Jobs & cycles")), holder));
  const show = (cycle) => {
    route.title(`Cycle ${fmt.short(cycle.id)} · ${cycle.alias}`);
    const cancel = !ENDED_CYCLE.has(cycle.state) && h("button", {
      type: "button", class: "btn btn-small btn-danger", id: "cancel-cycle",
      onclick: async () => {
        const ok = await confirmDialog({ title: "Cancel this cycle?", message: `The ${cycle.alias} cycle stops where it is.`, confirm: "Cancel cycle", danger: true });
        if (!ok) return;
        try {
          show(await api(`/admin/cycles/${encodeURIComponent(cycle.id)}/cancel`, { method: "POST" }));
          toast("Cycle cancelled", "ok");
        } catch (error) {
          failed(error);
        }
      },
    }, "Cancel cycle");
    holder.replaceChildren(h("div", { class: "stack" },
      card("Cycle", h("div", { class: "row" }, pill(cycle.state), cancel), kv([
        ["Id", h("span", { class: "mono" }, cycle.id)],
        ["Alias", link(["aliases", cycle.alias], cycle.alias)],
        ["Trigger", cycle.trigger],
        ["Started", fmt.time(cycle.created_at)],
        ["Updated", fmt.time(cycle.updated_at)],
        ["Finished", fmt.time(cycle.finished_at)],
        ["Reason", cycle.reason ?? "—"],
        ["Dataset", cycle.dataset_id ? link(["datasets", cycle.dataset_id], cycle.dataset_id) : "—"],
        ["Training job", cycle.training_job_id ? link(["jobs", cycle.training_job_id], cycle.training_job_id) : "—"],
        ["Evaluation", cycle.evaluation_id ? link(["evals", cycle.evaluation_id], cycle.evaluation_id) : "—"],
        ["Base evaluation", cycle.base_evaluation_id ? link(["evals", cycle.base_evaluation_id], cycle.base_evaluation_id) : "—"],
      ])),
      card("Steps", null, stepsView(cycle)),
      card("Gate", cycle.gate ? pill(cycle.gate.passed ? "passed" : "failed") : null,
        cycle.gate
          ? h("div", { class: "stack" },
            h("ul", {}, (cycle.gate.reasons || []).map((r) => h("li", {}, r))),
            jsonBlock(cycle.gate.figures || {}))
          : empty("The gate has not decided yet."))));
  };
  let timer = null;
  const load = () => api(`/admin/cycles/${encodeURIComponent(id)}`).then((cycle) => {
    show(cycle);
    // A running cycle moves by itself: follow it until it ends.
    timer = ENDED_CYCLE.has(cycle.state) ? null : setTimeout(load, 3000);
  }).catch((error) => {
    failed(error);
    holder.replaceChildren(empty(error.message));
  });
  load();
  return () => clearTimeout(timer);
}

export function render(root, route) {
  route.title("Jobs & cycles");
  const [kind, id] = route.parts;
  if (kind === "cycles" && id) return cycleDetail(root, route, id);
  if (kind === "jobs" && id) return jobDetail(root, route, id);
  list(root);
  return null;
}
