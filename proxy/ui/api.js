// The admin API, as the console calls it: the admin key as a bearer token, never in a URL.

const KEY_NAME = "stillroom.adminKey";

/** Who the alias history and the capture edits name for changes made here. */
export const ACTOR = "console";

class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function adminKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function setAdminKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function clearAdminKey() {
  sessionStorage.removeItem(KEY_NAME);
}

function url(path, query) {
  const found = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) {
      found.searchParams.append(name, String(one));
    }
  }
  return found;
}

async function send(path, { method = "GET", body, query, key } = {}) {
  const headers = {
    authorization: `Bearer ${key ?? adminKey() ?? ""}`,
    "x-stillroom-actor": ACTOR,
  };
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), init);
  if (!response.ok) {
    throw await errorOf(response);
  }
  return response;
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = null;
  try {
    const body = await response.json();
    const error = body && body.error;
    if (error && typeof error.message === "string") {
      message = error.message;
      code = error.code ?? null;
    } else if (body && typeof body.detail === "string") {
      message = body.detail;
    }
  } catch {
    // Not JSON: the status line says enough.
  }
  if (response.status === 401 || response.status === 403) {
    window.dispatchEvent(new CustomEvent("stillroom:unauthorized", { detail: message }));
  }
  return new ApiError(response.status, message, code);
}

/** JSON from the admin API; throws ApiError with the server's own message. */
export async function api(path, options = {}) {
  const response = await send(path, options);
  if (response.status === 204) return null;
  return response.json();
}

/** Check a key before keeping it: the stats call needs the admin key and nothing else. */
export async function checkKey(key) {
  const response = await send("/admin/stats", { key });
  return response.json();
}

/** A file from the admin API saved through a Blob, so the key travels in a header only. */
export async function download(path, query, fallbackName) {
  const response = await send(path, { query });
  const blob = await response.blob();
  const disposition = response.headers.get("content-disposition") || "";
  const named = /filename="([^"]+)"/.exec(disposition);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = named ? named[1] : fallbackName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  return { name: link.download, bytes: blob.size };
}
