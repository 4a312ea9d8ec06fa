// Aliases: current weights, versions, history, promotions; promote and roll back, each after
// a confirmation in the page.

import { api } from "./api.js";
import {
  card, confirmDialog, empty, failed, fmt, formDialog, h, kv, link, pill, table, toast,
} from "./dom.js";

function shares(targets) {
  const total = targets.reduce((sum, t) => sum + t.weight, 0) || 1;
  return targets.map((t) => ({ ...t, share: t.weight / total }));
}

function targetsText(targets) {
  return shares(targets).map((t) => `${t.model} ${fmt.pct(t.share, 0)}`).join(" · ");
}

function targetsTable(targets) {
  return table([
    { label: "Role", cell: (t) => pill(t.role) },
    { label: "Model", cell: (t) => h("span", { class: "mono" }, t.model) },
    { label: "Upstream", cell: (t) => t.upstream },
    { label: "Weight", cell: (t) => fmt.num(t.weight, 3), class: "num" },
    { label: "Share", cell: (t) => fmt.pct(t.share), class: "num" },
    { label: "", hidden: "Share bar", cell: (t) => h("div", { class: "bar-share" }, shareBar(t.share)) },
  ], shares(targets));
}

function shareBar(share) {
  const bar = h("span");
  bar.style.width = `${Math.round(share * 100)}%`;
  return bar;
}

function list(root) {
  const holder = h("div", {}, empty("Loading…"));
  root.append(card("Aliases", h("span", { class: "muted small" }, "Model names clients send, routed to weighted targets."), holder));
  api("/admin/aliases").then((found) => {
    holder.replaceChildren(table([
      { label: "Alias", cell: (a) => link(["aliases", a.name], a.name) },
      { label: "Version", cell: (a) => `v${a.version}`, class: "num" },
      { label: "Targets", cell: (a) => targetsText(a.targets) },
      { label: "Shadow", cell: (a) => fmt.pct(a.shadow_rate, 0), class: "num" },
      { label: "Changed by", cell: (a) => a.changed_by },
      { label: "Updated", cell: (a) => fmt.time(a.updated_at), class: "nowrap" },
      { label: "Reason", cell: (a) => a.reason ?? "", class: "ellipsis" },
    ], found, { onRow: (a) => { window.location.hash = `#/aliases/${encodeURIComponent(a.name)}`; }, emptyText: "No aliases yet." }));
  }).catch((error) => {
    failed(error);
    holder.replaceChildren(empty(error.message));
  });
}

async function trainedModels() {
  try {
    const jobs = await api("/admin/jobs", { query: { state: "succeeded", limit: 50 } });
    return [...new Set(jobs.data.map((j) => j.fine_tuned_model).filter(Boolean))];
  } catch {
    return [];
  }
}

function detail(root, route, name) {
  const path = `/admin/aliases/${encodeURIComponent(name)}`;
  const current = h("div", {}, empty("Loading…"));
  const promotions = h("div", {}, empty("Loading…"));
  const versions = h("div", {}, empty("Loading…"));
  const history = h("div", {}, empty("Loading…"));
  const models = h("datalist", { id: "trained-models" });

  async function promote() {
    const values = await formDialog({
      id: "promote-dialog",
      title: `Promote a model on ${name}`,
      message: "The model becomes the alias's student; the teacher stays as the fallback.",
      fields: [
        { name: "model", label: "Model", required: true, placeholder: "ft:gpt-4o-mini:org:suffix:id", list: "trained-models" },
        { name: "upstream", label: "Upstream", value: "default", required: true },
        { name: "canary_percent", label: "Canary percent", type: "number", min: 0, max: 99.9, step: "any", placeholder: "server setting", hint: "blank: the configured canary; 0 goes full at once" },
        { name: "full", label: "Skip the canary: full at once", type: "checkbox", value: false },
        { name: "reason", label: "Reason", placeholder: "why (kept in the history)" },
      ],
      confirm: "Continue",
    });
    if (!values) return;
    const stage = values.full ? "full at once" : values.canary_percent ? `a ${values.canary_percent}% canary first` : "the configured canary first";
    const ok = await confirmDialog({
      id: "confirm-dialog",
      title: "Promote?",
      message: `Route ${name} to ${values.model} (upstream ${values.upstream}), ${stage}. Every replica follows within seconds.`,
      confirm: "Promote",
    });
    if (!ok) return;
    try {
      const promotion = await api(`${path}/promote`, {
        method: "POST",
        body: {
          model: values.model,
          upstream: values.upstream || "default",
          canary_percent: values.canary_percent === "" ? null : Number(values.canary_percent),
          full: values.full,
          reason: values.reason || null,
        },
      });
      toast(`Promoted ${values.model}: ${promotion.stage}`, "ok");
      load();
    } catch (error) {
      failed(error);
    }
  }

  async function rollback(view) {
    const values = await formDialog({
      id: "rollback-dialog",
      title: "Roll back?",
      message: view.previous_version
        ? `${name} goes back from v${view.version} to v${view.previous_version}, at once, on every replica.`
        : `${name} has no previous version to go back to.`,
      fields: [{ name: "reason", label: "Reason", placeholder: "why (kept in the history)" }],
      confirm: "Roll back",
      danger: true,
    });
    if (!values) return;
    try {
      const back = await api(`${path}/rollback`, { method: "POST", body: { reason: values.reason || null } });
      toast(`Rolled back to v${back.version}`, "ok");
      load();
    } catch (error) {
      failed(error);
    }
  }

  async function decide(promotion, verb) {
    const full = verb === "full";
    const ok = await confirmDialog({
      id: "confirm-dialog",
      title: full ? "Go full now?" : "Abort the promotion?",
      message: full
        ? `${promotion.model} takes all of ${name}'s student traffic now, without waiting for the canary.`
        : `${name} goes back to the version before ${promotion.model}.`,
      confirm: full ? "Go full" : "Abort",
      danger: !full,
    });
    if (!ok) return;
    try {
      await api(`/admin/promotions/${encodeURIComponent(promotion.id)}/${verb}`, { method: "POST" });
      toast(full ? "Promotion is full" : "Promotion aborted", "ok");
      load();
    } catch (error) {
      failed(error);
    }
  }

  function load() {
    api(path).then((view) => {
      route.title(`Alias ${view.name}`);
      current.replaceChildren(card(`${view.name} · v${view.version}`,
        h("div", { class: "row" },
          h("button", { type: "button", class: "btn btn-primary btn-small", id: "promote", onclick: promote }, "Promote…"),
          h("button", { type: "button", class: "btn btn-danger btn-small", id: "rollback", disabled: !view.previous_version, onclick: () => rollback(view) }, "Roll back…")),
        h("div", { class: "alias-current" },
          targetsTable(view.targets),
          kv([
            ["Shadow rate", fmt.pct(view.shadow_rate, 0)],
            ["Previous version", view.previous_version ? `v${view.previous_version}` : "—"],
            ["Changed by", view.changed_by],
            ["Updated", fmt.time(view.updated_at)],
            ["Reason", view.reason ?? "—"],
          ]))));
      versionsOf(view);
    }).catch((error) => {
      failed(error);
      current.replaceChildren(empty(error.message));
    });
    api(`${path}/history`).then((events) => history.replaceChildren(table([
      { label: "When", cell: (e) => fmt.time(e.created_at), class: "nowrap" },
      { label: "Action", cell: (e) => pill(e.action) },
      { label: "Versions", cell: (e) => `${e.from_version ? "v" + e.from_version : "—"} → ${e.to_version ? "v" + e.to_version : "—"}` },
      { label: "Actor", cell: (e) => e.actor },
      { label: "Reason", cell: (e) => e.reason ?? "" },
    ], events, { emptyText: "No changes yet." }))).catch(failed);
    api("/admin/promotions", { query: { alias: name, limit: 20 } }).then((found) => promotions.replaceChildren(table([
      { label: "Started", cell: (p) => fmt.time(p.started_at), class: "nowrap" },
      { label: "Model", cell: (p) => h("span", { class: "mono" }, p.model) },
      { label: "Stage", cell: (p) => pill(p.stage) },
      { label: "Canary", cell: (p) => (p.canary_percent === null || p.canary_percent === undefined ? "—" : `${p.canary_percent}%`), class: "num" },
      { label: "Student errors", cell: (p) => fmt.pct(p.signals?.student?.error_rate), class: "num" },
      { label: "Negative", cell: (p) => fmt.pct(p.signals?.student?.negative_rate), class: "num" },
      { label: "Actor", cell: (p) => p.actor },
      { label: "Reason / outcome", cell: (p) => [p.reason, p.outcome].filter(Boolean).join(" — "), class: "ellipsis" },
      { label: "", hidden: "Decide", cell: (p) => (p.stage === "canary"
        ? h("div", { class: "row" },
          h("button", { type: "button", class: "btn btn-small", onclick: () => decide(p, "full") }, "Go full"),
          h("button", { type: "button", class: "btn btn-small btn-reject", onclick: () => decide(p, "abort") }, "Abort"))
        : "") },
    ], found.data, { emptyText: "No promotions yet." })))
      .catch((error) => promotions.replaceChildren(empty(`Promotions are not available: ${error.message}`)));
  }

  function versionsOf(view) {
    api(`${path}/versions`).then((found) => versions.replaceChildren(table([
      { label: "Version", cell: (v) => h("span", {}, `v${v.version} `, v.version === view.version ? pill("current") : null) },
      { label: "Targets", cell: (v) => targetsText(v.targets) },
      { label: "Shadow", cell: (v) => fmt.pct(v.shadow_rate, 0), class: "num" },
      { label: "Written by", cell: (v) => v.created_by },
      { label: "When", cell: (v) => fmt.time(v.created_at), class: "nowrap" },
      { label: "Reason", cell: (v) => v.reason ?? "" },
    ], [...found].reverse()))).catch(failed);
  }

  root.append(models, h("div", { class: "stack" },
    h("div", {}, link(["aliases"], "← Aliases")),
    current,
    card("Promotions", null, promotions),
    card("History", null, h("div", { id: "alias-history" }, history)),
    card("Versions", null, versions)));
  trainedModels().then((found) => models.replaceChildren(...found.map((m) => h("option", { value: m }))));
  load();
}

export function render(root, route) {
  route.title("Aliases");
  const name = route.parts[1];
  if (name) detail(root, route, name);
  else list(root);
}
