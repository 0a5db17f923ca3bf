// Coordinator: open alerts with Acknowledge. Used as its own screen and as a panel
// on the huddle page.
import { api, getAll, inBatches, plainError } from "./api.js";
import { announce, clear, h } from "./dom.js";
import { ALERT_KINDS, fmtDateTime, label, personName, where } from "./format.js";

export async function renderAlerts(main) {
  const panel = h("section", { id: "alerts-panel", "aria-labelledby": "alerts-h" });
  clear(main, h("h1", {}, "Alerts"), panel);
  await alertsPanel(panel);
  return null;
}

function describe(alert) {
  const d = alert.details || {};
  switch (alert.kind) {
    case "cluster": {
      const n = d.incident_ids?.length ?? d.count;
      return `${n ?? "Several"} overdoses in ${d.postcode_district || "one area"}${d.hours ? ` within ${d.hours} hours` : ""}. Check for a dangerous batch.`;
    }
    case "contact_overdue": return "The 72-hour contact window has passed without a contact.";
    case "contact_due_soon": return "Less than a day left to make contact.";
    case "repeat_overdose": return "This person has overdosed again within 30 days.";
    case "action_overdue": return `A safety-plan action is past its due date${d.description ? `: ${d.description}` : ""}.`;
    default: return "";
  }
}

export async function alertsPanel(box) {
  const status = h("p", { class: "muted", id: "alerts-status" }, "Loading alerts…");
  const list = h("ul", { class: "list", id: "alerts-list" });
  clear(box, h("h2", { id: "alerts-h" }, "Open alerts"), status, list);
  let alerts;
  try {
    alerts = await getAll("/v1/alerts?state=open");
  } catch (error) {
    status.textContent = plainError(error);
    return;
  }
  // Most urgent kinds first, then newest.
  const order = ["contact_overdue", "cluster", "repeat_overdose", "contact_due_soon", "action_overdue"];
  alerts.sort((a, b) => (order.indexOf(a.kind) - order.indexOf(b.kind)) || (new Date(b.raised_at) - new Date(a.raised_at)));
  const setStatus = () => { status.textContent = alerts.length ? `${alerts.length} open alert${alerts.length === 1 ? "" : "s"}.` : "No open alerts."; };
  setStatus();
  clear(list, alerts.map((alert) => {
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    const button = h("button", { type: "button", class: "btn btn-secondary" }, "Acknowledge");
    const li = h("li", { class: `card${alert.kind === "contact_overdue" || alert.kind === "cluster" ? " is-overdue" : ""}`, "data-alert-id": alert.id, "data-incident-id": alert.incident_id },
      h("h3", {}, label(ALERT_KINDS, alert.kind)),
      alert.incident_id ? h("p", { class: "alert-subject counts" }) : null,
      h("p", {}, describe(alert)),
      h("p", { class: "meta" }, `Raised ${fmtDateTime(alert.raised_at)}`),
      alert.incident_id ? h("p", { class: "meta" }, h("a", { href: `#/incident/${encodeURIComponent(alert.incident_id)}` }, "Open the follow-up")) : null,
      h("div", { class: "btn-row" }, button), error);
    button.setAttribute("aria-label", `Acknowledge: ${label(ALERT_KINDS, alert.kind)}, raised ${fmtDateTime(alert.raised_at)}`);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`/v1/alerts/${encodeURIComponent(alert.id)}/acknowledge`, { method: "POST" });
        alerts = alerts.filter((a) => a.id !== alert.id);
        li.remove();
        setStatus();
        announce(`Acknowledged. ${status.textContent}`);
        status.setAttribute("tabindex", "-1");
        status.focus();
      } catch (err) {
        error.textContent = plainError(err);
        error.hidden = false;
        button.disabled = false;
      }
    });
    return li;
  }));
  // Who and where, so identical kinds can be told apart: a few incident reads at a time.
  const incidentIds = new Set(alerts.map((a) => a.incident_id).filter(Boolean));
  await inBatches([...incidentIds], 4, async (incidentId) => {
    let text = "";
    try {
      const incident = await api(`/v1/incidents/${encodeURIComponent(incidentId)}`);
      text = `${personName(incident.person)} · overdose ${fmtDateTime(incident.occurred_at)}${where(incident) ? ` · ${where(incident)}` : ""}`;
    } finally {
      for (const el of list.querySelectorAll(`li[data-incident-id="${CSS.escape(incidentId)}"] .alert-subject`)) el.textContent = text;
    }
  });
}
