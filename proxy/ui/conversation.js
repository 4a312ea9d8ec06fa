// Chat messages as readable bubbles: role labels, content parts, tool calls with their
// arguments pretty-printed. Shared by the captures review and the evaluation results.

import { h, jsonBlock } from "./dom.js";

const ROLE_LABELS = {
  system: "System",
  developer: "Developer",
  user: "User",
  assistant: "Assistant",
  tool: "Tool",
  function: "Function",
};

/** Arguments as the model wrote them, parsed when they are JSON. */
function parsedArguments(raw) {
  if (typeof raw !== "string") return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** The text of a message's content, for editing: a string, or its text parts joined. */
export function contentText(content) {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (part && typeof part.text === "string" ? part.text : "")).join("\n");
  }
  return JSON.stringify(content);
}

function partView(part) {
  if (typeof part === "string") return h("div", { class: "msg-body" }, part);
  if (!part || typeof part !== "object") return null;
  switch (part.type) {
    case "text":
      return h("div", { class: "msg-body" }, part.text ?? "");
    case "refusal":
      return h("div", { class: "msg-body" }, h("strong", {}, "Refusal: "), part.refusal ?? "");
    case "image_url": {
      const target = part.image_url && part.image_url.url ? part.image_url.url : "";
      const shown = target.startsWith("data:") ? target.slice(0, 40) + "…" : target;
      return h("div", { class: "part-note" }, `[image] ${shown}`);
    }
    case "input_audio":
      return h("div", { class: "part-note" }, `[audio input, ${part.input_audio?.format ?? "unknown format"}]`);
    case "file":
      return h("div", { class: "part-note" }, `[file] ${part.file?.filename ?? part.file?.file_id ?? ""}`);
    default:
      return jsonBlock(part);
  }
}

function toolCallView(call) {
  const fn = call.function || {};
  return h("div", { class: "tool-call" },
    h("div", { class: "tool-call-head" },
      h("span", { class: "muted" }, call.type || "function"),
      h("span", { class: "fn" }, fn.name || "?"),
      call.id && h("span", { class: "muted" }, call.id)),
    jsonBlock(parsedArguments(fn.arguments ?? call.custom?.input ?? "")));
}

/** One message. `title` overrides the role label; `cls` adds classes (e.g. msg-answer). */
export function messageView(message, { title, cls = "", note } = {}) {
  const role = (message && message.role) || "assistant";
  const head = h("div", { class: "msg-role" },
    h("span", {}, title || ROLE_LABELS[role] || role),
    message.name && h("span", { class: "muted" }, message.name),
    role === "tool" && message.tool_call_id && h("span", { class: "muted mono" }, message.tool_call_id),
    note && h("span", { class: "muted" }, note));
  const body = [];
  const content = message.content;
  if (typeof content === "string" && content !== "") body.push(h("div", { class: "msg-body" }, content));
  else if (Array.isArray(content)) body.push(...content.map(partView));
  else if (content && typeof content === "object") body.push(jsonBlock(content));
  if (message.refusal) body.push(h("div", { class: "msg-body" }, h("strong", {}, "Refusal: "), message.refusal));
  for (const call of message.tool_calls || []) body.push(toolCallView(call));
  if (message.function_call) body.push(toolCallView({ type: "function_call", function: message.function_call }));
  if (message.audio) body.push(h("div", { class: "part-note" }, `[audio answer ${message.audio.id ?? ""}]`));
  if (!body.length) body.push(h("div", { class: "msg-body muted" }, "(empty)"));
  return h("div", { class: `msg msg-${role} ${cls}`.trim(), "data-role": role }, head, body);
}

export function conversationView(messages) {
  const list = Array.isArray(messages) ? messages : [];
  return h("div", { class: "conversation" },
    list.map((message) => (message && typeof message === "object" ? messageView(message) : h("div", { class: "msg" }, String(message)))));
}
