// Dates, countdowns and the words shown for API codes.

export const METHODS = {
  phone: "Phone", text: "Text", home_visit: "Home visit", street: "Street", hospital: "Hospital",
  at_service: "At a service", letter: "Letter", via_partner: "Via partner",
};
export const OUTCOMES = {
  contacted: "Contacted", no_answer: "No answer", not_found: "Not found", message_left: "Message left",
  declined: "Declined", in_hospital: "In hospital", in_custody: "In custody", deceased: "Deceased",
};
export const ACTIONS = {
  naloxone_supplied: "Naloxone supplied", harm_reduction_advice: "Harm reduction advice",
  injecting_equipment: "Injecting equipment", wound_care: "Wound care", bbv_test: "BBV test",
};
export const REFERRALS = {
  drug_treatment: "Drug treatment", same_day_prescribing: "Same-day prescribing", housing: "Housing",
  mental_health: "Mental health", womens_services: "Women's services",
  children_and_families: "Children and families", adult_protection: "Adult protection",
};
export const FOLLOW_UP_STATUS = { awaiting_contact: "Awaiting contact", contacted: "Contacted", closed: "Closed" };
export const RISK_FACTORS = {
  repeat_overdose: "Repeat overdose", recent_prison_release: "Recent prison release",
  no_fixed_address: "No fixed address", children_in_household: "Children in household",
  domestic_abuse: "Domestic abuse", mental_health_crisis: "Mental health crisis",
  recently_left_treatment: "Recently left treatment", polysubstance_use: "Polysubstance use",
  injecting: "Injecting", lives_alone: "Lives alone",
};
export const ALERT_KINDS = {
  contact_overdue: "Contact overdue", contact_due_soon: "Contact due soon", repeat_overdose: "Repeat overdose",
  action_overdue: "Safety-plan action overdue", cluster: "Cluster of overdoses",
};
export const HOSPITAL = { conveyed: "Taken to hospital", declined: "Declined hospital", not_required: "Not required", unknown: "Unknown" };

export const label = (table, code) => table[code] || (code ? String(code).replaceAll("_", " ") : "");

const dateTimeFmt = new Intl.DateTimeFormat("en-GB", {
  weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
});
const dateFmt = new Intl.DateTimeFormat("en-GB", { weekday: "long", day: "numeric", month: "long", year: "numeric" });

export function fmtDateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTimeFmt.format(d);
}

/** "2026-11-24" -> "Tuesday 24 November 2026" (a local calendar date, no time zone shift). */
export function fmtDate(ymd) {
  if (!ymd) return "";
  const [y, m, d] = ymd.split("-").map(Number);
  return dateFmt.format(new Date(y, m - 1, d, 12));
}

/** Today's local date as YYYY-MM-DD. */
export function todayLocal(now = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;
}

/** A Date as RFC 3339 with the device's UTC offset, e.g. 2026-11-23T09:15:00+00:00. */
export function toRfc3339(date) {
  const pad = (n) => String(Math.trunc(Math.abs(n))).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:` +
    `${pad(date.getMinutes())}:${pad(date.getSeconds())}${sign}${pad(offset / 60)}:${pad(offset % 60)}`;
}

/** A Date as the value of an <input type="datetime-local"> (local wall time, minutes). */
export function toLocalInput(date) {
  return toRfc3339(date).slice(0, 16);
}

/**
 * The countdown to a contact deadline, in words that do not rely on colour:
 * {text: "31 h left" | "45 min left" | "overdue by 5 h", overdue, soon}.
 */
export function countdown(dueIso, now = Date.now()) {
  const ms = new Date(dueIso).getTime() - now;
  const minutes = Math.round(Math.abs(ms) / 60000);
  const hours = Math.floor(minutes / 60);
  // Minutes in the last hour, hours within the window, whole days for long-overdue ones.
  const amount = minutes < 60 ? `${minutes} min` : ms < 0 && hours >= 48 ? `${Math.floor(hours / 24)} days` : `${hours} h`;
  if (ms < 0) return { text: `overdue by ${amount}`, overdue: true, soon: false };
  return { text: `${amount} left`, overdue: false, soon: ms < 24 * 3600 * 1000 };
}

/** Age in whole years from a YYYY-MM-DD date of birth. */
export function ageFrom(dob, now = new Date()) {
  if (!dob) return null;
  const [y, m, d] = dob.split("-").map(Number);
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < m || (now.getMonth() + 1 === m && now.getDate() < d)) age -= 1;
  return age;
}

/** Display name of a person resource or agenda person, whatever shape it arrives in. */
export function personName(person) {
  if (!person) return "Unidentified person";
  if (person.name) return person.name;
  const name = [person.given_name, person.family_name].filter(Boolean).join(" ");
  return name || "Name not known";
}

export function personAge(person) {
  if (!person) return null;
  if (typeof person.age === "number") return person.age;
  return ageFrom(person.date_of_birth);
}

/** "Hilltown flats stairwell, DD3 7AA" from either a nested location or flat fields. */
export function where(incident) {
  const loc = incident?.location || {};
  const parts = [loc.description ?? incident?.location_description, loc.postcode ?? incident?.postcode];
  return parts.filter(Boolean).join(", ");
}
