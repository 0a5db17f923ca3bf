// Coordinator: the morning huddle. The agenda for a date (today by default), new items and
// follow-ups, overdue / due-before-next-huddle flagged in words, repeat-overdose counts,
// "Hold meeting", then per item "Mark discussed" with an agency; print and CSV download.
import { api, fieldOf, plainError, plainMessage } from "./api.js";
import { announce, clear, h } from "./dom.js";
import { FOLLOW_UP_STATUS, fmtDate, fmtDateTime, label, todayLocal, where } from "./format.js";
import { countdownEl, tickCountdowns } from "./followups.js";
import { alertsPanel } from "./alerts.js";
import { agencies, agencyName } from "./state.js";

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

export async function renderHuddle(main, [dateParam]) {
  const date = DATE_RE.test(dateParam || "") ? dateParam : todayLocal();
  const agencyList = await agencies();
  const dateInput = h("input", { type: "date", id: "huddle-date", value: date });
  const go = h("form", { class: "toolbar", id: "date-form" },
    h("div", { class: "field" }, h("label", { for: "huddle-date" }, "Meeting date"), dateInput),
    h("button", { type: "submit", class: "btn btn-secondary" }, "Show agenda"));
  go.addEventListener("submit", (e) => { e.preventDefault(); if (DATE_RE.test(dateInput.value)) location.hash = `#/huddle/${dateInput.value}`; });

  const head = h("div", { id: "agenda-head" });
  const body = h("div", { id: "agenda-body" });
  const alerts = h("section", { class: "card", id: "alerts-panel", "aria-labelledby": "alerts-h" });
  clear(main, h("h1", {}, date === todayLocal() ? "Today's huddle" : "Huddle"), go, head, body, alerts);

  let agenda;
  try {
    agenda = await api(`/v1/huddles/${date}/agenda`);
  } catch (error) {
    clear(head, h("p", { class: "form-error", role: "alert" }, plainError(error)));
    await alertsPanel(alerts);
    return null;
  }

  // Held huddles: the frozen record also carries each item's outcome (discussed, agency, notes).
  function paintHead() {
    const nav = h("div", { class: "btn-row" },
      agenda.previous_huddle_date ? h("a", { class: "btn btn-quiet", href: `#/huddle/${agenda.previous_huddle_date}` }, `← Previous (${agenda.previous_huddle_date})`) : null,
      agenda.next_huddle_date ? h("a", { class: "btn btn-quiet", href: `#/huddle/${agenda.next_huddle_date}`, id: "next-huddle" }, `Next (${agenda.next_huddle_date}) →`) : null);
    const overdue = [...agenda.new, ...agenda.follow_ups].filter((i) => i.overdue).length;
    const holdError = h("p", { class: "form-error", role: "alert", hidden: true, id: "hold-error" });
    const actions = h("div", { class: "btn-row" });
    if (!agenda.held) {
      // Holding freezes the agenda for good, so it takes a second, explicit tap.
      const hold = h("button", { type: "button", class: "btn", id: "hold-meeting" }, "Hold meeting");
      const confirmHold = h("button", { type: "button", class: "btn", id: "confirm-hold" }, "Yes, hold meeting now");
      const cancel = h("button", { type: "button", class: "btn btn-quiet" }, "Cancel");
      const confirmBox = h("div", { class: "status-line warn", id: "hold-confirm", hidden: true },
        h("p", {}, "Holding the meeting freezes this agenda: later notifications go to the next one."),
        h("div", { class: "btn-row" }, confirmHold, cancel));
      hold.addEventListener("click", () => { confirmBox.hidden = false; hold.hidden = true; confirmHold.focus(); });
      cancel.addEventListener("click", () => { confirmBox.hidden = true; hold.hidden = false; hold.focus(); });
      confirmHold.addEventListener("click", async () => {
        confirmHold.disabled = true;
        try {
          await api("/v1/huddles", { method: "POST", json: { date } });
          agenda = await api(`/v1/huddles/${date}/agenda`);
          announce("Meeting held. The agenda is frozen; record each item's discussion.");
          paintHead(); paintBody();
          document.getElementById("held-status")?.focus();
        } catch (error) {
          if (error.status === 409) {
            // Someone else held it a moment ago: show the frozen agenda they made.
            agenda = await api(`/v1/huddles/${date}/agenda`).catch(() => agenda);
            paintHead(); paintBody();
            announce("This meeting had already been held; showing the frozen agenda.");
            return;
          }
          holdError.textContent = plainError(error);
          holdError.hidden = false;
          confirmHold.disabled = false;
        }
      });
      actions.append(hold, h("button", { type: "button", class: "btn btn-secondary", onclick: () => window.print() }, "Print this page"), confirmBox);
    } else {
      actions.append(
        h("button", { type: "button", class: "btn btn-secondary", id: "print-agenda", onclick: () => openPrintable(agenda.huddle_id, holdError) }, "Print agenda"),
        h("button", { type: "button", class: "btn btn-secondary", id: "download-csv", onclick: () => downloadCsv(agenda.huddle_id, date, holdError) }, "Download CSV"));
    }
    clear(head,
      h("p", { class: "counts" }, fmtDate(date)),
      !agenda.working_day ? h("p", { class: "status-line warn" }, "This is not a working day; the team does not normally meet.") : null,
      agenda.held
        ? h("p", { class: "status-line ok", id: "held-status", tabindex: "-1" }, `✓ Meeting held ${fmtDateTime(agenda.held_at)}. This agenda is frozen.`)
        : h("p", { class: "status-line info", id: "held-status", tabindex: "-1" }, "Live agenda: not held yet. Hold the meeting to freeze it and record discussions."),
      h("p", {}, `${agenda.new.length} new, ${agenda.follow_ups.length} follow-up${agenda.follow_ups.length === 1 ? "" : "s"}`,
        overdue ? h("strong", { class: "countdown overdue" }, `, ${overdue} overdue`) : ""),
      actions, holdError, nav);
  }

  function paintBody() {
    const sections = [
      ["new", "New since the last meeting", agenda.new, "Every overdose not yet discussed, oldest first."],
      ["follow-ups", "Follow-ups", agenda.follow_ups, "Discussed before and still open: overdue first, then by deadline."],
    ];
    if (agenda.late?.length) sections.push(["late", "Added after the agenda was frozen", agenda.late, "Reported after this meeting was held and discussed here; once discussed they are follow-ups, not new items, on later agendas."]);
    clear(body, sections.map(([key, title, items, note]) => h("section", { id: `section-${key}`, "aria-labelledby": `h-${key}` },
      h("h2", { id: `h-${key}` }, `${title} (${items.length})`),
      h("p", { class: "muted small section-note" }, note),
      items.length ? h("ul", { class: "list" }, items.map((item) => itemCard(item))) : h("p", { class: "muted" }, "None."))));
  }

  function itemCard(item) {
    const p = item.person;
    const flags = [];
    if (item.overdue) flags.push(h("span", { class: "badge overdue" }, "⚠ Overdue"));
    else if (item.due_before_next_huddle && item.follow_up?.status === "awaiting_contact") flags.push(h("span", { class: "badge due-soon" }, "Due before next huddle"));
    if (p?.risk_level) flags.push(h("span", { class: `badge risk-${p.risk_level}` }, `Risk: ${p.risk_level}`));
    if (p && p.incidents_30d > 1) flags.push(h("span", { class: "badge overdue" }, "Repeat overdose"));
    const awaiting = item.follow_up?.status === "awaiting_contact";
    const cls = ["card", "agenda-item", item.overdue ? "is-overdue" : item.due_before_next_huddle && awaiting ? "is-due-soon" : ""].join(" ");
    return h("li", { class: cls, "data-incident-id": item.incident_id },
      h("div", { class: "top" },
        h("h3", {}, p ? (p.name || "Name not known") : "Unidentified person", p?.age != null ? `, ${p.age}` : ""),
        flags.length ? h("div", { class: "btn-row" }, flags) : null),
      p ? h("p", { class: `counts${p.incidents_30d > 1 ? " repeat" : ""}` },
        `Overdoses: ${p.incidents_30d} in the last 30 days, ${p.incidents_365d} in the last 12 months`) : null,
      h("p", { class: "meta" }, `Overdose ${fmtDateTime(item.occurred_at)}`, where(item) ? ` · ${where(item)}` : "",
        item.substances?.length ? ` · ${item.substances.join(", ")}` : ""),
      h("p", { class: "meta" }, `Notified by ${item.source_agency?.name || "unknown"} · Follow-up: ${label(FOLLOW_UP_STATUS, item.follow_up?.status)}`,
        awaiting ? [" · ", countdownEl(item.contact_due_at)] : ""),
      h("p", { class: "meta" }, h("a", { href: `#/incident/${encodeURIComponent(item.incident_id)}` }, "Open the follow-up")),
      discussionForm(item));
  }

  function discussionForm(item) {
    if (!agenda.held) return h("p", { class: "hint" }, "Hold the meeting to record the discussion.");
    const uid = item.incident_id;
    const current = item.assigned_agency_id || item.follow_up?.assigned_agency_id || "";
    const select = h("select", { id: `agency-${uid}`, name: "assigned_agency_id", "aria-describedby": `err-${uid}` },
      h("option", { value: "" }, "— choose an agency —"),
      agencyList.map((a) => h("option", { value: a.id, selected: a.id === current }, a.name)));
    const notes = h("input", { type: "text", id: `notes-${uid}`, name: "notes", value: item.notes || "", maxlength: 10000 });
    const error = h("p", { class: "field-error", id: `err-${uid}`, role: "alert", hidden: true });
    const done = h("p", { class: "status-line ok discussed-status", hidden: !item.discussed }, "✓ Discussed");
    const button = h("button", { type: "submit", class: "btn" }, item.discussed ? "Update" : "Mark discussed");
    const form = h("form", { class: "item-form", novalidate: true },
      h("div", { class: "field" }, h("label", { for: `agency-${uid}` }, "Follow-up agency"), select),
      h("div", { class: "field" }, h("label", { for: `notes-${uid}` }, "Discussion note ", h("span", { class: "hint" }, "(optional)")), notes),
      button, error, done);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.hidden = true;
      select.classList.remove("invalid");
      const payload = { discussed: true };
      if (select.value) payload.assigned_agency_id = select.value;
      if (notes.value.trim()) payload.notes = notes.value.trim();
      button.disabled = true;
      try {
        const result = await api(`/v1/huddles/${encodeURIComponent(agenda.huddle_id)}/items/${encodeURIComponent(uid)}`, { method: "POST", json: payload });
        item.discussed = true;
        item.assigned_agency_id = result?.assigned_agency_id ?? payload.assigned_agency_id ?? null;
        const name = await agencyName(item.assigned_agency_id);
        done.textContent = `✓ Discussed${name ? `, assigned to ${name}` : ""}`;
        done.hidden = false;
        button.textContent = "Update";
        announce(done.textContent);
      } catch (err) {
        const errs = err.problem?.errors || [];
        error.textContent = errs.length ? errs.map((x) => `${fieldOf(x.loc) === "assigned_agency_id" ? "Agency" : fieldOf(x.loc) || ""}: ${plainMessage(x.msg)}`).join(" ") : plainError(err);
        if (errs.some((x) => fieldOf(x.loc) === "assigned_agency_id")) select.classList.add("invalid");
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    if (item.discussed && current) agencyName(current).then((n) => { if (n) done.textContent = `✓ Discussed, assigned to ${n}`; });
    return form;
  }

  paintHead();
  paintBody();
  await alertsPanel(alerts);
  return tickCountdowns(main);
}

/** The printable agenda needs the bearer token, so fetch it and open it from a blob URL. */
async function openPrintable(huddleId, errorEl) {
  const win = window.open("", "_blank"); // opened now, while we still have the click
  try {
    const response = await api(`/v1/huddles/${encodeURIComponent(huddleId)}/agenda.html`, { raw: true, headers: { Accept: "text/html" } });
    const url = URL.createObjectURL(new Blob([await response.text()], { type: "text/html" }));
    if (win) win.location.href = url; else window.location.href = url;
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    if (win) win.close();
    errorEl.textContent = plainError(error);
    errorEl.hidden = false;
  }
}

async function downloadCsv(huddleId, date, errorEl) {
  try {
    const response = await api(`/v1/huddles/${encodeURIComponent(huddleId)}/agenda.csv`, { raw: true, headers: { Accept: "text/csv" } });
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `huddle-${date}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    announce("Agenda CSV downloaded.");
  } catch (error) {
    errorEl.textContent = plainError(error);
    errorEl.hidden = false;
  }
}
