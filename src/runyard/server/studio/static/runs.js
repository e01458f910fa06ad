// The runs of one experiment: a table paged, sorted and filtered on the server.
import { ApiError, get, post, seriesByRun } from "./api.js";
import { clear, duration, errorBox, every, h, link, number, runName, statusBadge, when } from "./dom.js";

const PAGE = 50;
const STATS = ["last", "min", "max"];
// columns sorted by a run attribute: header → attribute
const SORTABLE = { "#": "number", Name: "display_name", Status: "status", "Submitted by": "submitted_by", Started: "start", Duration: "duration" };

export async function runsPage(main, [experimentId], query, ctx) {
  const experiment = await get(`/experiments/${encodeURIComponent(experimentId)}`);
  const state = {
    filter: query.get("filter") || "",
    sort: query.get("sort") || "",
    page: Math.max(0, parseInt(query.get("page") || "0", 10) || 0),
    columns: query.has("metric") ? query.getAll("metric") : null,
    stat: STATS.includes(query.get("stat")) ? query.get("stat") : "last",
  };
  const selected = new Set();
  const expanded = new Map(); // run id → its children (or null while they load)
  let current = { runs: [], count: null, series: {}, names: [] };
  let controller = null;
  let drawnData = null;
  let countedFor = null;

  const search = h("input", { type: "search", id: "run-filter", value: state.filter,
    placeholder: "Filter: tags.team = vision and metrics.acc > 0.9 and status = Completed",
    "aria-label": "Filter runs", "aria-describedby": "filter-help filter-error", autocomplete: "off" });
  const filterError = h("p", { class: "error", id: "filter-error", role: "alert" });
  const info = h("span", { class: "muted", id: "run-count", "aria-live": "polite" });
  const compare = h("button", { type: "button", id: "compare", disabled: true, onclick: () =>
    ctx.navigate(`/compare?runs=${[...selected].map(encodeURIComponent).join(",")}`) }, "Compare");
  const statPick = h("select", { id: "metric-stat", "aria-label": "Metric value shown",
    onchange: () => { state.stat = statPick.value; keepUrl(); render(); } },
  STATS.map((s) => h("option", { value: s, selected: s === state.stat }, s)));
  const metricMenu = h("details", { class: "pick-wrap" }, h("summary", {}, "Metric columns"));
  const prev = h("button", { type: "button", onclick: () => turn(-1) }, "← Previous");
  const next = h("button", { type: "button", onclick: () => turn(1) }, "Next →");
  const tableBox = h("div", { class: "table-wrap" });

  clear(main,
    h("div", { class: "crumbs" }, link("/", "Experiments"), " / "),
    h("h1", {}, experiment.name),
    h("form", { class: "bar", role: "search", onsubmit: (e) => { e.preventDefault(); applyFilter(); } },
      h("div", { class: "grow" }, search),
      h("button", { type: "submit" }, "Filter")),
    h("p", { class: "muted", id: "filter-help" },
      "Clauses joined by and: tags.<key> = value, properties.<key>, metrics.<name> > 0.9, " +
      "status = Running, number < 10; other words match the display name."),
    filterError,
    h("div", { class: "bar" }, info, compare, metricMenu, h("label", { for: "metric-stat" }, "value"), statPick,
      h("span", { class: "pager" }, prev, next)),
    tableBox);

  let typing = null;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(applyFilter, 400); });

  function applyFilter() {
    clearTimeout(typing);
    if (search.value === state.filter) return;
    state.filter = search.value;
    state.page = 0;
    keepUrl();
    load().catch(show);
  }

  function turn(by) {
    state.page = Math.max(0, state.page + by);
    keepUrl();
    load().catch(show);
  }

  function keepUrl() {
    const p = new URLSearchParams();
    if (state.filter) p.set("filter", state.filter);
    if (state.sort) p.set("sort", state.sort);
    if (state.page) p.set("page", state.page);
    for (const name of state.columns || []) p.append("metric", name);
    if (state.stat !== "last") p.set("stat", state.stat);
    const q = p.toString();
    history.replaceState(null, "", `${location.pathname}${q ? `?${q}` : ""}`);
  }

  function order() {
    if (!state.sort) return [];
    const descending = state.sort.startsWith("-");
    const key = descending ? state.sort.slice(1) : state.sort;
    if (key.startsWith("metrics.")) return [{ field: "metric", key: key.slice(8), descending }];
    return [{ field: "attribute", key, descending }];
  }

  // a user's sort, filter or page cancels the load before it; a poll never cancels one
  async function load(poll = false) {
    if (poll && controller) return;
    if (controller) controller.abort();
    const mine = controller = new AbortController();
    try { await loadWith(mine.signal, poll); } finally { if (controller === mine) controller = null; }
  }

  let polls = 0;
  async function loadWith(signal, poll) {
    const body = { query: { experiment_id: experiment.id, top_level_only: true, order: order() }, filter: state.filter || null };
    // the rows are drawn as soon as they come; the number of matches is asked after them
    let runs;
    try {
      runs = await post("/runs/search", { ...body, limit: PAGE, offset: state.page * PAGE }, { signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 400) { filterError.textContent = err.message; return; }
      throw err;
    }
    filterError.textContent = "";
    const childIds = [...expanded.values()].flat().filter(Boolean).map((r) => r.id);
    const series = await seriesByRun([...runs.map((r) => r.id), ...childIds], signal);
    const seen = JSON.stringify([runs, series, [...expanded], state]);
    const known = seen === drawnData;
    current = { ...current, runs, series, names: metricNames(series) };
    const asked = JSON.stringify([state.filter, state.sort, state.page]);
    if (asked !== countedFor) current.count = null; // another question: counting anew
    if (!state.columns) state.columns = current.names.slice(0, 3);
    if (known) { // unchanged: keep the table (and the keyboard's place)
      for (const run of runs) {
        const cell = tableBox.querySelector(`tr[data-run="${CSS.escape(run.id)}"] td.duration`);
        if (cell) cell.textContent = duration(run); // a running run's duration goes on
      }
      // a poll that found the same rows counts again only now and then: a count walks
      // every match, the page only its first rows
      if (poll && (polls++ % 5) && asked === countedFor) return;
    } else {
      render();
    }
    try {
      current.count = (await post("/runs/count", body, { signal })).count;
      countedFor = asked;
    } catch (err) {
      if (err.name === "AbortError") return;
      throw err;
    }
    showCount();
  }

  function showCount() {
    const first = state.page * PAGE;
    const of = current.count === null ? "…" : current.count;
    info.textContent = current.count === 0 || (current.count === null && !current.runs.length)
      ? (current.count === null ? "Counting…" : "No runs match")
      : `Runs ${first + 1}–${first + current.runs.length} of ${of}`;
    prev.disabled = state.page === 0;
    next.disabled = current.count === null ? current.runs.length < PAGE : first + current.runs.length >= current.count;
  }

  function metricNames(series) {
    const names = new Set(state.columns || []);
    for (const byName of Object.values(series)) {
      for (const s of Object.values(byName)) if (s.kind === "scalar" || s.kind === "list") names.add(s.name);
    }
    return [...names].sort((a, b) => a.localeCompare(b));
  }

  function renderMetricMenu() {
    const box = h("div", { class: "metric-pick", role: "group", "aria-label": "Metric columns" },
      current.names.length ? current.names.map((name) => {
        const id = `col-${name}`;
        return h("div", {}, h("input", { type: "checkbox", id, checked: state.columns.includes(name),
          onchange: (e) => {
            state.columns = e.target.checked ? [...state.columns, name] : state.columns.filter((c) => c !== name);
            keepUrl(); render();
          } }), " ", h("label", { for: id }, name));
      }) : h("span", { class: "muted" }, "No metrics on this page"));
    clear(metricMenu, h("summary", {}, `Metric columns (${state.columns.length})`), box);
  }

  function header(label, key) {
    if (!key) return h("th", { scope: "col" }, label);
    const active = state.sort === key || state.sort === `-${key}`;
    const descending = state.sort === `-${key}`;
    return h("th", { scope: "col", "aria-sort": active ? (descending ? "descending" : "ascending") : "none" },
      h("button", { type: "button", class: "sort", onclick: () => {
        state.sort = state.sort === key ? `-${key}` : key;
        state.page = 0; keepUrl(); load().catch(show);
      } }, label, active ? (descending ? " ▼" : " ▲") : ""));
  }

  function row(run, depth) {
    const isChild = depth > 0;
    const kids = expanded.get(run.id);
    const box = h("input", { type: "checkbox", "aria-label": `Select run ${run.number}`, checked: selected.has(run.id),
      onchange: (e) => {
        if (e.target.checked) selected.add(run.id); else selected.delete(run.id);
        compare.disabled = selected.size < 1;
        compare.textContent = selected.size ? `Compare (${selected.size})` : "Compare";
      } });
    const toggle = h("button", { type: "button", class: "expander", "aria-expanded": expanded.has(run.id) ? "true" : "false",
      "aria-label": `Child runs of run ${run.number}`, disabled: kids && kids.length === 0,
      onclick: () => expand(run) }, expanded.has(run.id) ? (kids && kids.length === 0 ? "–" : "▾") : "▸");
    const metrics = state.columns.map((name) => {
      const s = (current.series[run.id] || {})[name];
      const value = s ? s[state.stat] : null;
      return h("td", { class: "num", title: s ? `last ${number(s.last)} · min ${number(s.min)} · max ${number(s.max)} · ${s.count} points` : "" },
        typeof value === "object" && value !== null ? JSON.stringify(value) : number(value));
    });
    const tr = h("tr", { class: isChild ? "child" : "", "data-run": run.id },
      h("td", {}, box, " ", toggle),
      h("td", { class: "num" }, run.number),
      h("td", {}, link(`/runs/${encodeURIComponent(run.id)}`, runName(run))),
      h("td", {}, statusBadge(run.status)),
      h("td", {}, run.submitted_by || ""),
      h("td", {}, when(run.start ?? run.created)),
      h("td", { class: "num duration" }, duration(run)),
      h("td", {}, chips(run.tags, "tags")),
      h("td", {}, chips(run.properties, "properties")),
      metrics);
    const rows = [tr];
    if (kids && kids.length) for (const kid of kids) rows.push(...row(kid, depth + 1));
    return rows;
  }

  function chips(pairs, field) {
    return Object.entries(pairs || {}).slice(0, 8).map(([k, v]) => h("button", { type: "button", class: "chip",
      title: `Filter by ${field}.${k}`, onclick: () => {
        const clause = v === null ? `${field}.${quoteKey(k)}` : `${field}.${quoteKey(k)} = ${quote(v)}`;
        search.value = state.filter ? `${state.filter} and ${clause}` : clause;
        applyFilter();
      } }, v === null ? k : `${k}=${v}`));
  }

  async function expand(run) {
    if (expanded.has(run.id)) { expanded.delete(run.id); render(); return; }
    expanded.set(run.id, null);
    render();
    const kids = await post("/runs/search", { query: { parent_id: run.id }, limit: 500 });
    Object.assign(current.series, await seriesByRun(kids.map((k) => k.id)));
    expanded.set(run.id, kids);
    render();
  }

  function render() {
    drawnData = JSON.stringify([current.runs, current.series, [...expanded], state]);
    renderMetricMenu();
    showCount();
    const heads = [h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Select")),
      ...Object.keys({ "#": 1, Name: 1, Status: 1, "Submitted by": 1, Started: 1, Duration: 1, Tags: 1, Properties: 1 })
        .map((label) => header(label, SORTABLE[label])),
      ...state.columns.map((name) => header(`${name} (${state.stat})`, `metrics.${name}`))];
    const rows = current.runs.flatMap((run) => row(run, 0));
    clear(tableBox, h("table", { "aria-label": "Runs", id: "runs-table", "data-filter": state.filter, "data-sort": state.sort },
      h("thead", {}, h("tr", {}, heads)), h("tbody", {}, rows)));
  }

  function show(err) { clear(tableBox, errorBox(err)); }

  await load();
  const poll = every(2000, async () => {
    for (const [id, kids] of expanded) {
      if (!kids) continue;
      expanded.set(id, await post("/runs/search", { query: { parent_id: id }, limit: 500 }));
    }
    await load(true);
  });
  return () => { poll.stop(); if (controller) controller.abort(); };
}

function quote(text) {
  return `'${String(text).replaceAll("'", "''")}'`;
}

function quoteKey(key) {
  return /^[A-Za-z_][\w-]*$/.test(key) ? key : `\`${key.replaceAll("`", "``")}\``;
}
