// The console's entry point: sign-in, the shell, and the router by location hash.

import { adminKey, api, checkKey, clearAdminKey, setAdminKey } from "./api.js";
import { failed, h, plural } from "./dom.js";
import * as aliases from "./aliases.js";
import * as captures from "./captures.js";
import * as datasets from "./datasets.js";
import * as evals from "./evals.js";
import * as jobs from "./jobs.js";
import * as overview from "./overview.js";

// "#/captures?status=pending" -> page captures; "#/jobs/<id>" -> the jobs page with its id.
const PAGES = {
  overview,
  captures,
  datasets,
  jobs,
  cycles: jobs,
  evals,
  aliases,
};

const NAV_OF = { cycles: "jobs" };

/** The page on screen: its name, what to do on leaving it, and how it follows a new address
 * without being drawn again (`update(route)` says whether it did). */
let active = null;

function leave() {
  if (active && active.cleanup) active.cleanup();
  active = null;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, "");
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function show(element, visible) {
  element.hidden = !visible;
}

function showLogin(message = "") {
  leave();
  show(document.getElementById("shell"), false);
  show(document.getElementById("login"), true);
  document.getElementById("login-error").textContent = message;
  const input = document.getElementById("admin-key");
  input.value = "";
  input.focus();
}

/** Where the default upstream is, and a plain warning when it is a local sandbox. */
function upstreamLabel(stats) {
  const target = document.getElementById("upstream");
  target.replaceChildren();
  const base = stats.upstream_base_url;
  if (!base) return;
  let host = base;
  try {
    host = new URL(base).hostname;
  } catch {
    // Shown as configured.
  }
  const local = ["127.0.0.1", "localhost", "::1", "[::1]", "0.0.0.0"].includes(host);
  const kind = local ? "sandbox" : host === "api.openai.com" ? "openai" : "upstream";
  const label = { sandbox: "local sandbox", openai: "OpenAI", upstream: "upstream" }[kind];
  target.append(
    h("span", { class: `pill pill-${kind}`, "data-upstream-kind": kind }, label),
    h("span", { class: "mono", title: "STILLROOM_UPSTREAM_BASE_URL" }, base),
  );
}

async function refreshHeader() {
  try {
    const stats = await api("/admin/stats");
    upstreamLabel(stats);
    document.getElementById("capture-count").textContent =
      plural(stats.captures, "capture") + (stats.capture_queue ? ` · ${stats.capture_queue} queued` : "");
  } catch (error) {
    failed(error);
  }
}

function render() {
  if (!adminKey()) {
    showLogin();
    return;
  }
  show(document.getElementById("login"), false);
  show(document.getElementById("shell"), true);
  const route = parseHash();
  if (!route.parts.length || !PAGES[route.parts[0]]) {
    window.location.replace("#/overview");
    return;
  }
  const name = route.parts[0];
  if (active && active.name === name && active.update && active.update(route)) return;
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === (NAV_OF[name] || name));
  }
  leave();
  const main = document.getElementById("main");
  main.className = "main";
  const root = h("div", { class: "page", "data-page": name });
  main.replaceChildren(root);
  const title = (text) => {
    document.getElementById("page-title").textContent = text;
    document.title = `${text} · stillroom`;
  };
  try {
    const drawn = PAGES[name].render(root, { ...route, name, title, main });
    active = typeof drawn === "function"
      ? { name, cleanup: drawn, update: null }
      : { name, cleanup: drawn?.cleanup ?? null, update: drawn?.update ?? null };
  } catch (error) {
    failed(error);
  }
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("admin-key");
  const key = input.value.trim();
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    const stats = await checkKey(key);
    setAdminKey(key);
    upstreamLabel(stats);
    await refreshHeader();
    render();
  } catch (failure) {
    error.textContent = failure.status === 401 || failure.status === 403
      ? "That is not the admin key."
      : `Could not sign in: ${failure.message}`;
  }
}

function start() {
  document.getElementById("login-form").addEventListener("submit", signIn);
  document.getElementById("logout").addEventListener("click", () => {
    clearAdminKey();
    showLogin("Signed out.");
  });
  window.addEventListener("stillroom:unauthorized", () => {
    clearAdminKey();
    showLogin("The admin key was refused; sign in again.");
  });
  window.addEventListener("hashchange", render);
  if (adminKey()) refreshHeader();
  render();
}

start();
