// Several runs side by side: one metric overlaid, properties and tags with differences
// marked, and for a sweep a scatter of a property against a metric.
import { get, post, seriesByRun } from "./api.js";
import { esc, plot, plotly, seriesChart } from "./charts.js";
import { clear, h, link, number, runName, statusBadge } from "./dom.js";

const MAX_RUNS = 50;

export async function comparePage(main, params, query, ctx) {
  const parent = query.get("parent");
  plotly().catch(() => {}); // on its way while the runs are fetched
  let runs;
  if (parent) {
    runs = await post("/runs/search", { query: { parent_id: parent }, limit: MAX_RUNS });
  } else {
    const ids = (query.get("runs") || "").split(",").filter(Boolean).slice(0, MAX_RUNS);
    runs = await Promise.all(ids.map((id) => get(`/runs/${encodeURIComponent(id)}`)));
  }
  if (!runs.length) {
    clear(main, h("h1", {}, "Compare runs"), h("p", { class: "muted" }, "Select runs in an experiment's table, then Compare."));
    return null;
  }
  const labels = runs.map((r) => `${r.number}: ${runName(r)}`);
  const byRun = await seriesByRun(runs.map((r) => r.id));
  const summaries = Object.values(byRun).flatMap((m) => Object.values(m))
    .filter((s) => (s.kind === "scalar" || s.kind === "list") && typeof s.last === "number");
  const numeric = [...new Set(summaries.map((s) => s.name))].sort();
  const curves = new Set(summaries.filter((s) => s.count > 1).map((s) => s.name));
  const chosen = numeric.includes(query.get("metric")) ? query.get("metric") : numeric.find((n) => curves.has(n)) || numeric[0];

  const chartNode = h("div", { class: "chart tall", id: "compare-chart", role: "img", "aria-label": "Metric of the runs overlaid" });
  const pick = h("select", { id: "compare-metric", "aria-label": "Metric", onchange: () => {
    const q = new URLSearchParams(location.search); q.set("metric", pick.value);
    history.replaceState(null, "", `${location.pathname}?${q}`);
    draw(pick.value);
  } }, numeric.map((n) => h("option", { value: n, selected: n === chosen }, n)));
  // a metric of one value per run is a bar per run; a series, lines overlaid
  const draw = (name) => (curves.has(name)
    ? seriesChart(chartNode, runs.map((r, i) => ({ id: r.id, label: labels[i] })), name)
    : plot(chartNode, [{ type: "bar", x: labels.map(esc), y: runs.map((r) => ((byRun[r.id] || {})[name] || {}).last ?? null) }],
      { xaxis: { type: "category" }, yaxis: { title: { text: esc(name) } } }));

  const sweep = h("div", { id: "sweep" });
  clear(main,
    h("div", { class: "crumbs" }, link("/", "Experiments"), " / ",
      link(`/experiments/${encodeURIComponent(runs[0].experiment_id)}`, runs[0].experiment_name)),
    h("h1", {}, parent ? `Children of run ${parent}` : `Compare ${runs.length} runs`),
    numeric.length ? [h("div", { class: "bar" }, h("label", { for: "compare-metric" }, "Metric"), pick), chartNode]
      : h("p", { class: "muted" }, "These runs have no numeric metrics to overlay."),
    h("h2", {}, "Properties and tags"),
    h("p", { class: "muted" }, "Rows whose values differ between the runs are highlighted."),
    sideBySide(runs, labels, byRun),
    sweep);
  if (chosen) await draw(chosen);
  const sameParent = runs.every((r) => r.parent_id && r.parent_id === runs[0].parent_id);
  if ((parent || sameParent) && runs.length > 1) await drawSweep(sweep, runs, byRun, numeric);
  return null;
}

function sideBySide(runs, labels, byRun) {
  const rows = [];
  const add = (section, key, values) => {
    const shown = values.map((v) => (v === undefined ? "" : v === null ? "(no value)" : typeof v === "number" ? number(v) : String(v)));
    const differ = new Set(shown).size > 1;
    rows.push(h("tr", { class: differ ? "diff" : "", "data-key": `${section}.${key}` },
      h("th", { scope: "row" }, h("span", { class: "muted" }, `${section} `), key),
      shown.map((v) => h("td", {}, v))));
  };
  add("run", "status", runs.map((r) => r.status));
  add("run", "submitted by", runs.map((r) => r.submitted_by));
  for (const [section, field] of [["property", "properties"], ["tag", "tags"]]) {
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r[field] || {})))].sort();
    for (const key of keys) add(section, key, runs.map((r) => (r[field] || {})[key]));
  }
  const metrics = [...new Set(Object.values(byRun).flatMap((m) => Object.keys(m)))].sort();
  for (const name of metrics) add("metric", name, runs.map((r) => ((byRun[r.id] || {})[name] || {}).last));
  return h("div", { class: "table-wrap" }, h("table", { id: "compare-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), runs.map((r, i) => h("th", { scope: "col" },
      link(`/runs/${encodeURIComponent(r.id)}`, labels[i]), " ", statusBadge(r.status))))),
    h("tbody", {}, rows)));
}

async function drawSweep(box, runs, byRun, metrics) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.properties || {})))]
    .filter((k) => runs.some((r) => r.properties[k] !== undefined)).sort();
  if (!keys.length || !metrics.length) return;
  const xPick = h("select", { id: "sweep-x", "aria-label": "Property" }, keys.map((k) => h("option", { value: k }, k)));
  const yPick = h("select", { id: "sweep-y", "aria-label": "Metric" }, metrics.map((m) => h("option", { value: m }, m)));
  const scatter = h("div", { class: "chart", id: "sweep-scatter", role: "img", "aria-label": "Property against metric" });
  const parallel = h("div", { class: "chart tall", id: "sweep-parallel", role: "img", "aria-label": "Parallel coordinates" });
  const value = (text) => (text !== undefined && text !== "" && !Number.isNaN(Number(text)) ? Number(text) : text);
  const last = (r, m) => ((byRun[r.id] || {})[m] || {}).last;
  const draw = async () => {
    const x = xPick.value, y = yPick.value;
    await plot(scatter, [{ type: "scatter", mode: "markers", marker: { size: 10 },
      x: runs.map((r) => { const v = value(r.properties[x]); return typeof v === "string" ? esc(v) : v; }),
      y: runs.map((r) => last(r, y)),
      text: runs.map((r) => `run ${r.number}`), hovertemplate: "%{x}, %{y}<br>%{text}<extra></extra>" }],
    { xaxis: { title: { text: esc(x) } }, yaxis: { title: { text: esc(y) } } });
    const numericKeys = keys.filter((k) => runs.every((r) => typeof value(r.properties[k]) === "number"));
    parallel.hidden = !(numericKeys.length && webgl());
    if (!parallel.hidden) { // plotly draws parallel coordinates with WebGL
      await plot(parallel, [{ type: "parcoords",
        line: { color: runs.map((r) => last(r, y) ?? 0), colorscale: "Viridis", showscale: true },
        dimensions: [...numericKeys.map((k) => ({ label: esc(k), values: runs.map((r) => value(r.properties[k])) })),
          { label: esc(y), values: runs.map((r) => last(r, y) ?? null) }] }], { margin: { l: 60, r: 60, t: 40, b: 20 } });
    }
  };
  xPick.onchange = draw; yPick.onchange = draw;
  clear(box, h("h2", {}, "Sweep"), h("div", { class: "bar" }, h("label", { for: "sweep-x" }, "Property"), xPick,
    h("label", { for: "sweep-y" }, "against metric"), yPick), scatter, parallel);
  await draw();
}

function webgl() {
  try { return Boolean(document.createElement("canvas").getContext("webgl")); } catch { return false; }
}
