// Charts, drawn by plotly.js (from the plotly package, served by this server).
import { get } from "./api.js";
import { h } from "./dom.js";

// plotly reads <b>, <a href=…> and entities in names, titles and labels: text of runs
// (names, keys, labels) goes in escaped, and never into a hovertemplate
export const esc = (text) => String(text ?? "").replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");

let loading = null;
export function plotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const named = document.querySelector("meta[name=runyard-plotly]");
      const script = h("script", { src: named ? named.content : "/vendor/plotly.min.js" });
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("plotly.js could not be loaded from this server"));
      document.head.append(script);
    });
  }
  return loading;
}

function theme() {
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue("--fg").trim(), line = css.getPropertyValue("--line").trim();
  return {
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: fg, size: 12 },
    xaxis: { gridcolor: line, zerolinecolor: line, automargin: true },
    yaxis: { gridcolor: line, zerolinecolor: line, automargin: true },
    margin: { l: 50, r: 16, t: 10, b: 36 },
    legend: { orientation: "h", y: -0.2 },
    hoverlabel: { namelength: -1 },
  };
}

function merge(base, extra) {
  const out = { ...base };
  for (const [k, v] of Object.entries(extra || {})) {
    out[k] = v && typeof v === "object" && !Array.isArray(v) && base[k] ? { ...base[k], ...v } : v;
  }
  return out;
}

const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

export async function plot(node, data, layout) {
  const P = await plotly();
  await P.react(node, data, merge(theme(), layout), CONFIG);
  node.setAttribute("data-drawn", "1");
  return P;
}

// A line chart of one metric of several runs, each downsampled on the server to the
// chart's width; zooming asks for finer points of the range shown.
export async function seriesChart(node, runs, name, { log = false, xTitle = "step" } = {}) {
  const loaded = plotly(); // loads while the points are fetched
  const width = () => Math.max(200, Math.min(4000, Math.round(node.clientWidth || 800)));
  let range = null, seq = 0;
  async function fetchAll() {
    const mine = ++seq;
    const found = await Promise.all(runs.map((run) => get(`/runs/${encodeURIComponent(run.id)}/series/sampled`,
      { name, width: width(), start: range ? Math.floor(range[0]) : null, end: range ? Math.ceil(range[1]) : null })));
    if (mine !== seq) return null;
    return found.map((s, i) => ({
      type: "scatter", mode: s.steps.length < 60 ? "lines+markers" : "lines",
      name: esc(runs[i].label), x: s.steps, y: s.values,
      hovertemplate: `${xTitle} %{x}<br>%{y}<extra>${runs.length > 1 ? "%{fullData.name}" : ""}</extra>`,
      meta: { count: s.count, sampled: s.sampled },
    }));
  }
  const layout = {
    xaxis: { title: { text: xTitle } },
    yaxis: { type: log ? "log" : "linear" },
    showlegend: runs.length > 1, hovermode: "closest",
  };
  const [P, data] = await Promise.all([loaded, fetchAll()]);
  await P.react(node, data, merge(theme(), layout), CONFIG);
  node.setAttribute("data-drawn", "1");
  node.dataset.points = data.reduce((n, t) => n + t.x.length, 0);
  let busy = false;
  node.on("plotly_relayout", async (event) => {
    if (busy) return;
    if (event["xaxis.autorange"]) range = null;
    else if ("xaxis.range[0]" in event) range = [event["xaxis.range[0]"], event["xaxis.range[1]"]];
    else if (Array.isArray(event["xaxis.range"])) range = event["xaxis.range"];
    else return;
    const fresh = await fetchAll();
    if (!fresh) return;
    busy = true;
    try {
      const keep = { ...node.layout };
      if (range) keep.xaxis = { ...keep.xaxis, range, autorange: false };
      await P.react(node, fresh, keep, CONFIG);
      node.dataset.points = fresh.reduce((n, t) => n + t.x.length, 0);
    } finally { busy = false; }
  });
  return {
    async setLog(on) { await P.relayout(node, { "yaxis.type": on ? "log" : "linear" }); },
    async refresh() {
      const fresh = await fetchAll();
      if (fresh) { busy = true; try { await P.react(node, fresh, node.layout, CONFIG); } finally { busy = false; } }
    },
  };
}

export function purge(node) {
  if (window.Plotly && node) window.Plotly.purge(node);
}
