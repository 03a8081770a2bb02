// The demo's service worker: it keeps every file the page needs (the page, its scripts and
// modules, onnxruntime-web's .mjs and .wasm, the model, the examples) in one cache and answers
// from it first, so that a reload works with the network gone. Responses are cached whole, with
// their headers, so the page stays cross-origin isolated (COOP/COEP) when served from the cache.
//
// Versions: the page sends its file list after each online load (demo.js, `refresh`). Each file
// is revalidated with a conditional request (ETag or Last-Modified); when any changed (a new
// model, new code), a new cache named after a hash of every file's validator is filled, made
// current and the old one deleted; the page then says to reload. Nothing stale outlives the
// next online load.

const PREFIX = "edgemeta-demo-v1-"; // v1: the layout of these caches; bump it to drop them all
const POINTER = "edgemeta-demo-pointer"; // one entry: the name of the current cache
const POINTER_KEY = new URL("current-cache", self.registration.scope).href;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

/** @returns {Promise<string | null>} the current cache's name */
async function currentName() {
  const hit = await (await caches.open(POINTER)).match(POINTER_KEY);
  return hit ? hit.text() : null;
}

async function makeCurrent(name) {
  await (await caches.open(POINTER)).put(POINTER_KEY, new Response(name));
  for (const old of await caches.keys()) {
    if (old.startsWith("edgemeta-demo-") && old !== name && old !== POINTER) await caches.delete(old);
  }
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(cacheFirst(request));
});

/** The cached response, else the network's (only the page's list is kept: see `refresh`). */
async function cacheFirst(request) {
  const name = await currentName();
  const hit = name && (await (await caches.open(name)).match(request, { ignoreSearch: request.mode === "navigate" }));
  return hit || fetch(request);
}

self.addEventListener("message", (event) => {
  if (event.data?.type !== "refresh") return;
  const [port] = event.ports;
  event.waitUntil(refresh(event.data.urls).then((r) => port.postMessage(r), (e) => port.postMessage({ error: String(e?.message ?? e) })));
});

/** What identifies a response's content: its ETag, else Last-Modified and length, else a hash. */
async function validator(response) {
  const h = response.headers;
  if (h.get("ETag")) return `etag ${h.get("ETag")}`;
  if (h.get("Last-Modified")) return `modified ${h.get("Last-Modified")} ${h.get("Content-Length")}`;
  return `sha256 ${await sha256(await response.clone().arrayBuffer())}`;
}

async function sha256(data) {
  const digest = await crypto.subtle.digest("SHA-256", typeof data === "string" ? new TextEncoder().encode(data) : data);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** One file against the network: `same` (304 to the cached copy's validator), `new` or `changed`. */
async function revalidate(url, cache) {
  const cached = cache && (await cache.match(url));
  const headers = {};
  if (cached?.headers.get("ETag")) headers["If-None-Match"] = cached.headers.get("ETag");
  else if (cached?.headers.get("Last-Modified")) headers["If-Modified-Since"] = cached.headers.get("Last-Modified");
  // A first copy may come from the HTTP cache (the page has just downloaded it), revalidated.
  const response = await fetch(url, { headers, cache: cached ? "no-store" : "no-cache" });
  if (response.status === 304 && cached) return { url, response: cached, state: "same" };
  if (!response.ok) throw new Error(`cannot fetch ${url} for offline use: HTTP ${response.status}`);
  return { url, response, state: cached ? "changed" : "new" };
}

/**
 * Bring the cache up to date with `urls` (and whatever it already holds).
 * @param {string[]} urls @returns {Promise<{version: string, updated: boolean, files: number}>}
 */
async function refresh(urls) {
  const oldName = await currentName();
  const old = oldName && (await caches.open(oldName));
  const held = old ? (await old.keys()).map((r) => r.url) : [];
  const all = [...new Set([...urls, ...held])].sort();
  const asked = new Set(urls);
  // A file the page no longer lists (e.g. an example since removed) may be gone: drop it.
  const files = (await Promise.all(all.map((url) => revalidate(url, old).catch((e) => {
    if (asked.has(url)) throw e;
    return null;
  })))).filter(Boolean);
  if (old && !files.some((f) => f.state === "changed")) {
    await Promise.all(files.filter((f) => f.state === "new").map((f) => old.put(f.url, f.response)));
    return { version: oldName.slice(PREFIX.length), updated: false, files: files.length };
  }
  const lines = await Promise.all(files.map(async (f) => `${f.url} ${await validator(f.response)}`));
  const version = (await sha256(lines.join("\n"))).slice(0, 16);
  const cache = await caches.open(PREFIX + version);
  await Promise.all(files.map((f) => cache.put(f.url, f.response)));
  await makeCurrent(PREFIX + version);
  return { version, updated: !!old, files: files.length };
}
