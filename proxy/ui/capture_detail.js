// One capture in the review pane: its status and actions, its facts, the conversation with the
// answer (and the edit beside the original), the request's parameters, feedback and edits.

import { ACTOR } from "./api.js";
import { contentText, conversationView, messageView } from "./conversation.js";
import { chip, fmt, h, jsonBlock, kv, pill, table } from "./dom.js";

function ratingButtons(detail, actions) {
  const current = detail.rating || 0;
  return h("span", { class: "stars", role: "group", "aria-label": current ? `Rating: ${current} of 5` : "Rating: not rated" },
    [1, 2, 3, 4, 5].map((n) => h("button", {
      type: "button", class: n <= current ? "on" : "", title: `Rate ${n} (key ${n})`,
      "aria-label": `Rate ${n} of 5`, "aria-pressed": n === current ? "true" : "false",
      "data-rate": n, onclick: () => actions.rate(n),
    }, h("span", { "aria-hidden": "true" }, "★"))));
}

function actionButtons(actions) {
  const button = (label, key, cls, handler, action) =>
    h("button", { type: "button", class: `btn btn-small ${cls}`, onclick: handler, "data-action": action, title: `${label} (${key})` },
      label, h("kbd", {}, key));
  return [
    button("Approve", "a", "btn-approve", () => actions.status("approved"), "approve"),
    button("Reject", "r", "btn-reject", () => actions.status("rejected"), "reject"),
    button("Edit", "e", "", () => actions.edit(), "edit"),
    button("Tag", "t", "", () => actions.tag(), "tag"),
  ];
}

function facts(detail) {
  const model = detail.requested_model && detail.requested_model !== detail.served_model
    ? `${detail.requested_model} → ${detail.served_model ?? "?"}`
    : detail.served_model ?? detail.requested_model;
  const outcome = detail.status_code
    ? `${detail.status_code}${detail.error_kind ? " · " + detail.error_kind : ""}`
    : detail.error_kind ?? "no answer";
  const tokens = detail.total_tokens === null
    ? "—"
    : `${fmt.num(detail.prompt_tokens)} + ${fmt.num(detail.completion_tokens)} = ${fmt.num(detail.total_tokens)}`;
  return kv([
    ["Created", fmt.time(detail.created_at)],
    ["Alias", detail.alias ?? "—"],
    ["Model", model ?? "—"],
    ["Upstream", detail.upstream],
    ["Outcome", outcome],
    ["Finish", detail.finish_reason ?? "—"],
    ["Tokens", tokens],
    ["Latency", `${fmt.ms(detail.total_ms)}${detail.ttfb_ms !== null ? ` (first byte ${fmt.ms(detail.ttfb_ms)})` : ""}`],
    ["Stream", detail.stream ? (detail.abandoned ? "yes, abandoned by the client" : "yes") : "no"],
    ["User", detail.user ?? "—"],
    ["Completion id", h("span", { class: "mono" }, detail.completion_id ?? "—")],
    ["Feedback", detail.feedback ? pill(detail.feedback) : "—"],
  ]);
}

function summaryLine(detail) {
  const bits = [
    detail.alias ? `alias ${detail.alias}` : null,
    detail.served_model ?? detail.requested_model,
    detail.finish_reason ? `finish ${detail.finish_reason}` : null,
    detail.total_tokens !== null ? `${fmt.num(detail.total_tokens)} tokens` : null,
    detail.total_ms !== null ? fmt.ms(detail.total_ms) : null,
    fmt.time(detail.created_at),
  ].filter(Boolean);
  return h("div", { class: "muted small summary-line" }, bits.join(" · "));
}

function tagLine(detail, actions) {
  const metadata = Object.entries(detail.metadata || {});
  return h("div", { class: "row", "data-tags": "" },
    h("span", { class: "muted small" }, "Tags"),
    detail.tags.length
      ? detail.tags.map((tag) => chip(tag, () => actions.retag([], [tag])))
      : h("span", { class: "muted small" }, "none"),
    metadata.length > 0 && h("span", { class: "muted small" }, " · Metadata"),
    metadata.map(([key, value]) => h("span", { class: "chip chip-meta" }, `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)));
}

function tagForm(actions) {
  const input = h("input", {
    id: "tag-input", type: "text", placeholder: "tags to add, comma separated; -tag removes", autocomplete: "off",
    "aria-label": "Tags to add, comma separated; -tag removes one",
  });
  const apply = () => {
    const words = input.value.split(",").map((w) => w.trim()).filter(Boolean);
    const remove = words.filter((w) => w.startsWith("-")).map((w) => w.slice(1)).filter(Boolean);
    const add = words.filter((w) => !w.startsWith("-"));
    actions.retag(add, remove);
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      apply();
    } else if (event.key === "Escape") {
      event.preventDefault();
      actions.cancel();
    }
  });
  setTimeout(() => input.focus(), 0);
  return h("div", { class: "inline-form", id: "tag-form" },
    input,
    h("button", { type: "button", class: "btn btn-primary btn-small", id: "tag-save", onclick: apply }, "Save tags"),
    h("button", { type: "button", class: "btn btn-small", onclick: () => actions.cancel() }, "Cancel"));
}

function editor(detail, actions) {
  const answer = detail.answer || { role: "assistant", content: "" };
  const content = h("textarea", { id: "edit-content", rows: 8, value: contentText(answer.content) });
  const calls = answer.tool_calls && answer.tool_calls.length
    ? h("textarea", { id: "edit-tool-calls", class: "code", rows: 8, value: JSON.stringify(answer.tool_calls, null, 2) })
    : null;
  const reason = h("input", { id: "edit-reason", type: "text", placeholder: "why it was wrong", autocomplete: "off" });
  const error = h("div", { class: "form-error" });
  const save = () => {
    const message = { role: "assistant", content: content.value === "" ? null : content.value };
    if (calls && calls.value.trim()) {
      try {
        message.tool_calls = JSON.parse(calls.value);
      } catch (failure) {
        error.textContent = `Tool calls are not valid JSON: ${failure.message}`;
        return;
      }
    }
    actions.saveEdit({ message, author: ACTOR, reason: reason.value.trim() || null });
  };
  const keys = (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      save();
    } else if (event.key === "Escape") {
      event.preventDefault();
      actions.cancel();
    }
  };
  for (const field of [content, calls, reason]) if (field) field.addEventListener("keydown", keys);
  setTimeout(() => content.focus(), 0);
  return h("div", { class: "editor", id: "editor" },
    h("div", { class: "msg-role" }, "Edit the answer", h("span", { class: "muted" }, "stored beside the original; training uses it")),
    h("label", { for: "edit-content" }, "Answer"),
    content,
    calls && h("label", { for: "edit-tool-calls" }, "Tool calls (JSON)"),
    calls,
    h("label", { for: "edit-reason" }, "Reason (optional)"),
    reason,
    error,
    h("div", { class: "row" },
      h("button", { type: "button", class: "btn btn-primary btn-small", id: "edit-save", onclick: save }, "Save edit", h("kbd", {}, "Ctrl+Enter")),
      h("button", { type: "button", class: "btn btn-small", onclick: () => actions.cancel() }, "Cancel", h("kbd", {}, "Esc"))));
}

function answerView(detail, mode, actions) {
  if (mode === "edit") return editor(detail, actions);
  const parts = [];
  if (detail.current_edit) {
    parts.push(messageView(detail.answer, {
      title: "Assistant · edited answer", cls: "msg-answer",
      note: `by ${detail.current_edit.author}, ${fmt.time(detail.current_edit.created_at)}${detail.current_edit.reason ? " — " + detail.current_edit.reason : ""}`,
    }));
    if (detail.original_answer) {
      parts.push(h("details", {}, h("summary", {}, "Original answer"),
        messageView(detail.original_answer, { title: "Assistant · original", cls: "msg-original" })));
    }
  } else if (detail.original_answer) {
    parts.push(messageView(detail.original_answer, { title: "Assistant · answer", cls: "msg-answer" }));
  }
  if (detail.error) {
    parts.push(h("div", { class: "msg msg-error" }, h("div", { class: "msg-role" }, "Error"), jsonBlock(detail.error)));
  } else if (!parts.length) {
    parts.push(h("div", { class: "msg msg-error" }, h("div", { class: "msg-role" }, "No answer"),
      h("div", { class: "msg-body" }, detail.abandoned ? "The client went away before the answer came." : "The upstream sent no answer.")));
  }
  return h("div", { class: "conversation", id: "answer" }, parts);
}

function feedbackTable(entries) {
  return table([
    { label: "When", cell: (f) => fmt.clock(f.created_at), class: "nowrap" },
    { label: "Thumbs", cell: (f) => (f.thumbs === null ? "—" : f.thumbs > 0 ? "up" : "down") },
    { label: "Score", cell: (f) => (f.score === null ? "—" : f.score.toFixed(2)), class: "num" },
    { label: "Comment", cell: (f) => f.comment ?? "—" },
  ], entries);
}

function editsTable(edits) {
  return table([
    { label: "When", cell: (e) => fmt.clock(e.created_at), class: "nowrap" },
    { label: "Author", cell: (e) => e.author },
    { label: "Reason", cell: (e) => e.reason ?? "—" },
    { label: "Answer", cell: (e) => contentText(e.message.content).slice(0, 120) || "(tool calls)", class: "ellipsis" },
  ], [...edits].reverse());
}

/** The whole pane for `detail`; `mode` is null, "edit" or "tag"; `actions` are the review's. */
export function captureDetailView(detail, mode, actions) {
  const { messages: _messages, tools, functions, ...parameters } = detail.request || {};
  return h("div", { class: "capture", "data-capture-id": detail.id, "data-status": detail.review_status },
    h("div", { class: "detail-head" },
      pill(detail.review_status),
      h("span", { class: "detail-id", title: "Capture id" }, detail.id),
      h("span", { class: "spacer" }),
      ratingButtons(detail, actions)),
    h("div", { class: "detail-actions" }, actionButtons(actions)),
    summaryLine(detail),
    mode === "tag" && tagForm(actions),
    tagLine(detail, actions),
    h("div", { class: "section-label" }, "Conversation"),
    conversationView(detail.messages),
    h("div", { class: "answer-wrap" }, answerView(detail, mode, actions)),
    h("div", { class: "section-label" }, "Request parameters"),
    jsonBlock(parameters, { id: "request-parameters" }),
    tools && h("details", {}, h("summary", {}, `Tools (${tools.length})`), jsonBlock(tools)),
    functions && h("details", {}, h("summary", {}, `Functions (${functions.length})`), jsonBlock(functions)),
    h("div", { class: "section-label" }, "Capture"),
    facts(detail),
    detail.feedback_entries.length > 0 && [h("div", { class: "section-label" }, "End-user feedback"), feedbackTable(detail.feedback_entries)],
    detail.edits.length > 0 && [h("div", { class: "section-label" }, `Edits (${detail.edits.length})`), editsTable(detail.edits)]);
}
