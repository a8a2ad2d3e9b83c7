/* RAE Edge tablet page. Plain browser JavaScript, no build step, no CDN: everything it
   needs is served by the node (the QR decoder is /static/vendor/jsQR.js).
   Data from the node is put on the page with textContent only (never innerHTML). */
"use strict";

(() => {
  const API = "/api/v1";
  const $ = (id) => document.getElementById(id);
  const store = {
    get: (k) => { try { return localStorage.getItem("rae." + k); } catch { return null; } },
    set: (k, v) => { try { v == null ? localStorage.removeItem("rae." + k) : localStorage.setItem("rae." + k, v); } catch { /* private mode */ } },
  };

  const state = {
    token: store.get("token"),
    view: "scan",
    machine: null,        // {id, name, ...} of the machine in hand
    briefing: null,
    ws: null,
    wsMachine: null,
    cursor: null,         // last push cursor seen, for resume without duplicates
    seen: new Set(),      // push message keys already shown
    mine: new Set(),      // corrections saved from this tablet (no banner for those)
    retry: 0,
    errorCode: "",        // the error the machine shows now (ranks its incidents first)
    voice: null,          // {id, poll}
    line: store.get("line") || "",  // the production line this tablet watches ("" none)
    verdicts: new Map(),  // memory id (+ query) -> verdict given here (button stays pressed)
    tallies: new Map(),   // memory id -> {confirmations, plants} from the node's answer
  };
  window.raeState = state; // for debugging on the floor (and the browser test)
  // Drop the live connection and come back with the last cursor, as after a network cut.
  state.reconnect = () => connectPush();

  // ---------- small DOM helper ----------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c == null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const first = (o, ...keys) => { for (const k of keys) if (o && o[k] != null && o[k] !== "") return o[k]; return undefined; };
  const asList = (v) => Array.isArray(v) ? v : (v == null ? [] : [v]);

  function fmtDate(v) {
    if (!v) return "";
    const d = new Date(v);
    if (isNaN(d)) return String(v);
    return d.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" }) +
      " " + d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }
  function fmtDay(v) {
    const d = new Date(v);
    return isNaN(d) ? String(v || "") : d.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
  }

  // ---------- API ----------
  class ApiError extends Error {
    constructor(message, status, code) { super(message); this.status = status; this.code = code; }
  }
  async function api(path, { method = "GET", json, form, query } = {}) {
    if (!state.token) { showToken(); throw new ApiError("no access token on this tablet", 401, "unauthorized"); }
    const headers = { Accept: "application/json", Authorization: "Bearer " + state.token };
    let body;
    if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
    if (form) body = form;
    let url = API + path;
    if (query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v != null && v !== "") q.append(k, v);
      const s = q.toString();
      if (s) url += "?" + s;
    }
    let r;
    try { r = await fetch(url, { method, headers, body }); }
    catch { throw new ApiError("The node cannot be reached. Check the tablet's network.", 0, "network"); }
    let data = null;
    const text = await r.text();
    if (text) { try { data = JSON.parse(text); } catch { data = { raw: text }; } }
    if (r.status === 401) {
      showToken("The node did not accept the token: enter it again.");
      throw new ApiError("the node did not accept the token", 401, "unauthorized");
    }
    if (!r.ok) {
      const err = (data && data.error) || {};
      throw new ApiError(err.message || r.statusText || ("HTTP " + r.status), r.status, err.code);
    }
    return data;
  }

  // ---------- views ----------
  const VIEWS = ["token", "scan", "briefing", "search", "note", "ask"];
  function show(view) {
    if (view !== "scan") stopCamera();
    state.view = view;
    for (const v of VIEWS) $("view-" + v).hidden = v !== view;
    for (const b of document.querySelectorAll(".tabbar button")) {
      if (b.dataset.view === view) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    }
    document.body.dataset.view = view;
    if (view === "note") prepareNote();
    window.scrollTo(0, 0);
  }
  function showToken(message) {
    const err = $("token-error");
    err.hidden = !message;
    err.textContent = message || "";
    show("token");
    $("token-input").focus();
  }

  // ---------- token ----------
  $("form-token").addEventListener("submit", async (e) => {
    e.preventDefault();
    const tok = $("token-input").value.trim();
    if (!tok) return;
    state.token = tok;
    store.set("token", tok);
    $("token-input").value = "";
    // Check it at once so a typo is caught here, not on the first scan.
    try {
      await api("/search", { query: { q: "check", k: 1 } });
    } catch (err) {
      if (err.status === 401) return; // showToken already said so
      // Any other answer (e.g. search not ready) still proves the token was accepted.
    }
    $("token-error").hidden = true;
    connectPush();
    show(state.briefing ? "briefing" : "scan");
    const deepLink = new URLSearchParams(location.search).get("m");
    if (deepLink && !state.briefing) openMachine(deepLink);
  });
  $("btn-settings").addEventListener("click", () => showToken());

  // ---------- scanning ----------
  let stream = null, scanTimer = null, detector = null;
  const video = $("video"), canvas = $("canvas");

  function scanError(msg) { const el = $("scan-error"); el.hidden = !msg; el.textContent = msg || ""; }

  async function makeDetector() {
    // BarcodeDetector where the browser has it (Android Chrome, ChromeOS, Safari 17+);
    // the bundled jsQR everywhere else.
    if ("BarcodeDetector" in window) {
      try {
        const formats = await window.BarcodeDetector.getSupportedFormats();
        if (formats.includes("qr_code")) return new window.BarcodeDetector({ formats: ["qr_code"] });
      } catch { /* fall through */ }
    }
    return null;
  }

  function decodeFrame(source, w, h) {
    const scale = Math.min(1, 800 / Math.max(w, h));
    const cw = Math.max(1, Math.round(w * scale)), ch = Math.max(1, Math.round(h * scale));
    canvas.width = cw; canvas.height = ch;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(source, 0, 0, cw, ch);
    const img = ctx.getImageData(0, 0, cw, ch);
    const hit = window.jsQR ? window.jsQR(img.data, cw, ch, { inversionAttempts: "attemptBoth" }) : null;
    return hit && hit.data ? hit.data : null;
  }

  async function scanOnce() {
    if (!stream || video.readyState < 2) return null;
    if (detector) {
      try {
        const codes = await detector.detect(video);
        if (codes.length) return codes[0].rawValue;
      } catch { detector = null; }
    }
    return decodeFrame(video, video.videoWidth, video.videoHeight);
  }

  async function startCamera() {
    scanError("");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      scanError(window.isSecureContext
        ? "This browser gives no camera access: use “Photo of label” or type the code."
        : "The live camera needs a secure (https) address: use “Photo of label” or type the code.");
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: false,
      });
    } catch (err) {
      scanError("The camera could not be opened (" + (err.name || err) + "): use “Photo of label” or type the code.");
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    detector = await makeDetector();
    state.decoder = detector ? "BarcodeDetector" : "jsQR";
    $("btn-camera").textContent = "Stop camera";
    $("scan-hint").textContent = "Looking for a QR code…";
    $("scan-box").dataset.scanning = "1";
    const tick = async () => {
      if (!stream) return;
      let code = null;
      try { code = await scanOnce(); } catch { code = null; }
      if (code) { onScanned(code); return; }
      scanTimer = setTimeout(tick, 120);
    };
    tick();
  }

  function stopCamera() {
    clearTimeout(scanTimer);
    scanTimer = null;
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
    video.srcObject = null;
    delete $("scan-box").dataset.scanning;
    $("btn-camera").textContent = "Start camera";
  }

  // A label made with `rae-edge qr-labels --link` holds a link to this page (…/?m=ID).
  function codeFrom(raw) {
    try {
      const u = new URL(raw);
      const m = u.searchParams.get("m");
      if (m && (u.protocol === "https:" || u.protocol === "http:")) return m;
    } catch { /* not a URL: the payload itself */ }
    return raw;
  }

  function onScanned(raw) {
    const code = codeFrom(raw);
    $("scan-box").classList.add("found");
    $("scan-hint").textContent = "Found: " + code;
    if (navigator.vibrate) navigator.vibrate(80);
    stopCamera();
    setTimeout(() => $("scan-box").classList.remove("found"), 800);
    openMachine(code);
  }

  $("btn-camera").addEventListener("click", () => (stream ? stopCamera() : startCamera()));
  $("photo-input").addEventListener("change", async (e) => {
    // A photo from the tablet's own camera app works even without https.
    const file = e.target.files && e.target.files[0];
    e.target.value = "";
    if (!file) return;
    scanError("");
    try {
      const bmp = await createImageBitmap(file);
      let code = null;
      const det = await makeDetector();
      if (det) { const found = await det.detect(bmp).catch(() => []); if (found.length) code = found[0].rawValue; }
      if (!code) code = decodeFrame(bmp, bmp.width, bmp.height);
      if (code) onScanned(code);
      else scanError("No QR code found in that photo: hold the tablet closer and try again, or type the code.");
    } catch (err) {
      scanError("That photo could not be read (" + (err.message || err) + ").");
    }
  });
  $("form-code").addEventListener("submit", (e) => {
    e.preventDefault();
    const code = $("code-input").value.trim();
    if (code) openMachine(code);
  });

  // ---------- briefing ----------
  function fetchBriefing(code) {
    const query = { error_code: state.errorCode || undefined };
    // A payload with "/" in it (a URL) goes in the query form: proxies and routers
    // decode %2F in paths.
    if (/[/\\]/.test(code)) return api("/briefing", { query: Object.assign({ code }, query) });
    return api("/machines/" + encodeURIComponent(code) + "/briefing", { query });
  }
  async function openMachine(code) {
    scanError("");
    if (!state.machine || (code !== state.machine.id && code !== state.machine.qr_code)) state.errorCode = "";
    try {
      const b = await fetchBriefing(code);
      state.briefing = b;
      state.machine = b.machine || { id: code, name: code };
      store.set("machine", state.machine.id);
      renderBriefing(b);
      connectPush();
      show("briefing");
    } catch (err) {
      if (err.status === 401) return;
      const msg = err.status === 404
        ? "No machine with the code “" + code + "” on this node. " + err.message
        : "Could not load the briefing: " + err.message;
      scanError(msg);
      show("scan");
    }
  }
  async function refreshBriefing() {
    if (!state.machine) return;
    try {
      const b = await fetchBriefing(state.machine.id);
      state.briefing = b;
      renderBriefing(b);
    } catch { /* keep what is shown */ }
  }
  let refreshTimer = null;
  function refreshSoon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(refreshBriefing, 300); }

  function fixOf(inc) { return first(inc, "action", "fix", "resolution"); }

  function renderCorrection(c) {
    return h("div", { class: "correction", "data-correction-id": c.id },
      h("span", { class: "what" }, c.method === "voice" ? "Correction (voice)" : "Correction"),
      h("span", { class: "meta" }, " · " + [fmtDay(first(c, "valid_from", "created_at")), c.author].filter(Boolean).join(" · ")),
      h("div", { class: "text" }, c.text),
      verdictRow(c.id, { inBriefing: true }));
  }

  function renderIncident(inc) {
    const corrections = asList(first(inc, "corrections", "amended_by"));
    const fix = fixOf(inc);
    const superseded = corrections.length > 0 || inc.superseded === true || asList(inc.superseded_by).length > 0;
    const code = first(inc, "error_code", "code");
    return h("article", { class: "incident", "data-incident-id": inc.id },
      h("div", { class: "incident-head" },
        h("span", { class: "date" }, fmtDate(first(inc, "occurred_at", "at"))),
        code ? h("span", { class: "badge code" }, code) : null,
        inc.relevance === "error_code" ? h("span", { class: "badge count" }, "same error as now") : null,
        inc.relevance === "recurring" ? h("span", { class: "badge superseded" }, "recurring") : null,
        inc.source ? h("span", { class: "meta" }, inc.source) : null),
      h("div", { class: "symptom" }, first(inc, "symptom", "text") || ""),
      fix ? h("div", { class: "fix" + (superseded ? " superseded" : "") },
        h("span", { class: "what" }, "Fixed by:"),
        h("span", { class: "text" }, fix),
        superseded ? h("span", { class: "badge superseded" }, " superseded ") : null) : null,
      corrections.map(renderCorrection),
      verdictRow(inc.id, { inBriefing: true, confirmations: inc.confirmations, plants: inc.confirmed_plants }),
      h("div", { class: "incident-actions" },
        h("button", { class: "btn secondary small", type: "button", "data-action": "correct",
          onclick: () => { show("note"); $("note-target").value = inc.id; } }, "Correct this")));
  }

  function renderRecurring(list) {
    if (!list.length) return null;
    return h("div", { class: "recurring" },
      h("h3", {}, "Recurring problems"),
      h("ul", {}, list.map((r) => {
        const label = first(r, "label", "error_code", "code", "symptom", "text") || "problem";
        const n = first(r, "count", "occurrences", "n");
        const last = first(r, "last_at", "last_seen", "last");
        return h("li", {}, h("span", { class: "badge count" }, (n != null ? n + "×" : "again")), " ",
          h("strong", {}, label),
          r.symptom && r.symptom !== label ? " – " + r.symptom : "",
          last ? h("span", { class: "meta" }, " · last " + fmtDay(last)) : "");
      })));
  }

  function renderAlert(a) {
    const text = first(a, "message", "text", "summary", "description") || JSON.stringify(a);
    return h("div", { class: "alert", role: "alert" },
      h("span", { class: "what" }, "Drift alert" + (first(a, "error_code", "metric") ? ": " + first(a, "error_code", "metric") : "") + " "),
      h("span", {}, text),
      first(a, "since", "created_at", "opened_at", "at")
        ? h("div", { class: "meta" }, "open since " + fmtDate(first(a, "since", "created_at", "opened_at", "at"))) : null);
  }

  function renderSection(s) {
    const title = [first(s, "document_title", "title", "document"), s.section].filter(Boolean).join(" – ");
    const text = h("div", { class: "text clamp" }, first(s, "text", "snippet") || "");
    const more = h("button", { class: "btn ghost small", type: "button",
      onclick: () => { text.classList.toggle("clamp"); more.textContent = text.classList.contains("clamp") ? "Show more" : "Show less"; } },
      "Show more");
    return h("article", { class: "section", "data-section-id": s.id },
      h("h3", {}, title || "Manual"),
      asList(s.superseded_by).length ? h("span", { class: "badge superseded" }, "the field corrected this") : null,
      s.page ? h("div", { class: "meta" }, "page " + s.page) : null,
      asList(s.error_codes).length ? h("div", {}, asList(s.error_codes).map((c) => h("span", { class: "badge code" }, c))) : null,
      text, more);
  }

  function renderBriefing(b) {
    const m = b.machine || state.machine || {};
    $("briefing-empty").hidden = true;
    $("briefing").hidden = false;
    $("b-name").textContent = m.name || m.id;
    $("b-meta").textContent = [m.id, m.line ? "line " + m.line : null, m.site].filter(Boolean).join(" · ");
    const chip = $("machine-chip");
    chip.hidden = false;
    chip.textContent = (m.name || m.id) + (m.name && m.name !== m.id ? " · " + m.id : "");
    const summary = first(b, "summary", "summary_text") || "";
    $("b-summary").textContent = summary;
    $("b-summary").hidden = !summary;
    const drift = asList(first(b, "drift_alerts", "alerts"));
    $("b-drift").replaceChildren(...drift.map(renderAlert));
    const rec = renderRecurring(asList(first(b, "recurring", "recurring_problems")));
    $("b-recurring").replaceChildren(...(rec ? [rec] : []));
    const incidents = asList(first(b, "incidents", "history"));
    const total = typeof b.incident_count === "number" ? b.incident_count : incidents.length;
    $("b-incidents-h").textContent = "Past incidents (" + (total > incidents.length ? incidents.length + " of " + total : incidents.length) + ")";
    $("b-error-code").value = b.error_code || state.errorCode || "";
    $("b-incidents").replaceChildren(...(incidents.length ? incidents.map(renderIncident)
      : [h("p", { class: "meta" }, "No incidents recorded for this machine yet.")]));
    // Corrections not attached to an incident shown above: general notes on the machine.
    const shown = new Set(incidents.map((i) => i.id));
    const notes = asList(first(b, "corrections", "field_notes", "notes"))
      .filter((c) => c && (!c.target_id || !shown.has(c.target_id)));
    $("b-notes-h").hidden = !notes.length;
    $("b-notes").replaceChildren(...notes.map(renderCorrection));
    const sections = asList(first(b, "manual_sections", "manuals", "sections"));
    $("b-manual-h").hidden = !sections.length;
    $("b-manual").replaceChildren(...sections.map(renderSection));
    $("note-machine").textContent = "Machine: " + (m.name || m.id);
    showLineButton(m);
  }
  $("btn-b-refresh").addEventListener("click", refreshBriefing);
  $("form-error-code").addEventListener("submit", (e) => {
    e.preventDefault();
    state.errorCode = $("b-error-code").value.trim().toUpperCase();
    refreshBriefing();
  });
  $("btn-b-note").addEventListener("click", () => show("note"));
  $("machine-chip").addEventListener("click", () => show("briefing"));

  // ---------- live push ----------
  function setLive(kind, text) { const el = $("live"); el.className = "live " + kind; el.textContent = text; }

  // The socket watches the machine in hand and the tablet's line (either may be absent).
  function connectPush() {
    if (!state.token || (!state.machine && !state.line)) return;
    const mid = state.machine ? state.machine.id : null;
    const key = (mid || "") + "\n" + state.line;
    if (state.ws && state.wsKey === key && state.ws.readyState <= 1) return;
    if (state.ws) { state.ws.onclose = null; state.ws.close(); }
    // Resume from the last cursor only for the same watch: a new one starts now.
    if (state.wsKey !== key) { state.cursor = null; }
    state.wsKey = key;
    state.wsMachine = mid;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ token: state.token });
    if (mid) q.append("machine_id", mid);
    if (state.line) q.append("line", state.line);
    if (state.cursor != null) q.set("cursor", state.cursor);
    const ws = new WebSocket(proto + "//" + location.host + API + "/push?" + q.toString());
    state.ws = ws;
    setLive("wait", "Connecting…");
    ws.onopen = () => { state.retry = 0; setLive("on", "Live"); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      onPush(msg);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      setLive("off", "Offline");
      if (ev.code === 4401 || ev.code === 1008) { showToken("The node did not accept the token for live updates."); return; }
      if (ev.code === 4403 || ev.code === 4404 || ev.code === 4422) { setLive("off", "No live updates"); return; }
      const wait = Math.min(15000, 500 * 2 ** state.retry++);
      setTimeout(() => { if (state.ws === ws) { state.ws = null; connectPush(); } }, wait);
    };
  }

  // Push frames: control frames {type: "hello", cursor, machine_ids, gap} and
  // {type: "ping"}, then messages {cursor, type, machine_id, at, data} whose data is one
  // declared kind (sync/schemas/push/<type>.json). Only declared fields are read here.
  function onPush(msg) {
    const type = msg.type;
    if (type === "ping") return;
    if (type === "hello") {
      if (msg.cursor != null) state.cursor = msg.cursor;
      if (msg.gap) refreshSoon();           // resumed past what the node kept
      return;
    }
    if (msg.cursor == null || !msg.data) return;
    state.cursor = msg.cursor;
    const key = "c:" + msg.cursor;
    if (state.seen.has(key)) return;       // resumed: already shown
    state.seen.add(key);
    const data = msg.data;
    if (type === "voice_note") onVoicePush(data);
    if (state.machine && data.machine_id === state.machine.id &&
        /^(incident|correction|alarm|voice_note)$/.test(type)) refreshSoon();
    // The briefing of the machine in hand is already on screen: no banner for it.
    if (type === "briefing" && state.machine && data.machine_id === state.machine.id) return;
    if (type === "correction") {
      // Nor for a correction this tablet just saved (it said "Saved" already); its push
      // can arrive before the POST answers: match the text being saved too.
      if (state.mine.has(data.correction.id) || state.mine.has("text:" + data.correction.text)) return;
    }
    // A voice note recorded here shows its own progress on the note screen.
    if (type === "voice_note" && state.voice && data.voice_note_id === state.voice.id) return;
    if (type === "alarm") { showAlarmBanner(data); return; }
    if (type === "incident" && isAlarmIncident(data)) return; // its alarm banner says it
    showBanner(type, data);
  }

  // ---------- machine alarms (push kind "alarm") ----------
  // A machine raised an error code (OPC UA / Sparkplug B): one banner per incident, with
  // the machine's history for that code and a button that opens its briefing. The clear
  // of the same incident updates that banner instead of adding one.
  function isAlarmIncident(d) {
    return String((d.incident && d.incident.source) || "").startsWith("alarm:");
  }
  function showAlarmBanner(d) {
    const box = $("banners");
    const id = d.incident_id || "";
    const old = id ? box.querySelector('.banner.type-alarm[data-incident="' + CSS.escape(id) + '"]') : null;
    const cleared = d.state === "cleared";
    if (old) {
      old.classList.toggle("cleared", cleared);
      old.querySelector(".text").textContent = d.message || "";
      return;
    }
    if (cleared) return; // raised before this page was open: nothing to update
    const title = "Alarm " + (d.error_code || "") + " · " + (d.machine_name || d.machine_id || "") +
      (d.line ? " · " + d.line : "");
    const openIt = () => {
      banner.remove(); countOlder();
      state.errorCode = d.error_code || "";
      openMachine(d.machine_id);
    };
    const banner = h("div", { class: "banner type-alarm", role: "alert", "data-type": "alarm", "data-incident": id },
      h("div", { class: "body" },
        h("div", { class: "title" }, title),
        h("div", { class: "text" }, d.message || d.text || "")),
      h("button", { class: "btn small", type: "button", onclick: openIt }, "Open briefing"),
      h("button", { class: "btn ghost small", type: "button", onclick: () => { banner.remove(); countOlder(); } }, "Dismiss"));
    box.prepend(banner);
    while (box.children.length > 20) box.lastElementChild.remove();
    countOlder();
  }

  const TITLES = {
    briefing: "Briefing", incident: "New incident", alarm: "Alarm",
    correction: "New correction", voice_note: "Voice note",
  };
  function bannerText(type, d) {
    const parts = [];
    if (type === "briefing") parts.push(d.summary);
    else if (type === "correction") parts.push(d.text);
    else if (type === "incident") {
      const inc = d.incident;
      parts.push([inc.error_code, inc.symptom].filter(Boolean).join(": "));
      if (d.new_count > 1) parts.push(d.new_count + " new incidents on this machine");
      const sim = d.similar;
      if (sim) {
        parts.push("Seen before " + fmtDay(sim.occurred_at) + ": " + sim.symptom +
                   (sim.fix ? " — fixed by: " + sim.fix : ""));
      }
    } else if (type === "voice_note") {
      if (d.status === "failed") parts.push("Could not be transcribed: " + (d.reason || "unknown reason"));
      else if (d.transcript) parts.push("Transcript ready: “" + d.transcript + "”");
      else parts.push("Status: " + d.status);
    }
    return parts.filter(Boolean);
  }
  function showBanner(type, data) {
    const box = $("banners");
    const title = TITLES[type] || type.replace(/_/g, " ");
    const banner = h("div", { class: "banner type-" + type, role: "status", "data-type": type },
      h("div", { class: "body" },
        h("div", { class: "title" }, title + (data.machine_id ? " · " + data.machine_id : "")),
        bannerText(type, data).map((t, i) => h("div", { class: i ? "text more" : "text" }, t))),
      h("button", { class: "btn ghost small", type: "button", onclick: () => { banner.remove(); countOlder(); } }, "Dismiss"));
    box.prepend(banner);
    while (box.children.length > 20) box.lastElementChild.remove();
    countOlder();
  }

  function countOlder() {
    const box = $("banners");
    for (const o of box.querySelectorAll(".older")) o.remove();
    const top = box.firstElementChild;
    if (top && box.children.length > 1) {
      top.querySelector(".title").append(h("span", { class: "older" }, "+" + (box.children.length - 1) + " earlier"));
    }
  }

  // ---------- watch my line (kept in localStorage as rae.line) ----------
  // Alerts for every machine of one production line, whatever machine is in hand.
  function setLine(line) {
    state.line = (line || "").trim();
    store.set("line", state.line || null);
    $("line-input").value = state.line;
    $("line-status").textContent = state.line
      ? "This tablet gets the alarms and news of every machine on " + state.line + "."
      : "This tablet follows only the machine in hand.";
    if (state.machine) showLineButton(state.machine);
    connectPush();
  }
  function showLineButton(m) {
    const b = $("btn-b-line");
    b.hidden = !m.line || m.line === state.line;
    b.textContent = "Watch " + (m.line || "line");
  }
  $("form-line").addEventListener("submit", (e) => { e.preventDefault(); setLine($("line-input").value); });
  $("btn-line-clear").addEventListener("click", () => setLine(""));
  $("btn-b-line").addEventListener("click", () => { if (state.machine) setLine(state.machine.line); });
  $("line-input").value = state.line;

  // ---------- "this fixed it" / "not relevant" (POST /feedback) ----------
  function tallyText(n, plants) {
    return n ? "confirmed " + n + "× at " + plants + " plant" + (plants === 1 ? "" : "s") : "";
  }
  // Two glove-sized buttons and the memory's tally. In a briefing the node's tally counts
  // the incident with its corrections: the briefing is fetched again after a verdict.
  function verdictRow(memoryId, { query, confirmations, plants, inBriefing } = {}) {
    const known = state.tallies.get(memoryId);
    const tally = h("span", { class: "tally", "data-tally": memoryId },
      confirmations ? tallyText(confirmations, plants) : known ? tallyText(known.confirmations, known.plants) : "");
    // A verdict holds for its context: the briefing, or one search (another may differ).
    const context = memoryId + (query ? "\n" + query : "");
    const given = state.verdicts.get(context);
    const button = (verdict, label) => h("button", { class: "btn secondary verdict", type: "button",
      "data-verdict": verdict, "aria-pressed": given === verdict ? "true" : "false", disabled: !!given,
      onclick: () => send(verdict) }, label);
    const fixed = button("fixed", "This fixed it"), other = button("not_relevant", "Not relevant");
    async function send(verdict) {
      fixed.disabled = other.disabled = true;  // one verdict per tap, even a double one
      tally.textContent = "Saving…";
      const body = { memory_id: memoryId, verdict };
      const q = query || (inBriefing && state.errorCode) || "";
      if (q) body.query = q;
      try {
        const res = await api("/feedback", { method: "POST", json: body });
        state.verdicts.set(context, verdict);
        (verdict === "fixed" ? fixed : other).setAttribute("aria-pressed", "true");
        if (res && res.queued) { tally.textContent = "Saved on this tablet: sent when the node can be reached."; return; }
        const m = (res && res.memory) || {};
        state.tallies.set(memoryId, { confirmations: m.confirmations || 0, plants: m.plants || 0 });
        tally.textContent = verdict === "fixed" ? tallyText(m.confirmations, m.plants)
          : "Noted: shown lower for problems like this one.";
        if (inBriefing && verdict === "fixed") refreshSoon();
      } catch (err) {
        fixed.disabled = other.disabled = false;
        tally.textContent = "Not saved: " + err.message;
      }
    }
    return h("div", { class: "verdicts", "data-memory-id": memoryId }, fixed, other, tally);
  }

  // ---------- search ----------
  $("form-search").addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = $("search-input").value.trim();
    if (!q) return;
    const status = $("search-status");
    status.textContent = "Searching…";
    const machine_id = $("search-this").checked && state.machine ? state.machine.id : null;
    try {
      const res = await api("/search", { query: { q, machine_id, k: 10 } });
      const hits = asList(Array.isArray(res) ? res : first(res, "hits", "results", "items"));
      status.textContent = hits.length + " result" + (hits.length === 1 ? "" : "s") + " for “" + q + "”" + (machine_id ? " on " + machine_id : "");
      $("search-results").replaceChildren(...hits.map((hit) => renderHit(hit, q)));
    } catch (err) {
      status.textContent = "";
      $("search-results").replaceChildren(h("p", { class: "error" }, "Search failed: " + err.message));
    }
  });
  function renderHit(hit, q) {
    const kind = hit.kind || "memory";
    const sup = asList(hit.superseded_by).length ? asList(hit.superseded_by) : null;
    return h("article", { class: "hit" + (sup ? " is-superseded" : ""), "data-hit-id": hit.id, "data-kind": kind },
      h("div", { class: "incident-head" },
        h("span", { class: "badge kind-" + kind }, kind),
        hit.machine_id ? h("span", { class: "meta" }, hit.machine_id) : null,
        first(hit, "occurred_at") ? h("span", { class: "meta" }, fmtDay(hit.occurred_at)) : null,
        sup ? h("span", { class: "badge superseded" }, "superseded by a correction") : null,
        typeof hit.score === "number" ? h("span", { class: "meta" }, "score " + hit.score.toFixed(3)) : null),
      h("div", { class: "text" }, hit.text || ""),
      verdictRow(hit.id, { query: q }));
  }

  // ---------- typed correction ----------
  function prepareNote() {
    const sel = $("note-target");
    const keep = sel.value;
    const opts = [h("option", { value: "" }, "Nothing specific: a general note on this machine")];
    const incidents = asList(state.briefing && first(state.briefing, "incidents", "history"));
    for (const inc of incidents) {
      const label = fmtDay(inc.occurred_at) + " · " + [inc.error_code, inc.symptom].filter(Boolean).join(": ") +
        (fixOf(inc) ? " → " + fixOf(inc) : "");
      opts.push(h("option", { value: inc.id }, label.length > 110 ? label.slice(0, 107) + "…" : label));
    }
    sel.replaceChildren(...opts);
    if (keep && [...sel.options].some((o) => o.value === keep)) sel.value = keep;
    const have = !!state.machine;
    for (const id of ["correction-text", "btn-record", "audio-input"]) $(id).disabled = !have;
    $("form-correction").querySelector("button").disabled = !have;
    if (!have) $("note-machine").textContent = "Scan a machine first: a note belongs to one machine.";
  }
  $("form-correction").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("correction-text").value.trim();
    if (!text || !state.machine) return;
    const status = $("correction-status");
    status.textContent = "Saving…";
    state.mine.add("text:" + text);
    try {
      const c = await api("/corrections", { method: "POST", json: {
        machine_id: state.machine.id, text, target_id: $("note-target").value || undefined } });
      $("correction-text").value = "";
      status.textContent = "Saved" + (c && c.id ? " (" + c.id + ")" : "") + ". Everyone scanning this machine now sees it.";
      status.dataset.savedId = (c && c.id) || "";
      if (c && c.id) state.mine.add(c.id);
      refreshSoon();
    } catch (err) {
      status.textContent = "Not saved: " + err.message;
    }
  });

  // ---------- voice note ----------
  const MAX_SECONDS = 120;
  let recorder = null, recStream = null, recChunks = [], recStart = 0, recTimer = null;
  function voiceStatus(t) { $("voice-status").textContent = t; }

  async function startRecording() {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      voiceStatus(window.isSecureContext ? "This browser cannot record: use “Use recorder app”."
        : "Recording needs a secure (https) address: use “Use recorder app”.");
      return;
    }
    try {
      recStream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
    } catch (err) {
      voiceStatus("The microphone could not be opened (" + (err.name || err) + ").");
      return;
    }
    const mime = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]
      .find((t) => window.MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(t));
    recorder = new MediaRecorder(recStream, mime ? { mimeType: mime } : undefined);
    recChunks = [];
    recorder.ondataavailable = (ev) => { if (ev.data && ev.data.size) recChunks.push(ev.data); };
    recorder.onstop = () => {
      for (const t of recStream.getTracks()) t.stop();
      const type = recorder.mimeType || mime || "audio/webm";
      uploadVoice(new Blob(recChunks, { type }), type);
      recorder = null;
    };
    recorder.start(250);
    recStart = Date.now();
    const btn = $("btn-record");
    btn.classList.add("recording");
    btn.textContent = "■ Stop and send";
    recTimer = setInterval(() => {
      const s = Math.round((Date.now() - recStart) / 1000);
      voiceStatus("Recording… " + s + " s (tap again to stop)");
      if (s >= MAX_SECONDS) stopRecording();
    }, 250);
    voiceStatus("Recording… speak now");
  }
  function stopRecording() {
    clearInterval(recTimer);
    const btn = $("btn-record");
    btn.classList.remove("recording");
    btn.textContent = "● Record voice note";
    if (recorder && recorder.state !== "inactive") recorder.stop();
  }
  $("btn-record").addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
  $("audio-input").addEventListener("change", (e) => {
    const f = e.target.files && e.target.files[0];
    e.target.value = "";
    if (f) uploadVoice(f, f.type, f.name);
  });

  function extFor(type) {
    if (/webm/.test(type)) return "webm";
    if (/ogg/.test(type)) return "ogg";
    if (/mp4|m4a|aac/.test(type)) return "m4a";
    if (/wav/.test(type)) return "wav";
    if (/mpeg|mp3/.test(type)) return "mp3";
    return "bin";
  }

  async function uploadVoice(blob, type, name) {
    if (!state.machine) return;
    if (!blob.size) { voiceStatus("Nothing was recorded."); return; }
    const form = new FormData();
    form.append("machine_id", state.machine.id);
    const target = $("note-target").value;
    if (target) form.append("target_id", target);
    form.append("audio", blob, name || ("voice-note." + extFor(type || "")));
    voiceStatus("Sending " + Math.round(blob.size / 1024) + " KB…");
    $("voice-draft").hidden = true;
    try {
      const res = await api("/voice-notes", { method: "POST", form });
      const id = first(res, "id", "voice_note_id");
      state.voice = { id, done: false };
      $("voice-card").dataset.voiceId = id || "";
      voiceStatus("Sent. Transcribing on the node…");
      pollVoice();
    } catch (err) {
      voiceStatus("Not sent: " + err.message);
    }
  }

  async function pollVoice() {
    const v = state.voice;
    if (!v || !v.id || v.done) return;
    clearTimeout(v.timer);
    let note;
    try { note = await api("/voice-notes/" + encodeURIComponent(v.id)); }
    catch (err) { voiceStatus("Waiting for the node: " + err.message); v.timer = setTimeout(pollVoice, 2000); return; }
    showVoice(note);
    if (!v.done) v.timer = setTimeout(pollVoice, 1000);
  }
  function onVoicePush(d) {
    const v = state.voice;
    if (v && !v.done && d.voice_note_id === v.id) pollVoice();
  }

  function draftText(note) {
    const d = first(note, "draft", "draft_correction");
    return first(d || {}, "text") || first(note, "draft_text", "transcript") || "";
  }
  function showVoice(note) {
    const v = state.voice;
    const status = String(note.status || "").toLowerCase();
    const correction = note.correction || (note.correction_id ? { id: note.correction_id } : null);
    if (status === "failed" || status === "rejected" || status === "error") {
      v.done = true;
      voiceStatus("The node could not transcribe it: " + (first(note, "error", "reason", "message") || status) + ". Try again or type it.");
      return;
    }
    if (correction && (status === "confirmed" || status === "done" || status === "completed" || !draftText(note))) {
      v.done = true;
      $("voice-draft").hidden = true;
      voiceStatus("Saved as a correction" + (correction.id ? " (" + correction.id + ")" : "") + ": “" + (correction.text || draftText(note)) + "”");
      refreshSoon();
      return;
    }
    const text = draftText(note);
    if (text && /draft|transcribed|ready|done|review|pending_confirm/.test(status || "draft")) {
      v.done = true;
      $("voice-draft").hidden = false;
      $("voice-text").value = text;
      voiceStatus("Transcript ready: check it below.");
      $("voice-draft").scrollIntoView({ block: "center" });
      return;
    }
    voiceStatus(status === "queued" || status === "accepted" ? "Waiting to be transcribed…" : "Transcribing on the node…");
  }

  $("btn-voice-confirm").addEventListener("click", async () => {
    const v = state.voice;
    if (!v || !v.id) return;
    const text = $("voice-text").value.trim();
    if (!text) { voiceStatus("The transcript is empty: type what you said or discard it."); return; }
    voiceStatus("Saving…");
    state.mine.add("text:" + text);
    try {
      const res = await api("/voice-notes/" + encodeURIComponent(v.id) + "/confirm", { method: "POST", json: { text } });
      const c = (res && (res.correction || res)) || {};
      $("voice-draft").hidden = true;
      voiceStatus("Saved as a correction" + (c.id ? " (" + c.id + ")" : "") + ": “" + (c.text || text) + "”");
      $("voice-card").dataset.correctionId = c.id || "";
      if (c.id) state.mine.add(c.id);
      refreshSoon();
    } catch (err) {
      voiceStatus("Not saved: " + err.message);
    }
  });
  $("btn-voice-discard").addEventListener("click", () => {
    $("voice-draft").hidden = true;
    state.voice = null;
    voiceStatus("Discarded. Nothing was saved.");
  });

  // ---------- ask (the node's LLM, answer streamed, every citation linked) ----------
  // The answer arrives as server-sent events over a POST: "delta" pieces of text, then
  // "answer" (the checked answer: citations resolved against what the model was sent),
  // or "error". Citations "[id]" become links to the source cards below the answer.
  state.ask = null;  // {deltas, answer} of the last question (read by the browser test)
  function askCiteLinks(text, numbers) {
    const out = [];
    let last = 0;
    for (const m of text.matchAll(/\[([A-Za-z0-9][A-Za-z0-9_~.:\-]{2,100})\]/g)) {
      out.push(text.slice(last, m.index));
      if (!numbers.has(m[1])) numbers.set(m[1], numbers.size + 1);
      out.push(h("a", { class: "cite", href: "#cite-" + m[1], "data-cite": m[1],
                        title: m[1] }, "[" + numbers.get(m[1]) + "]"));
      last = m.index + m[0].length;
    }
    out.push(text.slice(last));
    return out;
  }
  function askRender(text, done) {
    const box = $("ask-answer");
    box.hidden = false;
    box.replaceChildren(...askCiteLinks(text, state.askNumbers));
    box.dataset.state = done ? "done" : "streaming";
  }
  function askSources(answer) {
    const list = $("ask-cites");
    const byId = new Map(answer.citations.map((c) => [c.id, c]));
    const order = [...state.askNumbers.keys()].filter((id) => byId.has(id));
    list.replaceChildren(...order.map((id) => {
      const c = byId.get(id);
      return h("li", { id: "cite-" + id, class: "hit", "data-memory-id": id },
        h("div", { class: "incident-head" },
          h("span", { class: "badge kind-" + c.kind }, c.kind),
          c.machine_id ? h("span", { class: "meta" }, c.machine_id) : null,
          c.occurred_at ? h("span", { class: "meta" }, fmtDay(c.occurred_at)) : null,
          c.corrects ? h("span", { class: "badge correction" }, "amends " + c.corrects) : null),
        h("div", { class: "text" }, c.excerpt || ""),
        h("div", { class: "meta" }, id + (c.source ? " · " + c.source : "")));
    }));
    $("ask-cites-h").hidden = order.length === 0;
  }
  async function askStream(body) {
    if (!state.token) { showToken(); return; }
    let r;
    try {
      r = await fetch(API + "/ask", { method: "POST", headers: {
        Accept: "text/event-stream", "Content-Type": "application/json",
        Authorization: "Bearer " + state.token }, body: JSON.stringify(body) });
    } catch { throw new ApiError("The node cannot be reached. Check the tablet's network.", 0, "network"); }
    if (r.status === 401) { showToken("The node did not accept the token: enter it again."); return; }
    if (!r.ok) {
      let err = {};
      try { err = (await r.json()).error || {}; } catch { /* not JSON */ }
      throw new ApiError(err.message || ("HTTP " + r.status), r.status, err.code);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "", shown = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let sep;  // events end with a blank line; the node writes CRLF line ends
      while ((sep = buf.match(/\r?\n\r?\n/))) {
        const block = buf.slice(0, sep.index);
        buf = buf.slice(sep.index + sep[0].length);
        let event = "message", data = "";
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trimStart();
        }
        if (!data) continue;
        const msg = JSON.parse(data);
        if (event === "delta") {
          shown += msg.text;
          state.ask.deltas += 1;
          askRender(shown, false);
        } else if (event === "answer") {
          state.ask.answer = msg;
          state.askNumbers = new Map();
          askRender(msg.answer, true);
          askSources(msg);
          $("ask-status").textContent = (msg.evidence ? msg.citations.length + " source" +
            (msg.citations.length === 1 ? "" : "s") : "No memory answers this") +
            " · " + msg.model + " · " + Math.round(msg.elapsed_ms) + " ms";
        } else if (event === "error") {
          throw new ApiError((msg.error || {}).message || "the answer broke off", 503,
                             (msg.error || {}).code);
        }
      }
    }
  }
  $("form-ask").addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = $("ask-input").value.trim();
    if (!question) return;
    const machine_id = $("ask-this").checked && state.machine ? state.machine.id : null;
    state.ask = { deltas: 0, answer: null };
    state.askNumbers = new Map();
    $("ask-cites").replaceChildren();
    $("ask-cites-h").hidden = true;
    $("ask-answer").hidden = true;
    $("ask-answer").dataset.state = "waiting";
    $("ask-status").textContent = "Asking…";
    $("btn-ask").disabled = true;
    try {
      await askStream({ question, machine_id, stream: true });
    } catch (err) {
      $("ask-answer").dataset.state = "error";
      $("ask-status").textContent = "";
      $("ask-answer").hidden = false;
      $("ask-answer").replaceChildren(h("p", { class: "error" }, err.status === 503 || err.status === 504 ?
        "The assistant is not available: " + err.message : "Asking failed: " + err.message));
    } finally {
      $("btn-ask").disabled = false;
    }
  });

  // ---------- navigation ----------
  for (const b of document.querySelectorAll(".tabbar button")) {
    b.addEventListener("click", () => show(b.dataset.view));
  }
  window.addEventListener("online", () => connectPush());

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") stopCamera();
    else connectPush();
  });

  // ---------- start ----------
  if (!state.token) showToken();
  else {
    const last = store.get("machine");
    show("scan");
    connectPush();  // the tablet's line, before any machine is opened
    if (last && new URLSearchParams(location.search).get("resume") !== "0") openMachine(last);
  }
  const deep = new URLSearchParams(location.search).get("m");
  if (deep && state.token) openMachine(deep);
})();
