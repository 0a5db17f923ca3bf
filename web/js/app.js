// Entry point: sign-in, the role's navigation and a small hash router.
// Routes: #/follow-ups, #/incident/<id>, #/huddle[/<YYYY-MM-DD>], #/alerts, #/reports, #/admin.
import { api, hasToken, NetworkError, plainError, setToken, whenUnauthorized } from "./api.js";
import { clear, h } from "./dom.js";
import * as outbox from "./outbox.js";
import { screensFor, state } from "./state.js";
import { renderFollowUps } from "./followups.js";
import { renderIncident } from "./incident.js";
import { renderHuddle } from "./huddle.js";
import { renderAlerts } from "./alerts.js";
import { renderReports, renderAdmin } from "./misc.js";

const main = document.getElementById("main");
let cleanup = null; // the current view's timers and listeners
let signInMessage = "";

const VIEWS = {
  "follow-ups": renderFollowUps,
  incident: renderIncident,
  huddle: renderHuddle,
  alerts: renderAlerts,
  reports: renderReports,
  admin: renderAdmin,
};
// Screens reachable from another screen (not in the menu) and who may open them.
const EXTRA_ROUTES = { incident: ["outreach", "coordinator"] };

function allowed(role, name) {
  return screensFor(role).some(([n]) => n === name) || (EXTRA_ROUTES[name] || []).includes(role);
}

/** Show a view: run the old view's cleanup, render the new one, move focus to its heading. */
let currentRoute = null;
async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  // Remember where the worker came from (for "Back" links), never an incident page itself.
  if (currentRoute && !currentRoute.startsWith("#/incident/") && currentRoute !== location.hash) state.previousRoute = currentRoute;
  currentRoute = location.hash;
  if (!state.me) { renderSignIn(); return; }
  const [name, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const home = screensFor(state.me.role)[0]?.[0];
  if (!name || !VIEWS[name]) { if (home) location.replace(`#/${home}`); else renderNoScreens(); return; }
  if (!allowed(state.me.role, name)) {
    clear(main, h("h1", { tabindex: "-1" }, "Not available"),
      h("p", {}, "This screen is not available for your role."),
      home ? h("p", {}, h("a", { href: `#/${home}` }, "Go to your start page")) : null);
    return;
  }
  highlightNav(name === "incident" ? "follow-ups" : name);
  clear(main, h("p", { class: "muted" }, "Loading…"));
  try {
    cleanup = (await VIEWS[name](main, params)) || null;
  } catch (error) {
    clear(main, h("h1", { tabindex: "-1" }, "Could not load this page"), h("p", { class: "form-error", role: "alert" }, plainError(error)),
      h("button", { type: "button", class: "btn", onclick: route }, "Try again"));
  }
  const heading = main.querySelector("h1");
  if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: false }); }
}

function highlightNav(name) {
  for (const link of document.querySelectorAll("#nav-list a")) {
    if (link.dataset.screen === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function renderNoScreens() {
  clear(main, h("h1", { tabindex: "-1" }, "Nothing to show"), h("p", {}, "There are no screens in this client for your role."));
}

function renderChrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  if (!state.me) { nav.hidden = true; who.hidden = true; return; }
  clear(document.getElementById("nav-list"), screensFor(state.me.role).map(([name, text]) =>
    h("li", {}, h("a", { href: `#/${name}`, "data-screen": name }, text))));
  nav.hidden = false;
  const roleWords = { outreach: "outreach", coordinator: "coordinator", analyst: "analyst", admin: "administrator" };
  document.getElementById("who-name").textContent = `${state.me.display_name || state.me.username} (${roleWords[state.me.role] || state.me.role})`;
  who.hidden = false;
}

function renderSignIn() {
  renderChrome();
  const error = h("div", { id: "signin-error", class: "form-error", role: "alert", hidden: !signInMessage }, signInMessage);
  const username = h("input", { id: "username", name: "username", type: "text", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
  const password = h("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit", class: "btn btn-block" }, "Sign in");
  const form = h("form", { class: "card signin", novalidate: true },
    h("h1", { tabindex: "-1" }, "Sign in"),
    error,
    h("div", { class: "field" }, h("label", { for: "username" }, "Username"), username),
    h("div", { class: "field" }, h("label", { for: "password" }, "Password"), password),
    button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim() || !password.value) {
      error.textContent = "Enter your username and password.";
      error.hidden = false;
      (username.value.trim() ? password : username).focus();
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const token = await api("/v1/auth/token", { method: "POST", form: { username: username.value.trim(), password: password.value, grant_type: "password" } });
      setToken(token.access_token);
      signInMessage = "";
      await loadMe();
      route();
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong username or password." : plainError(err);
      error.hidden = false;
      button.disabled = false;
      button.textContent = "Sign in";
      password.value = "";
      password.focus();
    }
  });
  clear(main, form);
  username.focus();
}

const ME_KEY = "nfod.me"; // who is signed in (no case data), so the app opens without a signal

async function loadMe() {
  state.me = await api("/v1/users/me");
  sessionStorage.setItem(ME_KEY, JSON.stringify(state.me));
  state.agencies = null;
  renderChrome();
  outbox.start(state.me.id);
}

function signOut(message = "") {
  setToken(null);
  sessionStorage.removeItem(ME_KEY);
  state.me = null;
  state.agencies = null;
  outbox.stop();
  signInMessage = message;
  if (location.hash) history.replaceState(null, "", location.pathname);
  route();
}

document.getElementById("sign-out").addEventListener("click", () => {
  const waiting = outbox.waitingCount();
  if (waiting && !confirm(`${waiting} contact(s) have not been sent yet. They stay on this device and are sent when you sign in again. Sign out anyway?`)) return;
  signOut("You have signed out.");
});

// A token that stops working (expired, user deactivated) sends the worker back to sign in;
// queued contacts stay on the device.
whenUnauthorized(() => { if (state.me) signOut("Your session has ended. Please sign in again."); });

// Connection banner and the unsent-contacts banner, visible on every screen.
function showNetwork() {
  const banner = document.getElementById("net");
  banner.hidden = navigator.onLine !== false;
  banner.textContent = "You are offline. Contacts you log are kept on this device and sent when the signal returns.";
}
function showOutbox() {
  const banner = document.getElementById("outbox-banner");
  const waiting = state.me ? outbox.waitingCount() : 0;
  banner.hidden = waiting === 0;
  banner.textContent = waiting === 1 ? "1 contact waiting to send" : `${waiting} contacts waiting to send`;
}
window.addEventListener("online", showNetwork);
window.addEventListener("offline", showNetwork);
outbox.onChange(showOutbox);
window.addEventListener("hashchange", route);

async function boot() {
  showNetwork();
  if (hasToken()) {
    try { await loadMe(); } catch (error) {
      if (error instanceof NetworkError) {
        // Keep the token: the worker is still signed in, just without a signal. Open the app
        // as the same user so queued contacts are shown and retried when the signal returns.
        const cached = JSON.parse(sessionStorage.getItem(ME_KEY) || "null");
        if (cached) {
          state.me = cached;
          renderChrome();
          outbox.start(cached.id);
          route();
          return;
        }
        clear(main, h("h1", { tabindex: "-1" }, "No connection"),
          h("p", {}, "The service cannot be reached. Contacts waiting on this device are safe."),
          h("button", { type: "button", class: "btn", onclick: boot }, "Try again"));
        return;
      }
      if (error.status !== 401) signInMessage = plainError(error);
      setToken(null);
      state.me = null;
    }
  }
  route();
}
boot();

// The app shell is kept on the device so the client opens without a signal (see sw.js).
if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => {});
