// Small DOM helpers. Every piece of data reaches the page as text (textContent or an
// attribute), never as markup: captures hold whatever clients and models wrote.

/** An element: props set attributes, `text` the text, `on<event>` listeners; children are nodes or text. */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") element.textContent = String(value);
    else if (name === "class") element.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "value") element.value = value;
    else if (name === "checked") element.checked = Boolean(value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else if (child instanceof Node) element.append(child);
    else element.append(document.createTextNode(String(child)));
  }
}

export function route(path) {
  return "#/" + path.map((part) => encodeURIComponent(part)).join("/");
}

export function link(path, text, props = {}) {
  return h("a", { href: route(path), ...props }, text);
}

const ISO_NO_ZONE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$/;

function date(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return new Date(value * 1000);
  // A time without a zone was written in UTC.
  return new Date(ISO_NO_ZONE.test(value) ? value + "Z" : value);
}

// Formatters made once: building one per call cost most of the time of drawing a list.
const FORMATS = {
  time: new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  }),
  clock: new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }),
  day: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" }),
  num: new Map(),
};

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
}

export const fmt = {
  time(value) {
    const found = date(value);
    if (!found || Number.isNaN(found.getTime())) return "—";
    return FORMATS.time.format(found);
  },
  /** The time of day, with the date in front unless it is today. */
  clock(value) {
    const found = date(value);
    if (!found || Number.isNaN(found.getTime())) return "—";
    const clock = FORMATS.clock.format(found);
    return sameDay(found, new Date()) ? clock : `${FORMATS.day.format(found)} ${clock}`;
  },
  num(value, digits = 0) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    let format = FORMATS.num.get(digits);
    if (!format) {
      format = new Intl.NumberFormat(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
      FORMATS.num.set(digits, format);
    }
    return format.format(Number(value));
  },
  usd(value) {
    if (value === null || value === undefined) return "—";
    const digits = Math.abs(value) < 1 ? 4 : 2;
    return "$" + Number(value).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: digits });
  },
  pct(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    return (value * 100).toFixed(digits) + "%";
  },
  ms(value) {
    if (value === null || value === undefined) return "—";
    return value >= 1000 ? (value / 1000).toFixed(2) + " s" : Math.round(value) + " ms";
  },
  short(id) {
    return id && id.length > 14 ? id.slice(0, 6) + "…" + id.slice(-6) : id || "—";
  },
};

/** "1 capture", "2 captures", "100+ captures" (`more` goes after the number). */
export function plural(count, noun, more = "") {
  return `${Number(count).toLocaleString()}${more} ${count === 1 && !more ? noun : noun + "s"}`;
}

export function pill(value, extra = "") {
  const text = value === null || value === undefined ? "—" : String(value);
  return h("span", { class: `pill pill-${text.replace(/[^a-z_]/gi, "_")} ${extra}`.trim(), text });
}

export function chip(text, onRemove) {
  return h(
    "span",
    { class: "chip" },
    text,
    onRemove && h("button", { type: "button", title: `Remove ${text}`, "aria-label": `Remove tag ${text}`, onclick: onRemove }, "×"),
  );
}

export function stars(rating) {
  const value = rating || 0;
  const said = rating ? `Rated ${rating} of 5` : "Not rated";
  return h("span", { class: "stars", title: said, role: "img", "aria-label": said },
    "★".repeat(value), h("span", { class: "off" }, "★".repeat(5 - value)));
}

export function jsonBlock(value, props = {}) {
  return h("pre", { class: "json", ...props }, JSON.stringify(value, null, 2));
}

export function kv(pairs) {
  const list = h("dl", { class: "kv" });
  for (const [key, value] of pairs) {
    if (value === undefined) continue;
    list.append(h("dt", {}, key), h("dd", {}, value === null ? "—" : value));
  }
  return list;
}

export function card(title, actions, ...children) {
  return h("section", { class: "card" },
    (title || actions) && h("div", { class: "card-title" }, title && h("h2", {}, title), actions),
    ...children);
}

export function stat(label, value, sub, tone) {
  return h("div", { class: `stat ${tone ? "stat-" + tone : ""}` },
    h("div", { class: "stat-label" }, label),
    h("div", { class: "stat-value" }, value),
    sub && h("div", { class: "stat-sub" }, sub));
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

/** A table of `rows`; each column is {label, cell(row) -> node|text, class, hidden}. */
export function table(columns, rows, { onRow, rowProps, emptyText = "Nothing here yet." } = {}) {
  if (!rows.length) return h("div", { class: "table-wrap" }, empty(emptyText));
  // A column without a visible heading still has one for screen readers (`hidden`).
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.class || "" },
    c.label || h("span", { class: "visually-hidden" }, c.hidden || "Details"))));
  const body = h("tbody");
  rows.forEach((row, index) => {
    const tr = h("tr", { ...(rowProps ? rowProps(row, index) : {}) },
      columns.map((c) => h("td", { class: c.class || "" }, c.cell(row, index))));
    if (onRow) {
      tr.classList.add("clickable");
      tr.addEventListener("click", (event) => {
        if (event.target.closest("a, button, input")) return;
        onRow(row, index, tr);
      });
    }
    body.append(tr);
  });
  return h("div", { class: "table-wrap" }, h("table", { class: "data" }, h("thead", {}, head), body));
}

/** A short note in the corner. Errors stay 7 s and stack (three at most); any other note
 * replaces the one before it and goes after 1.6 s, so quick work never piles them up. */
export function toast(message, kind = "info") {
  const error = kind === "error";
  const holder = document.getElementById("toasts");
  if (!error) for (const old of holder.querySelectorAll(".toast:not(.toast-error)")) old.remove();
  const note = h("div", { class: `toast toast-${kind}`, role: error ? "alert" : "status" }, message);
  holder.append(note);
  while (holder.children.length > 3) holder.firstElementChild.remove();
  setTimeout(() => note.remove(), error ? 7000 : 1600);
}

export function failed(error) {
  toast(error && error.message ? error.message : String(error), "error");
}

export function dialogOpen() {
  return document.querySelector("dialog[open]") !== null;
}

/**
 * A modal form. `fields` are {name, label, type: text|select|checkbox|textarea, value, options,
 * required, placeholder}; resolves to the values, or null when cancelled.
 */
export function formDialog({ title, message, fields = [], confirm = "OK", cancel = "Cancel", danger = false, id }) {
  return new Promise((resolve) => {
    const inputs = {};
    const body = fields.map((f) => {
      let input;
      if (f.type === "select") {
        input = h("select", { name: f.name, id: `dlg-${f.name}` },
          f.options.map(([value, label]) => h("option", { value, selected: value === f.value }, label)));
      } else if (f.type === "checkbox") {
        input = h("input", { type: "checkbox", name: f.name, id: `dlg-${f.name}`, checked: f.value });
        inputs[f.name] = input;
        return h("label", { class: "check" }, input, f.label);
      } else if (f.type === "textarea") {
        input = h("textarea", { name: f.name, id: `dlg-${f.name}`, rows: 4, value: f.value ?? "" });
      } else {
        input = h("input", {
          type: f.type || "text", name: f.name, id: `dlg-${f.name}`, value: f.value ?? "",
          required: f.required, placeholder: f.placeholder, pattern: f.pattern, autocomplete: "off",
          list: f.list, min: f.min, max: f.max, step: f.step,
        });
      }
      inputs[f.name] = input;
      return h("div", { class: "field" }, h("label", { for: `dlg-${f.name}` }, f.label), input,
        f.hint && h("span", { class: "muted small" }, f.hint));
    });
    const dialog = h("dialog", { class: "modal", id: id || "dialog" });
    const close = (result) => {
      dialog.close();
      dialog.remove();
      resolve(result);
    };
    const form = h("form", { method: "dialog" },
      h("h2", {}, title),
      message && h("div", { class: "dialog-body" }, message),
      body,
      h("div", { class: "dialog-actions" },
        cancel && h("button", { type: "button", class: "btn", "data-action": "cancel", onclick: () => close(null) }, cancel),
        h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}`, "data-action": "confirm" }, confirm)));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      const values = {};
      for (const [name, input] of Object.entries(inputs)) {
        values[name] = input.type === "checkbox" ? input.checked : input.value.trim();
      }
      close(values);
    });
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      close(null);
    });
    dialog.append(form);
    document.body.append(dialog);
    dialog.showModal();
    const first = form.querySelector("input:not([type=checkbox]), select, textarea");
    (first || form.querySelector("[data-action=confirm]")).focus();
  });
}

/** Yes or no, in a page dialog (not window.confirm). */
export async function confirmDialog(options) {
  return (await formDialog(options)) !== null;
}
