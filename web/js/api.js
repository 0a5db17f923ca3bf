// The only way the client talks to the service: the public JSON API with a bearer token.
// The token lives in memory and sessionStorage (gone when the tab closes), never in a URL.

const TOKEN_KEY = "nfod.token";
let token = sessionStorage.getItem(TOKEN_KEY);
let onUnauthorized = () => {};

export function setToken(value) {
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}
export const hasToken = () => Boolean(token);
export function whenUnauthorized(handler) { onUnauthorized = handler; }

/** The request never reached the service (no signal, DNS, connection reset...). */
export class NetworkError extends Error {
  constructor(cause) { super("No connection to the service"); this.cause = cause; }
}

/** The service answered with an error; `problem` is the RFC 9457 body when there is one. */
export class ApiError extends Error {
  constructor(status, problem, headers) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || { title: `HTTP ${status}`, status };
    this.retryAfter = Number(headers?.get("Retry-After")) || null;
  }
}

/**
 * api("/v1/incidents", {method: "POST", json: {...}, headers: {...}})
 * Resolves to the parsed JSON (or the Response when raw: true); rejects with
 * NetworkError or ApiError.
 */
export async function api(path, { method = "GET", json, form, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json, application/problem+json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.headers["Content-Type"] = "application/x-www-form-urlencoded";
    init.body = new URLSearchParams(form).toString();
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new NetworkError(err);
  }
  if (!response.ok) {
    let problem = null;
    const type = response.headers.get("Content-Type") || "";
    if (type.includes("json")) {
      try { problem = await response.json(); } catch { problem = null; }
    }
    const error = new ApiError(response.status, problem, response.headers);
    if (response.status === 401 && token && !path.startsWith("/v1/auth/")) onUnauthorized(error);
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** Every item of a keyset-paged list (follows next_cursor; stops at maxPages). */
export async function getAll(path, { limit = 200, maxPages = 25 } = {}) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < maxPages; page += 1) {
    const url = new URL(path, location.origin);
    url.searchParams.set("limit", String(limit));
    if (cursor) url.searchParams.set("cursor", cursor);
    const body = await api(url.pathname + url.search);
    items.push(...(body.items || []));
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  return items;
}

/** Run fn over items with at most `width` requests in flight (no N+1 storms). */
export async function inBatches(items, width, fn) {
  const queue = [...items];
  const workers = Array.from({ length: Math.min(width, queue.length) }, async () => {
    while (queue.length) {
      const item = queue.shift();
      try { await fn(item); } catch { /* each caller shows its own gaps */ }
    }
  });
  await Promise.all(workers);
}

/** Plain words for a failed request, for people rather than developers. */
export function plainError(error) {
  if (error instanceof NetworkError) return "No connection to the service. Check your signal and try again.";
  if (!(error instanceof ApiError)) return "Something went wrong in this page. Reload and try again.";
  const p = error.problem || {};
  switch (error.status) {
    case 401: return "Your session has ended. Please sign in again.";
    case 403: return "Your role is not allowed to do this.";
    case 404: return "Not found, or not something you are allowed to see.";
    case 409: return p.detail ? `This clashes with something already recorded: ${p.detail}` : "This clashes with something already recorded.";
    case 412: return "Someone else changed this first. Reload to see their version.";
    case 413: return "That is too large to send.";
    case 429: {
      const wait = error.retryAfter ? ` Try again in ${Math.ceil(error.retryAfter / 60)} minute(s).` : " Try again later.";
      return "Too many attempts." + wait;
    }
    default:
      if (error.status >= 500) return "The service had a problem. Your work is safe; try again in a moment.";
      return p.detail || p.title || "The service could not accept this.";
  }
}

/** Field name a problem error points at: ["body", "method"] -> "method", ["body","actions",0] -> "actions". */
export function fieldOf(loc) {
  const parts = (loc || []).filter((part) => typeof part === "string" && part !== "body");
  return parts.length ? parts[0] : null;
}

// Field codes the service may name in its messages, in the words the screens use.
const FIELD_WORDS = {
  attempted_at: "the time of the attempt", method: "the method", outcome: "the outcome",
  notes: "the note", actions: "the actions", referrals: "the referrals",
  assigned_agency_id: "the agency", from: "the start date", to: "the end date", date: "the date",
};

/** A problem's message in plain words: no jargon prefixes, field codes said as words. */
export function plainMessage(msg) {
  let text = String(msg || "is not valid").replace(/^Value error, /, "").replace(/^Assertion failed, /, "");
  text = text.replace(/\b[a-z]+(?:_[a-z]+)+\b|\b(?:from|to)\b(?=')/g, (code) => FIELD_WORDS[code] || code.replaceAll("_", " "));
  return text.charAt(0).toUpperCase() + text.slice(1);
}
