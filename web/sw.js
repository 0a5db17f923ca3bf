// Service worker: keeps the app shell (this folder's HTML, CSS and JS) so the client still
// opens on a phone with no signal, and the contacts queued on the device are retried when the
// signal returns. Network first, cache as the fallback, so a new release is picked up at once.
// API requests (/v1/...) are never cached or touched: they go straight to the network.
const CACHE = "nfod-app-v1";
const SHELL = [
  "./", "index.html", "css/app.css",
  "js/app.js", "js/api.js", "js/dom.js", "js/format.js", "js/outbox.js", "js/state.js",
  "js/followups.js", "js/incident.js", "js/huddle.js", "js/alerts.js", "js/misc.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  const scope = new URL(self.registration.scope);
  if (event.request.method !== "GET" || url.origin !== scope.origin || !url.pathname.startsWith(scope.pathname)) return;
  event.respondWith((async () => {
    try {
      const response = await fetch(event.request);
      if (response.ok) {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(event.request, copy));
      }
      return response;
    } catch (error) {
      const cached = await caches.match(event.request, { ignoreSearch: true });
      if (cached) return cached;
      if (event.request.mode === "navigate") return caches.match("./");
      throw error;
    }
  })());
});
