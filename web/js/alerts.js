// Coordinator: open alerts with Acknowledge. Used as its own screen and as a panel
// on the huddle page.
import { api, getAll, inBatches, plainError } from "./api.js";
import { announce, clear, h } from "./dom.js";
import { ALERT_KINDS, fmtDateTime, label, personName, where } from "./format.js";

export async function renderAlerts(main) {
  const panel = h("section", { id: "alerts-panel", "aria-labelledby": "alerts-h" });
  clear(main, h("h1", {}, "Alerts"), panel);
  await alertsPanel(panel, { pageSize: 20, filter: true });
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

/**
 * Open alerts, most urgent first, `pageSize` at a time ("Show more" adds the next ones).
 * Only the alerts on screen are looked up for who and where (a few requests at a time).
 */
export async function alertsPanel(box, { pageSize = 5, filter = false } = {}) {
  const status = h("p", { class: "muted", id: "alerts-status" }, "Loading alerts…");
  const list = h("ul", { class: "list", id: "alerts-list" });
  const more = h("button", { type: "button", class: "btn btn-secondary", id: "more-alerts", hidden: true });
  const kindSelect = h("select", { id: "alert-kind" });
  const controls = filter ? h("div", { class: "toolbar" }, h("div", { class: "field" }, h("label", { for: "alert-kind" }, "Kind"), kindSelect)) : null;
  const all = filter ? null : h("p", {}, h("a", { href: "#/alerts" }, "All alerts, by kind"));
  clear(box, h("h2", { id: "alerts-h" }, "Open alerts"), controls, status, list, more, all);
  let alerts;
  try {
    alerts = await getAll("/v1/alerts?state=open", { limit: 500 });
  } catch (error) {
    status.textContent = plainError(error);
    return;
  }
  const order = ["contact_overdue", "cluster", "repeat_overdose", "contact_due_soon", "action_overdue"];
  alerts.sort((a, b) => (order.indexOf(a.kind) - order.indexOf(b.kind)) || (new Date(b.raised_at) - new Date(a.raised_at)));
  const subjects = new Map(); // incident id -> "name · overdose ... · where" (looked up once)
  let kind = "";
  let shown = 0;
  const visible = () => alerts.filter((a) => !kind || a.kind === kind);

  const setStatus = () => {
    const n = visible().length;
    status.textContent = n ? `${n} open alert${n === 1 ? "" : "s"}${kind ? ` of this kind` : ""}.` : "No open alerts.";
    const left = n - shown;
    more.hidden = left <= 0;
    more.textContent = `Show ${Math.min(left, pageSize)} more`;
  };
  const fillKinds = () => {
    const counts = new Map();
    for (const a of alerts) counts.set(a.kind, (counts.get(a.kind) || 0) + 1);
    clear(kindSelect, h("option", { value: "" }, `All kinds (${alerts.length})`),
      order.filter((k) => counts.has(k)).map((k) => h("option", { value: k, selected: k === kind }, `${label(ALERT_KINDS, k)} (${counts.get(k)})`)));
  };

  function card(alert) {
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    const button = h("button", { type: "button", class: "btn btn-secondary", "aria-label": `Acknowledge: ${label(ALERT_KINDS, alert.kind)}, raised ${fmtDateTime(alert.raised_at)}` }, "Acknowledge");
    const li = h("li", { class: `card${alert.kind === "contact_overdue" || alert.kind === "cluster" ? " is-overdue" : ""}`, "data-alert-id": alert.id, "data-incident-id": alert.incident_id },
      h("h3", {}, label(ALERT_KINDS, alert.kind)),
      alert.incident_id ? h("p", { class: "alert-subject counts" }, subjects.get(alert.incident_id) || "") : null,
      h("p", {}, describe(alert)),
      h("p", { class: "meta" }, `Raised ${fmtDateTime(alert.raised_at)}`),
      alert.incident_id ? h("p", { class: "meta" }, h("a", { href: `#/incident/${encodeURIComponent(alert.incident_id)}` }, "Open the follow-up")) : null,
      h("div", { class: "btn-row" }, button), error);
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api(`/v1/alerts/${encodeURIComponent(alert.id)}/acknowledge`, { method: "POST" });
        alerts = alerts.filter((a) => a.id !== alert.id);
        li.remove();
        shown -= 1;
        if (filter) fillKinds();
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
  }

  async function showMore() {
    const page = visible().slice(shown, shown + pageSize);
    shown += page.length;
    list.append(...page.map(card));
    setStatus();
    const ids = [...new Set(page.map((a) => a.incident_id).filter((id) => id && !subjects.has(id)))];
    await inBatches(ids, 4, async (incidentId) => {
      let text = "";
      try {
        const incident = await api(`/v1/incidents/${encodeURIComponent(incidentId)}`);
        text = `${personName(incident.person)} · overdose ${fmtDateTime(incident.occurred_at)}${where(incident) ? ` · ${where(incident)}` : ""}`;
      } finally {
        subjects.set(incidentId, text);
        for (const el of list.querySelectorAll(`li[data-incident-id="${CSS.escape(incidentId)}"] .alert-subject`)) el.textContent = text;
      }
    });
  }

  more.addEventListener("click", () => {
    const firstNew = shown;
    showMore();
    list.children[firstNew]?.querySelector("button")?.focus();
  });
  kindSelect.addEventListener("change", () => { kind = kindSelect.value; shown = 0; clear(list); showMore(); });
  if (filter) fillKinds();
  await showMore();
}
