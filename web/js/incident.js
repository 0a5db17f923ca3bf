// One follow-up: incident details, the person's safety plan summary, every attempt,
// and "Log contact" (method, outcome, save: three taps for the common case).
import { api, ApiError, fieldOf, getAll, plainError, plainMessage } from "./api.js";
import { announce, clear, h, kv } from "./dom.js";
import {
  ACTIONS, FOLLOW_UP_STATUS, HOSPITAL, label, METHODS, OUTCOMES, REFERRALS, RISK_FACTORS,
  fmtDateTime, personAge, personName, toLocalInput, toRfc3339, where,
} from "./format.js";
import { countdownEl, tickCountdowns } from "./followups.js";
import * as outbox from "./outbox.js";
import { agencyName, state } from "./state.js";

export async function renderIncident(main, [incidentId]) {
  const id = encodeURIComponent(incidentId);
  const incident = await api(`/v1/incidents/${id}`);
  // Person, plan and attempts in parallel (three requests, not one per anything).
  const [person, plan, contacts] = await Promise.all([
    incident.person_id ? api(`/v1/persons/${encodeURIComponent(incident.person_id)}`).catch(() => null) : null,
    incident.person_id ? loadPlan(incident.person_id) : null,
    getAll(`/v1/incidents/${id}/contacts`),
  ]);
  const who = person || incident.person;
  const age = personAge(who);

  const statusBox = h("div", { id: "follow-up-status" });
  const attemptsBox = h("section", { "aria-labelledby": "attempts-h" });
  const planBox = h("section", { "aria-labelledby": "plan-h" });
  const formBox = h("section", { "aria-labelledby": "log-h" });
  const message = h("div", { id: "log-message", role: "status", "aria-live": "polite" });

  async function paintStatus(current) {
    const fu = current.follow_up;
    const parts = [h("span", { class: `badge ${fu.status === "awaiting_contact" ? (fu.overdue ? "overdue" : "due-soon") : "ok"}`, id: "follow-up-state" },
      label(FOLLOW_UP_STATUS, fu.status))];
    if (fu.status === "awaiting_contact") parts.push(" ", countdownEl(current.contact_due_at));
    if (fu.first_contact_at) {
      parts.push(" ", h("span", {}, `First contact ${fmtDateTime(fu.first_contact_at)}${fu.within_window === true ? " (within 72 hours)" : fu.within_window === false ? " (after 72 hours)" : ""}`));
    }
    if (fu.status === "closed" && fu.closed_reason) parts.push(" ", `Closed: ${label({}, fu.closed_reason)}`);
    clear(statusBox, h("p", {}, parts));
  }

  let lastList = contacts; // the last attempts the service sent (kept while offline)
  function paintAttempts(list) {
    lastList = list;
    const queued = outbox.items(incidentId);
    const rows = list.map((c) => h("li", { "data-contact-id": c.id },
      h("strong", {}, `${label(METHODS, c.method)}: ${label(OUTCOMES, c.outcome)}`), " ",
      h("span", { class: "meta" }, fmtDateTime(c.attempted_at)),
      c.actions?.length ? h("p", { class: "meta" }, "Actions: ", c.actions.map((a) => label(ACTIONS, a)).join(", ")) : null,
      c.referrals?.length ? h("p", { class: "meta" }, "Referrals: ", c.referrals.map((r) => label(REFERRALS, r)).join(", ")) : null,
      c.notes ? h("p", {}, c.notes) : null));
    const pending = queued.map((item) => h("li", { class: "pending-attempt", "data-outbox-key": item.key },
      h("strong", {}, `${label(METHODS, item.body.method)}: ${label(OUTCOMES, item.body.outcome)}`), " ",
      h("span", { class: "meta" }, fmtDateTime(item.body.attempted_at)), " ",
      item.state === "waiting"
        ? h("span", { class: "badge waiting" }, "waiting to send")
        : [h("span", { class: "badge failed" }, "✖ not accepted"),
          h("p", { class: "field-error" }, describeProblem(item.problem)),
          h("button", { type: "button", class: "btn btn-danger", onclick: () => { outbox.remove(item.key); announce("Discarded."); } }, "Discard")]));
    clear(attemptsBox,
      h("h2", { id: "attempts-h" }, `Attempts (${list.length + queued.length})`),
      rows.length || pending.length ? h("ul", { class: "attempts card", id: "attempts" }, rows, pending) : h("p", { class: "muted", id: "attempts" }, "No attempts yet."));
  }

  async function refresh() {
    const [fresh, list] = await Promise.all([api(`/v1/incidents/${id}`), getAll(`/v1/incidents/${id}/contacts`)]);
    Object.assign(incident, fresh);
    await paintStatus(incident);
    paintAttempts(list);
  }

  await paintStatus(incident);
  paintAttempts(contacts);
  await paintPlan(planBox, plan, Boolean(incident.person_id));

  const details = kv([
    ["Overdose", fmtDateTime(incident.occurred_at)],
    ["Reported", fmtDateTime(incident.reported_at)],
    ["Contact due", fmtDateTime(incident.contact_due_at)],
    ["Where", where(incident)],
    ["Substances", (incident.substances || []).join(", ")],
    ["Naloxone", incident.naloxone_administered === true ? `Given${incident.naloxone_administered_by ? ` by ${label({}, incident.naloxone_administered_by)}` : ""}` : incident.naloxone_administered === false ? "Not given" : ""],
    ["Hospital", label(HOSPITAL, incident.hospital)],
    ["Notified by", await agencyName(incident.source_agency_id)],
    ["Assigned to", await agencyName(incident.follow_up.assigned_agency_id)],
    ["Phone", who?.phone],
    ["Overdoses on record", person?.incident_count > 1 ? `${person.incident_count} (this is a repeat)` : person?.incident_count],
    ["Notes", incident.notes],
  ]);

  const canLog = ["outreach", "coordinator"].includes(state.me.role) && incident.follow_up.status !== "closed";
  if (canLog) formBox.append(contactForm(incidentId, incident, message, refresh));

  // On a phone the form is below the details: one tap takes the worker straight to it.
  const jump = canLog ? h("button", { type: "button", class: "btn btn-secondary", id: "jump-to-log", onclick: () => {
    const firstChoice = formBox.querySelector("input");
    formBox.scrollIntoView({ behavior: "smooth", block: "start" });
    firstChoice?.focus({ preventScroll: true });
  } }, "Log contact ↓") : null;
  clear(main,
    h("p", {}, h("a", { href: state.previousRoute || "#/follow-ups" }, state.previousRoute?.startsWith("#/huddle") ? "← Back to the huddle" : state.previousRoute?.startsWith("#/alerts") ? "← Back to alerts" : "← Back to follow-ups")),
    h("h1", {}, personName(who), age !== null ? `, ${age}` : ""),
    statusBox, jump,
    h("section", { class: "card", "aria-labelledby": "details-h" }, h("h2", { id: "details-h" }, "The overdose"), details),
    planBox, attemptsBox, formBox);

  // Re-draw pending attempts when the outbox changes; fetch again when one got through.
  let queuedBefore = outbox.items(incidentId).length;
  const stopOutbox = outbox.onChange(() => {
    const queuedNow = outbox.items(incidentId).length;
    if (queuedNow < queuedBefore) refresh().catch(() => {});
    else paintAttempts(lastList); // only the queued ones changed
    queuedBefore = queuedNow;
  });
  const stopTick = tickCountdowns(main);
  return () => { stopOutbox(); stopTick(); };
}

async function loadPlan(personId) {
  try {
    return await api(`/v1/persons/${encodeURIComponent(personId)}/safety-plan`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return null; // no plan yet
    return { error };
  }
}

async function paintPlan(box, plan, hasPerson) {
  const heading = h("h2", { id: "plan-h" }, "Safety plan");
  if (!hasPerson) { clear(box, heading, h("p", { class: "muted" }, "The person is not identified, so there is no plan.")); return; }
  if (!plan) { clear(box, heading, h("p", { class: "muted" }, "No safety plan yet.")); return; }
  if (plan.error) { clear(box, heading, h("p", { class: "form-error" }, plainError(plan.error))); return; }
  const actions = await Promise.all((plan.actions || []).map(async (a) => h("li", {},
    a.done ? "✓ Done: " : "☐ ", a.description,
    a.owner_agency_id ? ` (${await agencyName(a.owner_agency_id)})` : "",
    a.due_on ? ` by ${a.due_on}` : "")));
  clear(box, h("div", { class: "card", id: "safety-plan" }, heading,
    h("p", {}, h("span", { class: `badge risk-${plan.risk_level}` }, `Risk: ${plan.risk_level}`)),
    kv([
      ["Lead agency", await agencyName(plan.lead_agency_id)],
      ["Risks", (plan.risk_factors || []).map((f) => label(RISK_FACTORS, f)).join(", ")],
      ["Review on", plan.review_on],
    ]),
    actions.length ? [h("h3", {}, "Actions"), h("ul", {}, actions)] : h("p", { class: "muted" }, "No actions agreed.")));
}

/** Big-button radio or checkbox group in a fieldset with a legend and an error slot. */
function choiceGroup(name, legend, options, type, hint) {
  const errorId = `${name}-error`;
  return h("fieldset", { "aria-describedby": errorId, "data-field": name },
    h("legend", {}, legend, hint ? h("span", { class: "hint" }, ` ${hint}`) : null),
    h("p", { class: "field-error", id: errorId, hidden: true, "data-error-for": name }),
    h("div", { class: "choices" }, Object.entries(options).map(([value, text]) =>
      h("label", { class: "choice" }, h("input", { type, name, value }), h("span", {}, text)))));
}

function contactForm(incidentId, incident, message, refresh) {
  const when = h("input", { type: "datetime-local", id: "attempted_at", name: "attempted_at", value: toLocalInput(new Date()), "aria-describedby": "attempted_at-hint attempted_at-error" });
  let whenTouched = false;
  when.addEventListener("input", () => { whenTouched = true; });
  const notes = h("textarea", { id: "notes", name: "notes", rows: 3, maxlength: 5000, "aria-describedby": "notes-error" });
  const formError = h("div", { class: "form-error", role: "alert", hidden: true, id: "log-error" });
  const save = h("button", { type: "submit", class: "btn btn-block", id: "save-contact" }, "Save contact");
  const form = h("form", { class: "card", id: "log-contact", novalidate: true },
    h("h2", { id: "log-h" }, "Log contact"),
    formError,
    choiceGroup("method", "How did you try?", METHODS, "radio"),
    choiceGroup("outcome", "What happened?", OUTCOMES, "radio"),
    choiceGroup("actions", "Actions", ACTIONS, "checkbox", "(optional)"),
    choiceGroup("referrals", "Referrals", REFERRALS, "checkbox", "(optional)"),
    h("div", { class: "field" },
      h("label", { for: "attempted_at" }, "When"),
      h("p", { class: "hint", id: "attempted_at-hint" }, "Defaults to now; change it if you are logging an earlier attempt."),
      h("p", { class: "field-error", id: "attempted_at-error", hidden: true, "data-error-for": "attempted_at" }),
      when),
    h("div", { class: "field" },
      h("label", { for: "notes" }, "Note ", h("span", { class: "hint" }, "(optional)")),
      h("p", { class: "field-error", id: "notes-error", hidden: true, "data-error-for": "notes" }),
      notes),
    h("div", { class: "savebar" }, message, save));
  // The last result stays beside the button until the next attempt is started.
  form.addEventListener("change", () => clear(message));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, formError);
    const data = new FormData(form);
    const missing = [];
    if (!data.get("method")) missing.push(["method", "Choose how you tried to reach them."]);
    if (!data.get("outcome")) missing.push(["outcome", "Choose what happened."]);
    let attemptedAt = new Date();
    if (whenTouched) {
      attemptedAt = new Date(when.value); // datetime-local is local wall time
      if (!when.value || Number.isNaN(attemptedAt.getTime())) missing.push(["attempted_at", "Enter the date and time of the attempt."]);
      else if (attemptedAt > new Date()) missing.push(["attempted_at", "The time of the attempt cannot be in the future."]);
    }
    if (missing.length) { showErrors(form, formError, missing); return; }
    const body = {
      attempted_at: toRfc3339(attemptedAt),
      method: data.get("method"),
      outcome: data.get("outcome"),
      actions: data.getAll("actions"),
      referrals: data.getAll("referrals"),
    };
    const note = String(data.get("notes") || "").trim();
    if (note) body.notes = note;

    save.disabled = true;
    save.textContent = "Saving…";
    const item = outbox.enqueue(incidentId, body); // key made once, kept for every retry
    const result = await outbox.send(item);
    save.disabled = false;
    save.textContent = "Save contact";
    if (result.sent) {
      form.reset();
      when.value = toLocalInput(new Date());
      whenTouched = false;
      clear(message, h("p", { class: "status-line ok" }, "✓ Contact saved."));
      announce("Contact saved.");
      await refresh().catch(() => {});
    } else if (result.waiting) {
      form.reset();
      when.value = toLocalInput(new Date());
      whenTouched = false;
      clear(message, h("p", { class: "status-line warn", id: "waiting-message" },
        "Saved on this device, waiting to send. It is sent automatically as soon as the service can be reached."));
      announce("The contact is saved on this device and waiting to send.");
    } else {
      // The service refused it (422 and the like): not queued; show why next to the fields.
      outbox.remove(item.key);
      const problem = result.rejected.problem || {};
      const fieldErrors = (problem.errors || []).map((e) => [fieldOf(e.loc), plainMessage(e.msg)]);
      showErrors(form, formError, fieldErrors, fieldErrors.length ? null : plainError(result.rejected));
    }
  });
  return form;
}

function describeProblem(problem) {
  if (!problem) return "The service did not accept this contact.";
  const errs = (problem.errors || []).map((e) => plainMessage(e.msg));
  return errs.length ? errs.join("; ") : problem.detail || problem.title || "The service did not accept this contact.";
}

function clearErrors(form, formError) {
  formError.hidden = true;
  form.querySelectorAll("[data-error-for]").forEach((el) => { el.hidden = true; el.textContent = ""; });
  form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
}

/** Put each message next to its field (or at the top of the form) and focus the first. */
function showErrors(form, formError, pairs, general = null) {
  const loose = [];
  let first = null;
  for (const [field, msg] of pairs) {
    const slot = field && form.querySelector(`[data-error-for="${field}"]`);
    if (slot) {
      slot.textContent = msg;
      slot.hidden = false;
      const control = form.querySelector(`[name="${field}"]`);
      control?.classList.add("invalid");
      first = first || control;
    } else {
      loose.push(field ? `${field}: ${msg}` : msg);
    }
  }
  if (general) loose.unshift(general);
  if (loose.length || pairs.length) {
    formError.textContent = loose.length ? loose.join(" ") : "Please correct the highlighted answers below.";
    formError.hidden = false;
  }
  (first || formError).focus?.();
  if (!first) { formError.setAttribute("tabindex", "-1"); formError.focus(); }
}
