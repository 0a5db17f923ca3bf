// "My follow-ups" (outreach: my agency's open follow-ups) and, for coordinators,
// every open follow-up with an agency filter. Soonest deadline first, live countdowns.
import { api, getAll, plainError } from "./api.js";
import { clear, h } from "./dom.js";
import { countdown, fmtDateTime, label, METHODS, OUTCOMES, personAge, personName, where } from "./format.js";
import * as outbox from "./outbox.js";
import { agencies, state } from "./state.js";

const TICK_MS = 30000;

/** A countdown element that the page's timer keeps up to date (data-due holds the deadline). */
export function countdownEl(dueIso) {
  const el = h("span", { class: "countdown", "data-due": dueIso });
  paintCountdown(el);
  return el;
}
export function paintCountdown(el) {
  const c = countdown(el.dataset.due);
  el.textContent = c.overdue ? `⚠ ${c.text}` : c.text;
  el.classList.toggle("overdue", c.overdue);
  el.classList.toggle("soon", c.soon);
}
export function tickCountdowns(root) {
  const timer = setInterval(() => root.querySelectorAll(".countdown[data-due]").forEach(paintCountdown), TICK_MS);
  return () => clearInterval(timer);
}

export async function renderFollowUps(main) {
  const coordinator = state.me.role === "coordinator";
  const list = h("ul", { class: "list", id: "follow-up-list", "aria-live": "polite", "aria-busy": "true" });
  const status = h("p", { class: "muted", id: "follow-up-status" }, "Loading follow-ups…");
  let agencyFilter = coordinator ? "" : state.me.agency_id;
  const refresh = h("button", { type: "button", class: "btn btn-secondary", onclick: () => load() }, "Refresh");
  const toolbar = h("div", { class: "toolbar" });
  if (coordinator) {
    const select = h("select", { id: "agency-filter" }, h("option", { value: "" }, "All agencies"),
      (await agencies()).map((a) => h("option", { value: a.id }, a.name)));
    select.addEventListener("change", () => { agencyFilter = select.value; load(); });
    toolbar.append(h("div", { class: "field" }, h("label", { for: "agency-filter" }, "Assigned to"), select));
  }
  toolbar.append(refresh);
  clear(main,
    h("h1", {}, coordinator ? "Open follow-ups" : "My follow-ups"),
    h("p", { class: "muted small" }, "People still waiting for a first contact, soonest deadline first. The aim is contact within 72 hours of the overdose."),
    toolbar, status, list);

  if (!coordinator && !agencyFilter) {
    status.textContent = "Your account is not linked to an agency, so no follow-ups can be assigned to you. Ask an administrator.";
    list.setAttribute("aria-busy", "false");
    return null;
  }

  let generation = 0; // ignore answers from an older load
  let cards = new Map();
  const lazy = lazyRunner(4);
  const persons = new Map(); // person id -> the request for it (each person read once per visit)
  async function load() {
    const mine = ++generation;
    lazy.reset();
    list.setAttribute("aria-busy", "true");
    refresh.disabled = true;
    try {
      const query = new URLSearchParams({ status: "awaiting_contact" });
      if (agencyFilter) query.set("assigned_agency_id", agencyFilter);
      const incidents = await getAll(`/v1/incidents?${query}`);
      if (mine !== generation) return;
      incidents.sort((a, b) => new Date(a.contact_due_at) - new Date(b.contact_due_at));
      const overdue = incidents.filter((i) => countdown(i.contact_due_at).overdue).length;
      status.textContent = incidents.length
        ? `${incidents.length} open follow-up${incidents.length === 1 ? "" : "s"}${overdue ? `, ${overdue} overdue` : ""}.`
        : "No open follow-ups. Nothing is waiting for contact.";
      cards = new Map(incidents.map((incident) => [incident.id, card(incident)]));
      clear(list, [...cards.values()].map((c) => c.li));
      // Details beyond the list row (the last attempt; the person record when the
      // notification lacked a name or date of birth) are fetched as each card scrolls into
      // view, at most four requests at a time: a long list never fires a burst per row.
      for (const incident of incidents) {
        const c = cards.get(incident.id);
        const p = incident.person || {};
        const needPerson = incident.person_id && !((p.given_name || p.family_name) && p.date_of_birth);
        lazy.watch(c.li, async () => {
          const contacts = await getAll(`/v1/incidents/${encodeURIComponent(incident.id)}/contacts`);
          if (mine === generation) c.showLast(contacts[contacts.length - 1]);
          if (needPerson) {
            if (!persons.has(incident.person_id)) persons.set(incident.person_id, api(`/v1/persons/${encodeURIComponent(incident.person_id)}`));
            const person = await persons.get(incident.person_id);
            if (mine === generation) c.showPerson(person);
          }
        });
      }
    } catch (error) {
      if (mine === generation) status.textContent = plainError(error);
    } finally {
      if (mine === generation) { list.setAttribute("aria-busy", "false"); refresh.disabled = false; }
    }
  }

  function card(incident) {
    const person = incident.person; // the person block as notified; usually enough for a list
    const heading = h("h3", {});
    const showPerson = (p) => {
      const age = personAge(p);
      heading.textContent = `${personName(p)}${age !== null ? `, ${age}` : ""}`;
    };
    showPerson(person);
    const due = countdownEl(incident.contact_due_at);
    const last = h("p", { class: "meta last-attempt" }, "Last attempt: checking…");
    const pending = h("p", { class: "meta pending" });
    const showPending = () => {
      const queued = outbox.items(incident.id);
      const waiting = queued.filter((i) => i.state === "waiting").length;
      const failed = queued.length - waiting;
      clear(pending,
        waiting ? h("span", { class: "badge waiting" }, `${waiting} waiting to send`) : null, " ",
        failed ? h("span", { class: "badge failed" }, `${failed} not accepted`) : null);
      pending.hidden = !queued.length;
    };
    showPending();
    const li = h("li", { class: `card followup${countdown(incident.contact_due_at).overdue ? " is-overdue" : ""}`, "data-incident-id": incident.id },
      h("a", { class: "card-link", href: `#/incident/${encodeURIComponent(incident.id)}` },
        h("div", { class: "top" },
          heading,
          due),
        h("p", { class: "meta" }, "Overdose ", fmtDateTime(incident.occurred_at), where(incident) ? ` · ${where(incident)}` : ""),
        last, pending));
    return {
      li,
      showLast(contact) {
        last.textContent = contact
          ? `Last attempt: ${label(METHODS, contact.method)}, ${label(OUTCOMES, contact.outcome).toLowerCase()} (${fmtDateTime(contact.attempted_at)})`
          : "No attempts yet";
      },
      showPending,
      showPerson,
    };
  }

  await load();
  // Reload when queued contacts get through (the follow-up may no longer be open).
  let lastWaiting = outbox.items().length;
  const stopOutbox = outbox.onChange(() => {
    const now = outbox.items().length;
    if (now < lastWaiting) load();
    else cards.forEach((c) => c.showPending());
    lastWaiting = now;
  });
  const stopTick = tickCountdowns(main);
  return () => { stopTick(); stopOutbox(); lazy.reset(); generation += 1; };
}

/** Runs a job for each watched element once it comes near the viewport, `width` at a time. */
function lazyRunner(width) {
  let queue = [];
  let active = 0;
  const jobs = new Map();
  const pump = () => {
    while (active < width && queue.length) {
      const job = queue.shift();
      active += 1;
      Promise.resolve().then(job).catch(() => {}).finally(() => { active -= 1; pump(); });
    }
  };
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting && jobs.has(entry.target)) {
        observer.unobserve(entry.target);
        queue.push(jobs.get(entry.target));
        jobs.delete(entry.target);
      }
    }
    pump();
  }, { rootMargin: "400px 0px" });
  return {
    watch(el, job) { jobs.set(el, job); observer.observe(el); },
    reset() { observer.disconnect(); jobs.clear(); queue = []; },
  };
}
