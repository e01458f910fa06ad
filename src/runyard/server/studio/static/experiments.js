// Experiments: every experiment with its runs counted by status and its last activity.
import { get } from "./api.js";
import { ago, clear, h, link, statusBadge, table, when, every } from "./dom.js";

const ORDER = ["Running", "Queued", "Preparing", "Starting", "Provisioning", "NotStarted",
  "NotResponding", "Finalizing", "CancelRequested", "Completed", "Failed", "Canceled"];

export async function experimentsPage(main, params, query, ctx) {
  const archived = query.get("archived") === "1";
  const body = h("div", {});
  const toggle = h("input", { type: "checkbox", id: "show-archived", checked: archived,
    onchange: () => ctx.navigate(toggle.checked ? "/?archived=1" : "/", true) });
  clear(main,
    h("h1", {}, "Experiments"),
    h("div", { class: "bar" }, toggle, h("label", { for: "show-archived" }, "Show archived experiments")),
    body);

  let drawn = null;
  async function load() {
    const found = await get("/experiments/overview", { view_type: archived ? "All" : "ActiveOnly" });
    const seen = JSON.stringify(found);
    if (seen === drawn) return; // unchanged: keep the table (and the keyboard's place)
    drawn = seen;
    if (!found.length) {
      clear(body, h("p", { class: "muted" }, "No experiments yet. Start one with ",
        h("code", {}, "Experiment(ws, \"name\").start_logging()"), " or ",
        h("code", {}, "runyard run submit-script"), "."));
      return;
    }
    const rows = found.map((o) => h("tr", { "data-experiment": o.experiment.name },
      h("td", {}, link(`/experiments/${encodeURIComponent(o.experiment.id)}`, o.experiment.name),
        o.experiment.archived ? h("span", { class: "chip" }, "archived") : null),
      h("td", { class: "num" }, o.runs),
      h("td", {}, ORDER.filter((s) => o.statuses[s]).map((s) =>
        h("span", { class: "chip", title: s }, statusBadge(s), " ", o.statuses[s]))),
      h("td", { title: when(o.last_activity) }, ago(o.last_activity)),
      h("td", {}, when(o.experiment.created))));
    clear(body, table(["Name", "Runs", "Runs by status", "Last activity", "Created"], rows,
      { "aria-label": "Experiments" }));
  }
  await load();
  const poll = every(5000, load);
  return () => poll.stop();
}
