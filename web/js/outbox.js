// Contact attempts survive a bad signal. Every submission becomes an outbox item in
// localStorage with an Idempotency-Key made ONCE; the same key goes with every retry, so
// the service records the attempt exactly once however many times we send it.
//
// Item states: "waiting" (not yet accepted: no signal, 5xx, 409 still in flight, signed out)
// and "failed" (the service refused it with a 4xx problem; kept for the worker to read and
// discard, never retried automatically).

import { api, ApiError, NetworkError } from "./api.js";

const STORE_KEY = "nfod.outbox.v1";
const RETRY_MS = 15000;
const listeners = new Set();
let currentUser = null;
let flushing = null;
const inFlight = new Set(); // keys being sent right now (the form and the timer never race)

function load() {
  try { return JSON.parse(localStorage.getItem(STORE_KEY)) || []; } catch { return []; }
}
function save(items) {
  localStorage.setItem(STORE_KEY, JSON.stringify(items));
  for (const fn of listeners) fn();
}
function update(key, changes) {
  save(load().map((item) => (item.key === key ? { ...item, ...changes } : item)));
}
export function remove(key) {
  save(load().filter((item) => item.key !== key));
}

/** crypto.randomUUID where available (secure contexts), else a v4 UUID from getRandomValues. */
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** This user's items (optionally for one incident), oldest first. */
export function items(incidentId) {
  return load().filter((i) => i.user === currentUser && (!incidentId || i.incident_id === incidentId));
}
export const waitingCount = () => items().filter((i) => i.state === "waiting").length;
export function onChange(fn) { listeners.add(fn); return () => listeners.delete(fn); }

/** Queue a contact attempt; returns the stored item (with its Idempotency-Key). */
export function enqueue(incidentId, body) {
  const item = {
    key: newKey(), user: currentUser, incident_id: incidentId, body,
    state: "waiting", created_at: new Date().toISOString(), tries: 0, last_error: null, problem: null,
  };
  save([...load(), item]);
  return item;
}

/**
 * Try to deliver one item. Returns {sent: contact} | {waiting: reason} | {rejected: ApiError}.
 * Only a definite answer from the service removes or fails the item.
 */
export async function send(item) {
  if (inFlight.has(item.key)) return { waiting: "already sending" };
  inFlight.add(item.key);
  try {
    const contact = await api(`/v1/incidents/${encodeURIComponent(item.incident_id)}/contacts`, {
      method: "POST", json: item.body, headers: { "Idempotency-Key": item.key },
    });
    remove(item.key);
    return { sent: contact };
  } catch (error) {
    const tries = (item.tries || 0) + 1;
    if (error instanceof NetworkError) {
      update(item.key, { tries, last_error: "no connection" });
      return { waiting: "no connection" };
    }
    if (error instanceof ApiError) {
      const s = error.status;
      // Worth retrying: service trouble, a duplicate still in flight, throttling, expired sign-in.
      if (s >= 500 || s === 409 || s === 429 || s === 401 || s === 408) {
        update(item.key, { tries, last_error: `HTTP ${s}` });
        return { waiting: `HTTP ${s}` };
      }
      update(item.key, { tries, state: "failed", last_error: `HTTP ${s}`, problem: error.problem });
      return { rejected: error };
    }
    throw error;
  } finally {
    inFlight.delete(item.key);
  }
}

/** Send every waiting item of the signed-in user, one at a time, oldest first. */
export function flush() {
  if (!currentUser) return Promise.resolve();
  if (!flushing) {
    flushing = (async () => {
      for (const item of items().filter((i) => i.state === "waiting")) {
        const result = await send(item);
        // No signal or no longer signed in: no point trying the rest now.
        if (result.waiting === "no connection" || result.waiting === "HTTP 401") break;
      }
    })();
    // Cleared only after the assignment above (an empty run finishes synchronously).
    const done = () => { flushing = null; };
    flushing.then(done, done);
  }
  return flushing;
}

let soonTimer = null;
function retrySoon(delay) {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(async () => {
    await flush();
    if (items().some((i) => i.state === "waiting") && delay < 8000) retrySoon(delay * 2);
  }, delay);
}

let started = false;
/** Call after sign-in: remembers whose items to send and starts the retry triggers. */
export function start(userId) {
  currentUser = userId;
  if (!started) {
    started = true;
    // The "online" event can fire a moment before requests really get through, so after it
    // keep trying at 1, 2, 4, 8 s while anything is still waiting (the 15 s timer goes on after).
    window.addEventListener("online", () => { flush(); retrySoon(1000); });
    window.addEventListener("storage", (e) => { if (e.key === STORE_KEY) for (const fn of listeners) fn(); });
    setInterval(() => { if (navigator.onLine !== false) flush(); }, RETRY_MS);
  }
  for (const fn of listeners) fn();
  return flush();
}
export function stop() { currentUser = null; for (const fn of listeners) fn(); }
