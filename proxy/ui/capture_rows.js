// One row of the captures list: enough of each capture to tell it from its neighbours — when
// (with the date unless today), its review state and whether an edit replaced the answer, the
// last user message over the start of the answer or the tools it called, model and labels.

import { chip, fmt, h, pill, stars } from "./dom.js";

export const COLUMNS = ["Time", "Review", "Conversation", "Model · finish", "Labels"];

function failedCall(item) {
  return item.error_kind || (item.status_code && item.status_code >= 400);
}

function answerLine(item) {
  const tools = item.answer_tools || [];
  if (tools.length) {
    return [h("span", { class: "tool-name" }, `→ ${tools.join(", ")}`), item.answer_text ? ` ${item.answer_text}` : null];
  }
  if (item.answer_text) return item.answer_text;
  if (failedCall(item)) return `failed: ${item.error_kind || item.status_code}`;
  return item.abandoned ? "no answer: the client went away" : "no answer";
}

function reviewCell(item) {
  const feedback = item.feedback && item.feedback !== "neutral"
    ? h("span", { class: `feedback feedback-${item.feedback}`, title: `end-user feedback: ${item.feedback}` },
      h("span", { "aria-hidden": "true" }, item.feedback === "positive" ? " ▲" : " ▼"),
      h("span", { class: "visually-hidden" }, ` end-user feedback ${item.feedback}`))
    : null;
  return h("td", { class: "nowrap" }, pill(item.review_status), feedback,
    item.edited ? h("span", { class: "badge-edited", title: "An edit replaced the answer; training uses it" }, "edited") : null);
}

function modelCell(item) {
  const model = item.served_model ?? item.requested_model ?? "—";
  const finish = failedCall(item)
    ? pill(item.error_kind || String(item.status_code), "pill-error")
    : item.finish_reason ?? "—";
  const tokens = item.total_tokens === null ? null : ` · ${fmt.num(item.total_tokens)} tok`;
  return h("td", { class: "ellipsis", title: `${item.alias ?? ""} ${model}`.trim() },
    h("div", { class: "ellipsis-line" }, item.alias ? h("strong", {}, item.alias + " ") : null,
      h("span", { class: item.alias ? "muted" : "" }, model)),
    h("div", { class: "ellipsis-line muted small" }, finish, tokens));
}

/** The table row of `item`, the `index`-th of the list. */
export function captureRow(item, index, selected) {
  const user = item.last_user_text;
  return h("tr", {
    class: `clickable${selected ? " selected" : ""}`, "data-id": item.id, "data-index": index,
    "data-status": item.review_status, "data-edited": item.edited ? "true" : "false",
    "aria-current": selected ? "true" : null,
  },
  h("td", { class: "nowrap", title: fmt.time(item.created_at) }, fmt.clock(item.created_at)),
  reviewCell(item),
  h("td", { class: "convo" },
    h("div", { class: "convo-user ellipsis-line", title: user ?? "" }, user ?? h("span", { class: "muted" }, "(no user message)")),
    h("div", { class: "convo-answer ellipsis-line", title: item.answer_text ?? "" }, answerLine(item))),
  modelCell(item),
  h("td", {}, item.rating ? stars(item.rating) : null, item.rating && item.tags.length ? " " : null, item.tags.map((tag) => chip(tag))));
}
