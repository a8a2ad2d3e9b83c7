/* RAE Edge tablet page, offline part: registers the service worker (/sw.js), shows
   "N notes waiting to send" and, under it, each queued write that failed with its error
   (one the node refused has "Send again" and "Discard"), marks a briefing answered from
   the tablet's saved copy "offline, as of HH:MM", and asks the worker to send the queue when the node may be back.
   Kept apart from app.js: it only reads the page's DOM and the worker's messages. */
"use strict";

(() => {
  if (!("serviceWorker" in navigator)) return;  // plain http off loopback: no offline mode
  const $ = (id) => document.getElementById(id);
  const FLUSH_EVERY_MS = 1000;  // while notes wait: a refused connection costs nothing
  const offline = { count: 0, asOf: null, machine: null, errors: new Map() };
  window.raeOffline = offline;  // for the browser test

  function token() { try { return localStorage.getItem("rae.token"); } catch { return null; } }
  function post(msg) {
    const c = navigator.serviceWorker.controller;
    if (c) c.postMessage(Object.assign({ token: token() }, msg));
  }

  // ---------- the waiting banner ----------
  // The element `id` (made hidden, after `after` or at the top of the page, when missing).
  function placed(id, tag, role, after) {
    let el = $(id);
    if (!el) {
      el = document.createElement(tag);
      el.id = id;
      el.className = id;
      el.setAttribute("role", role);
      el.hidden = true;
      if (after && after.parentNode) after.parentNode.insertBefore(el, after.nextSibling);
      else document.body.prepend(el);
    }
    return el;
  }
  const banner = () => placed("offline-queue", "div", "status", document.querySelector(".topbar"));
  function showCount(n) {
    offline.count = n;
    const el = banner();
    el.hidden = n === 0;
    el.textContent = n === 1 ? "1 note waiting to send" : n + " notes waiting to send";
  }

  // ---------- queued writes that failed: their error, and the user's choice ----------
  const KIND = { corrections: "note", incidents: "incident", "voice-notes": "voice note",
    feedback: "verdict" };
  function errorList() {
    const fresh = !$("offline-errors");
    const el = placed("offline-errors", "ul", "alert", banner());
    if (fresh) {
      el.addEventListener("click", (e) => {
        const btn = e.target.closest("button[data-seq]");
        if (!btn) return;
        post({ type: btn.dataset.act, seq: Number(btn.dataset.seq) });
        btn.disabled = true;
      });
    }
    return el;
  }
  function showErrors() {
    const el = errorList();
    el.replaceChildren();
    for (const e of offline.errors.values()) {
      const li = document.createElement("li");
      li.dataset.seq = String(e.seq);
      const what = "A saved " + (KIND[e.kind] || "note");
      const msg = document.createElement("span");
      msg.textContent = e.failed
        ? what + " was refused by the node: " + e.error.message
        : what + " could not be sent yet (" + e.error.message + "): it is tried again.";
      li.append(msg);
      if (e.failed) {
        for (const [act, label] of [["rae-retry", "Send again"], ["rae-discard", "Discard"]]) {
          const btn = document.createElement("button");
          btn.type = "button";
          btn.dataset.act = act;
          btn.dataset.seq = String(e.seq);
          btn.textContent = label;
          li.append(" ", btn);
        }
      }
      el.append(li);
    }
    el.hidden = offline.errors.size === 0;
  }

  // ---------- "offline, as of HH:MM" on the briefing ----------
  function hhmm(iso) {
    const d = new Date(iso);
    return isNaN(d) ? "?" : String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }
  function mark(asOf) {
    let el = $("offline-mark");
    const briefing = $("briefing");
    if (!el && briefing) {
      el = document.createElement("p");
      el.id = "offline-mark";
      el.className = "offline-mark";
      briefing.prepend(el);
    }
    if (!el) return;
    el.hidden = !asOf;
    el.textContent = asOf ? "offline, as of " + hhmm(asOf) : "";
  }

  // ---------- what the page says after a queued write ----------
  const QUEUED_TEXT = {
    corrections: ["correction-status", "Saved on this tablet: it is sent when the node can be reached."],
    "voice-notes": ["voice-status", "Recorded on this tablet: it is sent (and transcribed) when the node can be reached."],
  };
  function sayQueued(kind) {
    const [id, text] = QUEUED_TEXT[kind] || [];
    if (!id) return;
    // The page writes its own "Saved"/"Sent" once it has read the answer, which may be
    // after this message: for a moment, whatever it writes there is replaced by ours.
    const el = $(id);
    if (!el) return;
    const put = () => { if (el.textContent !== text) el.textContent = text; };
    const watch = new MutationObserver(put);
    watch.observe(el, { childList: true, characterData: true, subtree: true });
    put();
    setTimeout(() => watch.disconnect(), 3000);
  }

  navigator.serviceWorker.addEventListener("message", (e) => {
    const m = e.data || {};
    if (m.type === "rae-queue") {
      showCount(m.count);
      if (m.errors) { offline.errors = new Map(m.errors.map((e) => [e.seq, e])); showErrors(); }
    } else if (m.type === "rae-queued") { showCount(m.count); sayQueued(m.kind); }
    else if (m.type === "rae-briefing") {
      offline.asOf = m.offline ? m.as_of : null;
      offline.machine = m.machine_id;
      // The page renders the briefing after this message: mark it once it is there.
      setTimeout(() => mark(offline.asOf), 0);
      setTimeout(() => mark(offline.asOf), 150);
    } else if (m.type === "rae-rejected") {
      offline.errors.set(m.seq, m);
      showErrors();
    } else if (m.type === "rae-sent") {
      if (offline.errors.delete(m.seq)) showErrors();
    }
  });

  navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(() => navigator.serviceWorker.ready)
    .then(() => { post({ type: "rae-count" }); post({ type: "rae-flush" }); })
    .catch((err) => console.warn("offline mode unavailable:", err && err.message));
  window.addEventListener("online", () => post({ type: "rae-flush" }));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) post({ type: "rae-flush" }); });
  const refused = () => [...offline.errors.values()].filter((e) => e.failed).length;
  setInterval(() => { if (offline.count > refused()) post({ type: "rae-flush" }); }, FLUSH_EVERY_MS);
})();
