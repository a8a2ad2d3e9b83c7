/* RAE Edge service worker: the tablet keeps working through Wi-Fi dead spots.

   - App shell (the page, its script, styles, QR decoder): network first, the saved copy
     when the node cannot be reached.
   - Briefings: every briefing the tablet loads is saved (under the code scanned, the
     machine id and its QR payload); after one, the briefings of the other machines of that
     machine's line are fetched and saved too. Offline, a scan answers the saved briefing
     with "offline": {"as_of": ISO time} added, and the page is told.
   - Writes (POST corrections, incidents, voice notes, feedback): each gets an Idempotency-Key if it
     has none. When the node cannot be reached, the request (headers, body, key) is queued
     in IndexedDB and answered 202 {"queued": true}. When the node answers again the queue
     is sent REPLAY_WIDTH at a time (each keeps its key, so a resend after a lost answer
     stores nothing new; no queued write depends on another, so their order does not
     matter). A sent one leaves the queue. One that fails stays queued with its error:
     unreachable, 5xx, 401, 408, 409 or 429 are tried again later (after 5xx, 408, 409 or
     429 nothing is sent for Retry-After or BUSY_PAUSE_MS); another 4xx (the node refused
     it: bad input) waits for the user to send it again (with a new key) or discard it.
   Served at /sw.js (scope /) by routes.pwa; the manifest is /static/manifest.webmanifest. */
"use strict";

const SHELL_CACHE = "rae-shell-v1";
const BRIEFING_CACHE = "rae-briefings-v1";
const SHELL = ["/", "/static/app.css", "/static/app.js", "/static/offline.js", "/static/offline.css",
  "/static/vendor/jsQR.js", "/static/icon.svg", "/static/manifest.webmanifest"];
const WRITES = ["/api/v1/corrections", "/api/v1/incidents", "/api/v1/voice-notes", "/api/v1/feedback"];
const MAX_BRIEFINGS = 300;           // saved briefings kept (oldest dropped)
const LINE_REFRESH_MS = 10 * 60e3;   // a line's briefings are fetched again at most this often
const DB_NAME = "rae-offline";
const QUEUE = "queue";

// ---------- IndexedDB: the queue of writes ----------
let dbOpen = null;  // one connection while the worker lives (reopened if the browser closes it)
function openDb() {
  if (!dbOpen) {
    dbOpen = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(QUEUE, { keyPath: "seq", autoIncrement: true });
      req.onsuccess = () => {
        const db = req.result;
        db.onclose = () => { dbOpen = null; };
        db.onversionchange = () => { db.close(); dbOpen = null; };
        resolve(db);
      };
      req.onerror = () => { dbOpen = null; reject(req.error); };
    });
  }
  return dbOpen;
}
async function tx(mode, fn) {
  const db = await openDb();
  return new Promise((resolve, reject) => {
    const t = db.transaction(QUEUE, mode);
    const out = fn(t.objectStore(QUEUE));
    t.oncomplete = () => resolve(out && "result" in out ? out.result : undefined);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}
const queueAll = () => tx("readonly", (s) => s.getAll());
const queueCount = () => tx("readonly", (s) => s.count());
const queueGet = (seq) => tx("readonly", (s) => s.get(seq));
const queueAdd = (item) => tx("readwrite", (s) => s.add(item));
const queuePut = (item) => tx("readwrite", (s) => s.put(item));
const queueDelete = (seq) => tx("readwrite", (s) => s.delete(seq));

async function tellClients(msg) {
  for (const c of await self.clients.matchAll({ includeUncontrolled: true, type: "window" })) c.postMessage(msg);
}
// What the page shows of a queued write (never its body or token).
function summary(item) {
  return { seq: item.seq, kind: item.kind, at: item.at, failed: !!item.failed,
    error: item.error || null };
}
// The count, and with full: every item that has an error (read from the whole queue).
async function tellCount(full = true) {
  if (!full) {
    const count = await queueCount();
    await tellClients({ type: "rae-queue", count });
    return count;
  }
  const items = await queueAll();
  await tellClients({ type: "rae-queue", count: items.length,
    errors: items.filter((i) => i.error).map(summary) });
  return items.length;
}

// ---------- lifecycle ----------
self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(SHELL_CACHE);
    await Promise.all(SHELL.map((u) => cache.add(new Request(u, { cache: "reload" })).catch(() => null)));
    await self.skipWaiting();
  })());
});
self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("rae-") && name !== SHELL_CACHE && name !== BRIEFING_CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});
let pageToken = null;  // the page's current token: a write queued under a revoked one still goes
self.addEventListener("message", (event) => {
  const t = event.data && event.data.type;
  if (event.data && event.data.token) pageToken = event.data.token;
  if (t === "rae-flush") event.waitUntil(flush());
  else if (t === "rae-count") event.waitUntil(tellCount());
  else if (t === "rae-retry") event.waitUntil(retry(event.data.seq));
  else if (t === "rae-discard") event.waitUntil(discard(event.data.seq));
});

// ---------- routing ----------
self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  if (req.method === "POST" && WRITES.includes(url.pathname)) {
    event.respondWith(write(req));
  } else if (req.method === "GET" && briefingCode(url) !== null) {
    event.respondWith(briefing(req, url));
  } else if (req.method === "GET" && (url.pathname === "/" || url.pathname.startsWith("/static/"))) {
    event.respondWith(shell(req));
  }
});

async function shell(req) {
  const cache = await caches.open(SHELL_CACHE);
  try {
    const r = await fetch(req);
    if (r.ok) await cache.put(req, r.clone());
    return r;
  } catch (err) {
    const hit = await cache.match(req, { ignoreSearch: true });
    if (hit) return hit;
    throw err;
  }
}

// ---------- briefings ----------
function briefingCode(url) {
  const m = url.pathname.match(/^\/api\/v1\/machines\/([^/]+)\/briefing$/);
  if (m) return decodeURIComponent(m[1]);
  if (url.pathname === "/api/v1/briefing") return url.searchParams.get("code");
  return null;
}
const keyFor = (code) => new Request(self.location.origin + "/api/v1/machines/" + encodeURIComponent(code) + "/briefing");

// A saved briefing is shown only to the token that loaded it (hashed): a tablet handed to
// someone of another tenant or role never shows them what the previous token could read.
async function owner(auth) {
  const bytes = new TextEncoder().encode(auth || "");
  return [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function save(codes, body, auth) {
  const cache = await caches.open(BRIEFING_CACHE);
  const savedAt = new Date().toISOString();
  const who = await owner(auth);
  for (const code of new Set(codes.filter(Boolean))) {
    await cache.put(keyFor(code), new Response(JSON.stringify(body), {
      headers: { "Content-Type": "application/json", "X-RAE-Saved-At": savedAt, "X-RAE-Owner": who } }));
  }
  const keys = await cache.keys();
  for (const k of keys.slice(0, Math.max(0, keys.length - MAX_BRIEFINGS))) await cache.delete(k);
}

async function briefing(req, url) {
  const code = briefingCode(url);
  try {
    const r = await fetch(req);
    if (r.ok) {
      const body = await r.clone().json().catch(() => null);
      if (body && !url.searchParams.get("as_of")) {
        const m = body.machine || {};
        await save([code, m.id, m.qr_code], body, req.headers.get("Authorization"));
        await tellClients({ type: "rae-briefing", offline: false, machine_id: m.id || code });
        saveLine(m, req.headers.get("Authorization"));  // not awaited: the scan is answered now
      }
      flush();  // the node answers: send what waits
    }
    return r;
  } catch (err) {
    let hit = await (await caches.open(BRIEFING_CACHE)).match(keyFor(code));
    if (hit && hit.headers.get("X-RAE-Owner") !== await owner(req.headers.get("Authorization"))) hit = null;
    if (!hit) {
      return new Response(JSON.stringify({ error: { code: "offline", message:
        "The node cannot be reached and this tablet has no saved briefing of this machine." } }),
        { status: 503, headers: { "Content-Type": "application/json" } });
    }
    const asOf = hit.headers.get("X-RAE-Saved-At");
    const body = await hit.json();
    body.offline = { as_of: asOf };
    await tellClients({ type: "rae-briefing", offline: true, as_of: asOf,
      machine_id: (body.machine && body.machine.id) || code });
    return new Response(JSON.stringify(body), { status: 200, headers: {
      "Content-Type": "application/json", "X-RAE-Offline-As-Of": asOf } });
  }
}

const lineFetchedAt = new Map();
async function saveLine(machine, auth) {
  if (!machine || !machine.line || !auth) return;
  const last = lineFetchedAt.get(machine.line) || 0;
  if (Date.now() - last < LINE_REFRESH_MS) return;
  lineFetchedAt.set(machine.line, Date.now());
  try {
    const r = await fetch("/api/v1/machines", { headers: { Authorization: auth, Accept: "application/json" } });
    if (!r.ok) return;
    const mates = (await r.json()).filter((m) => m.line === machine.line && m.id !== machine.id);
    for (const m of mates) {  // one at a time: a line's briefings must not crowd the node
      const b = await fetch(keyFor(m.id).url, { headers: { Authorization: auth, Accept: "application/json" } });
      if (b.ok) await save([m.id, m.qr_code], await b.json(), auth);
    }
    await tellClients({ type: "rae-line-saved", line: machine.line, machines: mates.length });
  } catch { lineFetchedAt.delete(machine.line); }  // try again after the next scan
}

// ---------- writes ----------
function uuid() {
  if (self.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

async function write(req) {
  const headers = {};
  for (const [k, v] of req.headers.entries()) headers[k] = v;
  if (!headers["idempotency-key"]) headers["idempotency-key"] = uuid();
  const body = await req.arrayBuffer();
  const item = { url: req.url, method: "POST", headers, body, at: new Date().toISOString(),
    kind: new URL(req.url).pathname.split("/").pop() };
  // Sent at once unless others wait to be sent (the node was unreachable a moment ago: do
  // not make the user wait for a dead network); refused ones waiting for the user don't count.
  if ((await queueCount()) === 0 || !(await queueAll()).some((i) => !i.failed)) {
    try {
      const r = await fetch(req.url, { method: "POST", headers, body });
      if (r.status < 500) return r;  // answered (a 4xx is the page's to show)
    } catch { /* the node cannot be reached: queue it */ }
  }
  await queueAdd(item);
  const count = await tellCount(false);
  await tellClients({ type: "rae-queued", kind: item.kind, count });
  flush();
  return new Response(JSON.stringify({ queued: true, offline: true, waiting: count,
    idempotency_key: headers["idempotency-key"] }), {
    status: 202, headers: { "Content-Type": "application/json", "X-RAE-Queued": "1" } });
}

// ---------- sending the queue ----------
const REPLAY_WIDTH = 6;  // writes in flight at once (a browser's connections per host)
const RETRY_LATER = new Set([401, 408, 409, 429]);  // and 5xx: the same write may pass later
const BUSY_PAUSE_MS = 5000;  // after a 5xx/408/409/429: the node is unwell or busy, let it be

let flushing = null;
let notBefore = 0;  // no automatic send before this time (Date.now() ms)
function flush(force = false) {
  if (!force && Date.now() < notBefore) return Promise.resolve();
  if (!flushing) flushing = sendQueue().finally(() => { flushing = null; });
  return flushing;
}

// Sends every queued write not refused before, REPLAY_WIDTH at a time; writes queued while
// it runs are sent in the same call. Each is tried at most once per call. The first one
// the network fails, or the node answers busy or unwell, stops new sends: the rest wait
// for the next call (the page asks every second while notes wait; after "busy", the
// node's Retry-After or BUSY_PAUSE_MS passes first).
async function sendQueue() {
  const tried = new Set();
  let stop = false;
  while (!stop) {
    const items = (await queueAll()).filter((i) => !i.failed && !tried.has(i.seq));
    if (!items.length) break;
    let next = 0;
    const worker = async () => {
      while (!stop && next < items.length) {
        const item = items[next++];
        tried.add(item.seq);
        const outcome = await sendOne(item);
        if (outcome === "unreachable" || outcome === "busy") stop = true;
      }
    };
    await Promise.all(Array.from({ length: Math.min(REPLAY_WIDTH, items.length) }, worker));
  }
  await tellCount();
}

async function post(item) {
  return fetch(item.url, { method: item.method, headers: item.headers, body: item.body });
}

// One queued write: "sent" (it left the queue), "refused" (it stays, for the user),
// "busy" (it stays, tried again later) or "unreachable" (the network failed: it stays as
// it was).
async function sendOne(item) {
  let r;
  try {
    r = await post(item);
    const fresh = pageToken && "Bearer " + pageToken;
    if (r.status === 401 && fresh && fresh !== item.headers.authorization) {
      // The token it was made under was replaced on this tablet: send it under the new one.
      item.headers.authorization = fresh;
      r = await post(item);
    }
  } catch { return "unreachable"; }
  if (r.ok) {
    await queueDelete(item.seq);
    await tellClients({ type: "rae-sent", kind: item.kind, seq: item.seq });
    await tellCount(false);
    return "sent";
  }
  item.error = { status: r.status, at: new Date().toISOString(), message: await reason(r) };
  const later = r.status >= 500 || RETRY_LATER.has(r.status);
  item.failed = !later;  // refused: the user decides
  await queuePut(item);
  await tellClients(Object.assign({ type: "rae-rejected" }, summary(item)));
  if (!later) return "refused";
  if (r.status !== 401) {  // (401: this token is refused; the page's new one is tried next)
    const wait = Number(r.headers.get("Retry-After")) * 1000 || BUSY_PAUSE_MS;
    notBefore = Math.max(notBefore, Date.now() + Math.min(wait, 10 * 60e3));
  }
  return "busy";
}

// The node's reason in words: its message and the first field it named.
async function reason(r) {
  const err = (await r.json().catch(() => ({}))).error || {};
  const first = Array.isArray(err.details) && err.details[0];
  const field = first && first.message ? " (" + (first.key ? first.key + ": " : "") + first.message + ")" : "";
  return (err.message || "HTTP " + r.status) + field;
}

// The user's answer to a refused write: send it again (after fixing what was wrong on the
// node, e.g. adding the machine), or let it go.
async function retry(seq) {
  const item = await queueGet(seq);
  if (item) {
    delete item.failed;
    // The node kept its refusal under the old key (and stored nothing): a new key asks again.
    item.headers["idempotency-key"] = uuid();
    await queuePut(item);
  }
  await flush(true);
}
async function discard(seq) {
  await queueDelete(seq);
  await tellCount();
}
