// The studio's only way to the data: the server's /api/v1, signed in by the session cookie.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key !== name) continue;
    try { return decodeURIComponent(rest.join("=")); } catch { return rest.join("="); }
  }
  return "";
}

function suffix() {
  return location.port ? `_${location.port}` : "";
}

// Non-finite floats travel as {"$float": "NaN"} (runyard.store._json).
const FLOATS = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };
export function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$float") return FLOATS[value.$float];
    const out = {};
    for (const k of keys) out[k] = untag(value[k]);
    return out;
  }
  return value;
}

export async function api(method, path, body, { params, signal, raw } = {}) {
  const url = new URL(`/api/v1${path}`, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-Runyard-CSRF"] = cookie(`runyard_csrf${suffix()}`);
  let response;
  try {
    response = await fetch(url, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "Unreachable", "the runyard server is not answering; is it running?");
  }
  if (raw && response.ok) return response;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const err = new ApiError(response.status, error.code || "HttpError",
      error.message || `${method} ${path} failed with HTTP ${response.status}`);
    if (response.status === 401 && path !== "/session") window.dispatchEvent(new CustomEvent("runyard:signin", { detail: err }));
    throw err;
  }
  return text.includes("$float") ? untag(data) : data;
}

// The per-series summaries of runs, as {run id: {metric name: summary}}.
export async function seriesByRun(ids, signal) {
  const byRun = {};
  if (!ids.length) return byRun;
  for (const s of await api("POST", "/series", { run_ids: ids }, { signal })) (byRun[s.run_id] ||= {})[s.name] = s;
  return byRun;
}

export const get = (path, params, options) => api("GET", path, undefined, { ...options, params });
export const post = (path, body, options) => api("POST", path, body, options);
