// The studio's router: which page the path names, sign-in when the API asks for it.
import { ApiError, api, get } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { experimentsPage } from "./experiments.js";
import { runsPage } from "./runs.js";
import { runPage } from "./run.js";
import { comparePage } from "./compare.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
let cleanup = null;
let session = null;

const ROUTES = [
  [/^\/$/, () => experimentsPage],
  [/^\/experiments\/([^/]+)$/, () => runsPage],
  [/^\/runs\/([^/]+)$/, () => runPage],
  [/^\/compare$/, () => comparePage],
];

export function navigate(href, replace = false) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  route();
}

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const path = location.pathname;
  if (path === "/login") {
    if (await currentSession()) { navigate(nextPage(), true); return; }
    signIn();
    return;
  }
  for (const [pattern, page] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    clear(main, h("p", { class: "muted" }, "Loading…"));
    const ctx = { session: await currentSession(), navigate };
    if (!ctx.session) { signIn(); return; }
    try {
      const params = match.slice(1).map(decodeURIComponent);
      cleanup = (await page()(main, params, new URLSearchParams(location.search), ctx)) || null;
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      clear(main, h("h1", {}, "Something went wrong"), errorBox(err));
    }
    return;
  }
  clear(main, h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", { href: "/", "data-nav": "" }, "Experiments")));
}

async function currentSession() {
  if (session) return session;
  try {
    session = await get("/whoami");
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    session = null;
  }
  showWho();
  return session;
}

function showWho() {
  if (!session) { clear(who); return; }
  clear(who,
    h("span", { title: `role: ${session.role}` }, `${session.name} (${session.role})`),
    h("button", { type: "button", onclick: signOut }, "Sign out"));
}

async function signOut() {
  try { await api("DELETE", "/session"); } catch { /* signed out either way */ }
  session = null;
  showWho();
  navigate("/login");
}

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function signIn(reason) {
  if (cleanup) { cleanup(); cleanup = null; }
  session = null;
  showWho();
  const used = new URLSearchParams(location.search).get("link") === "used";
  const message = h("p", { class: "error", role: "alert", id: "signin-error" },
    used ? "That sign-in link was used already: each link of runyard studio signs in once. " +
      "Run runyard studio again for a new one, or sign in with a token." : reason || "");
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "current-password", required: true, "aria-describedby": "signin-error" });
  const form = h("form", { class: "login", onsubmit: async (event) => {
    event.preventDefault();
    message.textContent = "";
    try {
      session = await api("POST", "/session", { token: input.value });
      showWho();
      const back = location.pathname === "/login" ? nextPage() : location.pathname + location.search;
      navigate(back, true);
    } catch (err) {
      message.textContent = err.status === 401 || err.status === 400
        ? `This token was refused: ${err.message}` : err.message;
      input.select();
    }
  } },
  h("h1", {}, "Sign in to runyard"),
  h("label", { for: "token" }, "Token"),
  input,
  h("button", { type: "submit", class: "primary" }, "Sign in"),
  message,
  h("p", { class: "muted" }, "Ask an admin of this server for a token (runyard token create), " +
    "or open the link that runyard studio printed."));
  clear(main, form);
  input.focus();
}

window.addEventListener("runyard:signin", () => signIn("Your session ended; sign in again."));
window.addEventListener("popstate", route);
document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  if (a.origin !== location.origin) return;
  event.preventDefault();
  navigate(a.pathname + a.search);
  main.focus();
});
route();
