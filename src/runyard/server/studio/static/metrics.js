// One metric of a run, drawn as its kind asks: line charts for numbers logged in a loop
// or as a list, tables (with a chart of two numeric columns), images, and the JSON chart
// kinds (confusion matrix, accuracy table, residuals, predictions).
import { api, get } from "./api.js";
import { esc, plot, seriesChart } from "./charts.js";
import { clear, errorBox, h, number, table } from "./dom.js";

const MAX_ROWS = 10000;
const MAX_IMAGES = 24;

export async function drawMetric(card, run, summary) {
  const path = `/runs/${encodeURIComponent(run.id)}`;
  const title = h("h3", {}, summary.name, h("span", { class: "muted" }, ` ${summary.kind} · ${summary.count} point${summary.count === 1 ? "" : "s"}`));
  const body = h("div", {});
  clear(card, title, body);
  const tools = h("span", { class: "tools" });
  title.append(tools);
  try {
    if ((summary.kind === "scalar" || summary.kind === "list") && typeof summary.last === "number") {
      const node = h("div", { class: "chart", role: "img", "aria-label": `Line chart of ${summary.name}` });
      body.append(node);
      const chart = await seriesChart(node, [{ id: run.id, label: run.display_name || run.id }], summary.name,
        { xTitle: summary.kind === "list" ? "index" : "step" });
      let log = false;
      tools.append(h("button", { type: "button", "aria-pressed": "false", onclick: async (e) => {
        log = !log; e.target.setAttribute("aria-pressed", String(log)); await chart.setLog(log);
      } }, "log scale"));
      return { refresh: () => chart.refresh() };
    }
    const points = await get(`${path}/series/points`, { name: summary.name, limit: MAX_ROWS });
    if (summary.kind === "table") return drawTable(body, tools, summary, points);
    if (summary.kind === "image") return drawImages(body, path, points);
    if (["confusion_matrix", "accuracy_table", "residuals", "predictions"].includes(summary.kind)) {
      const last = points.values[points.values.length - 1];
      const response = await api("GET", `${path}/files/${last.split("/").map(encodeURIComponent).join("/")}`, undefined, { raw: true });
      const document = JSON.parse((await response.text()).replace(/\bNaN\b/g, "null"));
      return drawChartKind(body, summary.kind, document.data || document);
    }
    body.append(table(["Step", "Value"], points.values.map((v, i) => h("tr", {}, h("td", { class: "num" }, points.steps[i]),
      h("td", {}, typeof v === "object" ? JSON.stringify(v) : number(v))))));
  } catch (err) {
    body.append(errorBox(err));
  }
  return null;
}

function drawTable(body, tools, summary, points) {
  const columns = [];
  for (const row of points.values) for (const key of Object.keys(row || {})) if (!columns.includes(key)) columns.push(key);
  const numeric = columns.filter((c) => points.values.every((r) => r[c] === null || r[c] === undefined || typeof r[c] === "number"));
  const grid = table(columns, points.values.map((r) => h("tr", {}, columns.map((c) => h("td", { class: typeof r[c] === "number" ? "num" : "" }, number(r[c]))))));
  if (numeric.length < 2) { body.append(grid); return null; }
  const node = h("div", { class: "chart", role: "img", "aria-label": `Chart of ${summary.name}` });
  const show = async (asChart) => {
    clear(body, asChart ? node : grid);
    chartButton.setAttribute("aria-pressed", String(asChart));
    if (asChart) {
      const [x, ...ys] = numeric;
      await plot(node, ys.map((y) => ({ type: "scatter", mode: points.values.length < 60 ? "lines+markers" : "lines", name: esc(y),
        x: points.values.map((r) => r[x]), y: points.values.map((r) => r[y]) })), { xaxis: { title: { text: esc(x) } }, showlegend: ys.length > 1 });
    }
  };
  let asChart = true;
  const chartButton = h("button", { type: "button", "aria-pressed": "true", onclick: () => { asChart = !asChart; show(asChart); } }, "chart");
  tools.append(chartButton);
  show(true);
  return null;
}

async function drawImages(body, path, points) {
  const figures = h("div", { class: "images" });
  body.append(figures);
  const shown = points.values.slice(-MAX_IMAGES);
  for (const name of shown) {
    const response = await api("GET", `${path}/files/${name.split("/").map(encodeURIComponent).join("/")}`, undefined, { raw: true });
    const type = name.toLowerCase().endsWith(".svg") ? "image/svg+xml" : name.toLowerCase().match(/\.jpe?g$/) ? "image/jpeg" : "image/png";
    const url = URL.createObjectURL(new Blob([await response.arrayBuffer()], { type }));
    figures.append(h("figure", {}, h("img", { src: url, alt: name, loading: "lazy" }), h("figcaption", { class: "muted" }, name)));
  }
  if (points.values.length > shown.length) figures.append(h("p", { class: "muted" }, `The last ${shown.length} of ${points.values.length} images.`));
  return null;
}

async function drawChartKind(body, kind, data) {
  const node = h("div", { class: "chart tall", role: "img", "aria-label": kind.replace("_", " ") });
  body.append(node);
  if (kind === "confusion_matrix") {
    const labels = (data.class_labels || []).map(esc);
    const z = data.matrix || [];
    await plot(node, [{ type: "heatmap", z, x: labels, y: labels, colorscale: "Blues", reversescale: true, texttemplate: "%{z}", hovertemplate: "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>" }],
      { xaxis: { title: { text: "Predicted label" }, type: "category" }, yaxis: { title: { text: "True label" }, type: "category", autorange: "reversed" } });
  } else if (kind === "accuracy_table") {
    const labels = (data.class_labels || []).map(esc);
    const traces = (data.probability_tables || []).map((rows, i) => ({
      type: "scatter", mode: "lines", name: labels[i] ?? `class ${i}`,
      x: rows.map(([, fp, tn]) => fp / Math.max(fp + tn, 1)), y: rows.map(([tp, , , fn]) => tp / Math.max(tp + fn, 1)),
    }));
    traces.push({ type: "scatter", mode: "lines", name: "chance", x: [0, 1], y: [0, 1], line: { dash: "dot", color: "gray" } });
    await plot(node, traces, { xaxis: { title: { text: "False positive rate" }, range: [0, 1] }, yaxis: { title: { text: "True positive rate" }, range: [0, 1.02] } });
  } else if (kind === "residuals") {
    const edges = data.bin_edges || [], counts = data.bin_counts || [];
    await plot(node, [{ type: "bar", x: counts.map((_, i) => (edges[i] + edges[i + 1]) / 2), y: counts, width: counts.map((_, i) => edges[i + 1] - edges[i]) }],
      { xaxis: { title: { text: "Residual" } }, yaxis: { title: { text: "Count" } }, bargap: 0.02 });
  } else {
    const edges = data.bin_edges || [], averages = data.bin_averages || [];
    const centers = averages.map((_, i) => (edges[i] + edges[i + 1]) / 2);
    await plot(node, [
      { type: "scatter", mode: "lines+markers", name: "predicted (average)", x: centers, y: averages, error_y: { type: "data", array: data.bin_errors || [], visible: true } },
      { type: "scatter", mode: "lines", name: "ideal", x: [edges[0], edges[edges.length - 1]], y: [edges[0], edges[edges.length - 1]], line: { dash: "dot", color: "gray" } },
    ], { xaxis: { title: { text: "True value" } }, yaxis: { title: { text: "Predicted value" } } });
  }
  return null;
}
