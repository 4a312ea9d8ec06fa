// The captures filter: the form above the table, and its two forms of the same thing — the
// page's URL parameters and the admin API's CaptureFilter.

import { h } from "./dom.js";

const LIST_PARAMS = { status: "status", alias: "alias", model: "model", tag: "tags", feedback: "feedback", finish_reason: "finish_reason" };
const BOOL_PARAMS = ["has_tool_calls", "error", "stream", "edited"];

/** The capture filter (admin API CaptureFilter) that the page's URL parameters describe. */
export function filterFromParams(params) {
  const filter = {};
  for (const [param, field] of Object.entries(LIST_PARAMS)) {
    const values = params.getAll(param).flatMap((v) => v.split(",")).map((v) => v.trim()).filter(Boolean);
    if (values.length) filter[field] = values;
  }
  const search = (params.get("search") || "").trim();
  if (search) filter.search = search;
  for (const name of BOOL_PARAMS) {
    const value = params.get(name);
    if (value === "true" || value === "false") filter[name] = value === "true";
  }
  return filter;
}

export function describeFilter(filter) {
  const parts = Object.entries(filter).map(([key, value]) =>
    `${key} ${Array.isArray(value) ? value.join(", ") : typeof value === "string" ? `"${value}"` : value}`);
  return parts.length ? parts.join(" · ") : "every capture";
}

export function filterBar(params) {
  const text = (name, label, placeholder, type = "text") => h("div", { class: "field" },
    h("label", { for: `f-${name}` }, label),
    h("input", { id: `f-${name}`, name, type, value: params.get(name) || "", placeholder, autocomplete: "off" }));
  const select = (name, label, options) => h("div", { class: "field" },
    h("label", { for: `f-${name}` }, label),
    h("select", { id: `f-${name}`, name },
      options.map(([value, shown]) => h("option", { value, selected: (params.get(name) || "") === value }, shown))));
  const yesNo = [["", "any"], ["true", "yes"], ["false", "no"]];
  const form = h("form", { class: "filters", id: "capture-filters", role: "search" },
    text("search", "Search", "text in messages or answer", "search"),
    select("status", "Review", [["", "any"], ["pending", "pending"], ["approved", "approved"], ["rejected", "rejected"]]),
    text("alias", "Alias", "e.g. support-bot"),
    text("model", "Model", "requested or served"),
    text("tag", "Tag", "curation tag"),
    select("feedback", "Feedback", [["", "any"], ["positive", "positive"], ["negative", "negative"], ["neutral", "neutral"], ["none", "none"]]),
    select("has_tool_calls", "Tool calls", yesNo),
    select("error", "Failed", yesNo),
    select("edited", "Edited", yesNo),
    h("button", { type: "submit", class: "btn btn-primary" }, "Apply"),
    h("a", { class: "btn btn-ghost", href: "#/captures" }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [name, value] of new FormData(form).entries()) {
      if (String(value).trim()) next.set(name, String(value).trim());
    }
    const query = next.toString();
    window.location.hash = "#/captures" + (query ? "?" + query : "");
  });
  return form;
}
