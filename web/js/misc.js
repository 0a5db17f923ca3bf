// Analyst: aggregate report only. Admin: a pointer to the API documentation.
import { api, fieldOf, plainError, plainMessage } from "./api.js";
import { clear, h, kv } from "./dom.js";
import { todayLocal } from "./format.js";

export async function renderReports(main) {
  const today = todayLocal();
  const from = h("input", { type: "date", id: "from", value: `${today.slice(0, 8)}01` });
  const to = h("input", { type: "date", id: "to", value: today });
  const out = h("div", { id: "report", "aria-live": "polite" });
  const form = h("form", { class: "toolbar" },
    h("div", { class: "field" }, h("label", { for: "from" }, "From"), from),
    h("div", { class: "field" }, h("label", { for: "to" }, "To"), to),
    h("button", { type: "submit", class: "btn" }, "Show"));
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  clear(main, h("h1", {}, "Summary report"),
    h("p", { class: "muted" }, "Reports are aggregate only: no person is ever shown, and counts from 1 to 4 appear as “<5”."),
    form, out);

  async function load() {
    clear(out, h("p", { class: "muted" }, "Loading…"));
    try {
      const r = await api(`/v1/reports/summary?${new URLSearchParams({ from: from.value, to: to.value })}`);
      const breakdown = (title, obj) => obj && Object.keys(obj).length
        ? [h("h2", {}, title), kv(Object.entries(obj).map(([k, v]) => [k || "unknown", String(v)]))] : null;
      clear(out, h("div", { class: "card" }, kv([
        ["Incidents", r.incidents], ["People", r.people], ["People with a repeat", r.people_with_repeat],
        ["Contacted within 72 h", r.contacted_within_72h_pct == null ? "n/a" : `${r.contacted_within_72h_pct}%`],
        ["Median hours to first contact", r.median_hours_to_first_contact ?? "n/a"],
        ["Open and overdue", r.open_overdue], ["Naloxone supplied", r.naloxone_supplied],
        ["Referrals made", typeof r.referrals === "object" && r.referrals !== null ? null : r.referrals],
      ].filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [k, String(v)]))),
      typeof r.referrals === "object" ? breakdown("Referrals made", r.referrals) : null,
      breakdown("By source", r.by_source), breakdown("By sex", r.by_sex), breakdown("By age band", r.by_age_band),
      breakdown("By substance", r.by_substance), breakdown("By postcode district", r.by_postcode_district));
    } catch (error) {
      const errs = error.problem?.errors || [];
      clear(out, h("p", { class: "form-error", role: "alert" },
        errs.length ? errs.map((x) => `${fieldOf(x.loc) || "dates"}: ${plainMessage(x.msg)}`).join(" ") : plainError(error)));
    }
  }
  await load();
  return null;
}

export async function renderAdmin(main) {
  clear(main, h("h1", {}, "Administration"),
    h("p", {}, "Administrators manage agencies, users, partner API clients and the audit log through the API. Administrators do not see case data."),
    h("p", {}, h("a", { href: "/docs" }, "Open the API documentation")));
  return null;
}
