// One run: details and status history, metrics drawn by kind, the live log, files, children.
import { api, get, post } from "./api.js";
import { plotly } from "./charts.js";
import { drawMetric } from "./metrics.js";
import { bytes, clear, duration, errorBox, every, h, isTerminal, link, number, runName, statusBadge, table, when } from "./dom.js";

const TABS = ["Overview", "Metrics", "Logs", "Files", "Children"];
const LOG_TAIL = 64 * 1024;

export async function runPage(main, [runId], query, ctx) {
  const path = `/runs/${encodeURIComponent(runId)}`;
  if (query.get("tab") === "Metrics") plotly().catch(() => {}); // on its way meanwhile
  let run = await get(path);
  const canChange = ctx.session.role !== "reader";
  const stops = [];
  const tab = TABS.includes(query.get("tab")) ? query.get("tab") : "Overview";

  const status = h("span", { id: "run-status", "aria-live": "polite" }, statusBadge(run.status));
  const cancel = h("button", { type: "button", class: "danger", id: "cancel-run", hidden: !canChange || isTerminal(run.status),
    onclick: async () => {
      if (!confirm(`Cancel run ${run.number} (${runName(run)})? Its processes are stopped.`)) return;
      cancel.disabled = true;
      try { update(await post(`${path}/cancel`, {})); } catch (err) { alert(err.message); cancel.disabled = false; }
    } }, "Cancel run");
  const timing = h("span", { class: "muted", id: "run-duration" });
  const panels = {};
  const tabButtons = TABS.map((name) => h("button", { type: "button", role: "tab", id: `tab-${name}`,
    "aria-controls": `panel-${name}`, "aria-selected": String(name === tab), tabindex: name === tab ? "0" : "-1",
    onclick: () => select(name), onkeydown: (e) => {
      const i = TABS.indexOf(name);
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const next = TABS[(i + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
        select(next); document.getElementById(`tab-${next}`).focus();
      }
    } }, name));
  for (const name of TABS) panels[name] = h("section", { role: "tabpanel", id: `panel-${name}`, "aria-labelledby": `tab-${name}`, hidden: name !== tab });

  clear(main,
    h("div", { class: "crumbs" }, link("/", "Experiments"), " / ",
      link(`/experiments/${encodeURIComponent(run.experiment_id)}`, run.experiment_name),
      run.parent_id ? [" / ", link(`/runs/${encodeURIComponent(run.parent_id)}`, "parent run")] : null),
    h("h1", {}, `Run ${run.number}: ${runName(run)}`),
    h("div", { class: "bar" }, status, timing, cancel),
    h("div", { class: "tabs", role: "tablist", "aria-label": "Run" }, tabButtons),
    Object.values(panels));

  const drawn = new Set();
  function select(name) {
    for (const b of tabButtons) {
      const on = b.textContent === name;
      b.setAttribute("aria-selected", String(on)); b.tabIndex = on ? 0 : -1;
    }
    for (const [n, panel] of Object.entries(panels)) panel.hidden = n !== name;
    const q = new URLSearchParams(location.search); q.set("tab", name);
    history.replaceState(null, "", `${location.pathname}?${q}`);
    if (!drawn.has(name)) { drawn.add(name); DRAW[name]().catch((err) => panels[name].append(errorBox(err))); }
  }

  function update(fresh) {
    const changed = fresh.status !== run.status;
    run = fresh;
    clear(status, statusBadge(run.status));
    cancel.hidden = !canChange || isTerminal(run.status);
    timing.textContent = run.start ? `duration ${duration(run)}` : "";
    if (changed && drawn.has("Overview")) drawOverview().catch(() => {});
  }

  // -- Overview ---------------------------------------------------------------------
  async function drawOverview() {
    const history = await get(`${path}/statuses`);
    const definition = run.run_definition || {};
    const rows = [
      ["Run id", run.id], ["Experiment", run.experiment_name], ["Display name", runName(run)],
      ["Status", statusBadge(run.status)], ["Submitted by", run.submitted_by], ["Target", run.target],
      ["Type", run.type], ["Created", when(run.created)], ["Started", when(run.start)], ["Ended", when(run.end)],
      ["Duration", duration(run)], ["Script", definition.script], ["Arguments", (definition.arguments || []).join(" ")],
      ["Description", run.description],
      ["Snapshot", run.snapshot_id ? h("a", { href: `/api/v1/snapshots/${run.snapshot_id}`, download: `${run.snapshot_id}.zip` }, "Download the snapshot (zip)") : null],
    ].filter(([, v]) => v !== null && v !== undefined && v !== "");
    const error = run.error ? h("div", { id: "run-error" }, h("h2", {}, "Error"),
      h("pre", { class: "log" }, run.error.error?.message || run.error.message || JSON.stringify(run.error, null, 2)),
      h("details", {}, h("summary", {}, "Error details"), h("pre", { class: "log" }, JSON.stringify(run.error, null, 2)))) : null;
    clear(panels.Overview,
      error,
      h("div", { class: "grid" },
        h("div", {}, h("h2", {}, "Details"), h("table", { class: "kv" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))),
        h("div", {},
          h("h2", {}, "Status history"),
          table(["Status", "Time", "After"], history.map((c, i) => h("tr", {},
            h("td", {}, statusBadge(c.status)), h("td", {}, when(c.time)),
            h("td", { class: "num" }, i ? `${(c.time - history[i - 1].time).toFixed(1)} s` : ""))), { id: "status-history" }),
          h("h2", {}, "Tags"), tagEditor(),
          h("h2", {}, "Properties"), pairs(run.properties, "properties"))));
  }

  function pairs(values, id) {
    const entries = Object.entries(values || {});
    if (!entries.length) return h("p", { class: "muted", id }, "None");
    return h("table", { class: "kv", id }, h("tbody", {}, entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v ?? "")))));
  }

  function tagEditor() {
    const box = h("div", { id: "tags" });
    const message = h("p", { class: "error", role: "alert" });
    const draw = () => {
      const entries = Object.entries(run.tags || {});
      const rows = entries.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v ?? ""),
        canChange ? h("td", {}, h("button", { type: "button", "aria-label": `Remove tag ${k}`, onclick: () => change({ remove: [k] }) }, "Remove")) : null));
      const key = h("input", { type: "text", "aria-label": "Tag name", placeholder: "name", required: true });
      const value = h("input", { type: "text", "aria-label": "Tag value", placeholder: "value" });
      clear(box, entries.length ? h("table", { class: "kv" }, h("tbody", {}, rows)) : h("p", { class: "muted" }, "None"),
        canChange ? h("form", { class: "bar", onsubmit: (e) => { e.preventDefault(); change({ set: { [key.value]: value.value } }); } },
          key, value, h("button", { type: "submit" }, "Set tag")) : null, message);
    };
    const change = async (body) => {
      message.textContent = "";
      try { run = await api("PATCH", `${path}/tags`, body); draw(); } catch (err) { message.textContent = err.message; }
    };
    draw();
    return box;
  }

  // -- Metrics ----------------------------------------------------------------------
  // drawn once; while the run goes on, charts fetch their new points and other kinds
  // are drawn again when their number of points changed
  const cards = new Map();
  let metricGrid = null, singlesBox = null, emptyNote = null;
  async function drawMetrics() {
    const series = await post("/series", { run_ids: [run.id] });
    if (!metricGrid) {
      metricGrid = h("div", { class: "grid" });
      singlesBox = h("div", {});
      emptyNote = h("p", { class: "muted" }, "No metrics logged yet.");
      clear(panels.Metrics, emptyNote, singlesBox, metricGrid);
    }
    emptyNote.hidden = series.length > 0;
    const singles = series.filter((s) => s.kind === "scalar" && s.count === 1);
    clear(singlesBox, singles.length ? [h("h2", {}, "Values"), table(["Name", "Value"], singles.map((s) =>
      h("tr", {}, h("td", {}, s.name), h("td", { class: "num" }, number(s.last)))), { id: "single-values" })] : null);
    const rest = series.filter((s) => !singles.includes(s)).sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
    for (const s of rest) {
      const known = cards.get(s.name);
      if (known && known.count === s.count) continue;
      if (known && known.drawn && known.drawn.refresh) {
        known.count = s.count;
        await known.drawn.refresh();
        continue;
      }
      const card = known ? known.card : h("div", { class: "card", "data-metric": s.name });
      if (!known) metricGrid.append(card);
      const entry = { card, count: s.count, drawn: null };
      cards.set(s.name, entry);
      entry.drawn = await drawMetric(card, run, s);
    }
  }

  // -- Logs -------------------------------------------------------------------------
  async function drawLogs() {
    const files = (await get(`${path}/artifacts`)).filter((a) => /(^|\/)(logs|user_logs|system_logs|azureml-logs)\//.test(a.path) || a.path.endsWith(".log") || a.path.endsWith(".txt"));
    const logs = files.filter((a) => /log/.test(a.path));
    const chosen = logs.find((a) => a.path === "user_logs/std_log.txt") || logs[0];
    const pre = h("pre", { class: "log", id: "log-tail", tabindex: "0", "aria-label": "Log", "aria-live": "off" });
    const pick = h("select", { id: "log-file", "aria-label": "Log file", onchange: () => follow(pick.value) },
      logs.map((a) => h("option", { value: a.path, selected: a === chosen }, a.path)));
    clear(panels.Logs, logs.length ? h("div", { class: "bar" }, h("label", { for: "log-file" }, "Log"), pick) : null, pre);
    let source = null;
    const follow = (name) => {
      if (source) source.close();
      pre.textContent = "";
      const size = (logs.find((a) => a.path === name) || {}).size || 0;
      const offset = Math.max(0, size - LOG_TAIL);
      if (offset) pre.textContent = `… (the first ${bytes(offset)} are left out: download the file from Files)\n`;
      const decoder = new TextDecoder();
      const url = `${path}/events?log=${encodeURIComponent(name || "user_logs/std_log.txt")}&offset=${offset}`;
      source = new EventSource(`/api/v1${url}`);
      source.addEventListener("log", (e) => {
        const data = JSON.parse(e.data);
        const bin = Uint8Array.from(atob(data.b64), (c) => c.charCodeAt(0));
        const stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;
        pre.append(decoder.decode(bin, { stream: true }));
        if (stick) pre.scrollTop = pre.scrollHeight;
      });
      source.addEventListener("status", (e) => update(JSON.parse(e.data)));
      source.addEventListener("end", () => {
        source.close();
        pre.append(run.status === "Completed" ? "\nRun is completed." : run.status === "Canceled" ? "\nRun is canceled." :
          run.status === "Failed" ? `\nError occurred: ${run.error?.error?.message || run.error?.message || "the run failed"}` : "");
        if (!pre.textContent.trim()) pre.textContent = "Log is empty or no log files found.";
      });
      source.onerror = () => { if (source.readyState === EventSource.CLOSED) return; };
    };
    follow(chosen ? chosen.path : "user_logs/std_log.txt");
    if (!chosen && !isTerminal(run.status)) pre.textContent = "Waiting for the run's log…\n";
    stops.push(() => source && source.close());
  }

  // -- Files ------------------------------------------------------------------------
  async function drawFiles() {
    const files = await get(`${path}/artifacts`);
    clear(panels.Files,
      run.snapshot_id ? h("p", {}, h("a", { class: "button", href: `/api/v1/snapshots/${run.snapshot_id}`, download: "" }, "Download the snapshot")) : null,
      files.length ? table(["Path", "Size", "Created"], files.map((a) => h("tr", {},
        h("td", {}, h("a", { href: `/api/v1${path}/files/${a.path.split("/").map(encodeURIComponent).join("/")}`, download: a.path.split("/").pop() }, a.path)),
        h("td", { class: "num" }, bytes(a.size)), h("td", {}, when(a.created)))), { id: "files" })
        : h("p", { class: "muted" }, "No files."));
  }

  // -- Children ---------------------------------------------------------------------
  async function drawChildren() {
    const kids = await post("/runs/search", { query: { parent_id: run.id }, limit: 1000 });
    const compare = kids.length > 1 ? h("a", { class: "button", href: `/compare?parent=${encodeURIComponent(run.id)}`, "data-nav": "" }, "Compare the children") : null;
    clear(panels.Children, compare, kids.length ? table(["#", "Name", "Status", "Started", "Duration", "Run id"],
      kids.map((k) => h("tr", { "data-run": k.id }, h("td", { class: "num" }, k.number), h("td", {}, link(`/runs/${encodeURIComponent(k.id)}`, runName(k))),
        h("td", {}, statusBadge(k.status)), h("td", {}, when(k.start)), h("td", { class: "num" }, duration(k)), h("td", {}, k.id))), { id: "children" })
      : h("p", { class: "muted" }, "No child runs."));
  }

  const DRAW = { Overview: drawOverview, Metrics: drawMetrics, Logs: drawLogs, Files: drawFiles, Children: drawChildren };
  update(run);
  select(tab);
  // the live parts: status (and the open tab's data) while the run is going
  let ticks = 0;
  const poll = every(1000, async () => {
    const wasDone = isTerminal(run.status);
    update(await get(path));
    if (wasDone) return;
    ticks += 1;
    for (const name of ["Metrics", "Children", "Files"]) {
      if (drawn.has(name) && !panels[name].hidden && (ticks % 3 === 0 || isTerminal(run.status))) await DRAW[name]();
    }
  });
  stops.push(() => poll.stop());
  return () => stops.forEach((stop) => stop());
}

