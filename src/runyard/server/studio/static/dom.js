// Small helpers to build the page: elements, times, durations, statuses.

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

export const TERMINAL = ["Completed", "Failed", "Canceled"];
export const isTerminal = (status) => TERMINAL.includes(status);

export function statusBadge(status) {
  return h("span", { class: `status s-${status}`, "data-status": status }, status);
}

export function when(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function ago(seconds) {
  if (!seconds) return "";
  const s = Math.max(0, Date.now() / 1000 - seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

// H:MM:SS, as the reference's run_duration; a run still going counts up to now.
export function duration(run) {
  const begin = run.start ?? null;
  if (begin === null) return "";
  const end = run.end ?? (isTerminal(run.status) ? begin : Date.now() / 1000);
  const total = Math.max(0, Math.round(end - begin));
  const hh = Math.floor(total / 3600), mm = Math.floor((total % 3600) / 60), ss = total % 60;
  return `${hh}:${String(mm).padStart(2, "0")}:${String(ss).padStart(2, "0")}`;
}

export function number(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-4 || abs >= 1e6) ? value.toExponential(4) : String(+value.toPrecision(6));
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(1)} ${units[i]}`;
}

export function runName(run) {
  return run.display_name || run.name || run.id;
}

export function link(href, text, attrs) {
  return h("a", { href, "data-nav": "", ...attrs }, text);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}

export function table(headers, rows, attrs) {
  return h("div", { class: "table-wrap" },
    h("table", attrs || {},
      h("thead", {}, h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", { scope: "col" }, x))))),
      h("tbody", {}, rows)));
}

// Repeat `task` every `ms` while the page is shown; stop() ends it.
export function every(ms, task) {
  let timer = null, stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try { await task(); } catch (err) { if (err.name !== "AbortError") console.warn(err); }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return { stop() { stopped = true; clearTimeout(timer); } };
}
