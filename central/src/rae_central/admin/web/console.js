// The sync console: polls /api/v1/admin/overview every 2 s with the admin token kept in
// this tab's sessionStorage (or given once as #token=... in the address).
"use strict";
const REFRESH_MS = 2000;
const $ = (sel) => document.querySelector(sel);

function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("raeAdminToken", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("raeAdminToken") || "";
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  return td;
}

function ago(iso) {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function fill(tbody, rows, render) {
  tbody.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    render(r).forEach((td) => tr.appendChild(td));
    return tr;
  }));
}

async function api(path, opts = {}) {
  const res = await fetch(path, {
    ...opts, headers: { Authorization: `Bearer ${token()}`, ...(opts.headers || {}) },
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
  return body;
}

async function revoke(n) {
  const name = `${n.tenant_id}/${n.site_id}/${n.node_id}`;
  if (!confirm(`Revoke ${name}? Its messages will be refused from now on.`)) return;
  try {
    await api(`/api/v1/admin/nodes/${encodeURIComponent(n.tenant_id)}/` +
      `${encodeURIComponent(n.site_id)}/${encodeURIComponent(n.node_id)}/revoke`,
      { method: "POST" });
  } catch (e) { alert(`Revoke failed: ${e.message}`); }
  refresh();
}

function renderNode(n) {
  const gaps = n.missing_seqs
    ? `${n.missing_seqs} missing (${n.gaps.map((g) => g[0] === g[1] ? g[0] : `${g[0]}–${g[1]}`).join(", ")})`
    : "none";
  const btn = document.createElement("td");
  if (!n.revoked_at) {
    const b = document.createElement("button");
    b.textContent = "Revoke";
    b.dataset.node = `${n.tenant_id}/${n.site_id}/${n.node_id}`;
    b.addEventListener("click", () => revoke(n));
    btn.appendChild(b);
  }
  return [
    cell(`${n.tenant_id}/${n.site_id}/${n.node_id}`),
    cell(n.revoked_at ? `revoked ${ago(n.revoked_at)}` : "active", n.revoked_at ? "bad" : "ok"),
    cell(ago(n.last_seen)),
    cell(n.outbox_depth),
    cell(n.lag_s === null ? null : `${n.lag_s.toFixed(1)} s`, n.lag_s > 60 ? "bad" : ""),
    cell(n.last_seq),
    cell(gaps, n.missing_seqs ? "bad" : ""),
    cell(n.messages),
    cell(n.dead_letters, n.dead_letters ? "bad" : ""),
    cell(n.down_pending === undefined ? null
      : (n.down_pending ? `${n.down_pending} not received` : "all received")
        + (n.away ? ` (away since ${ago(n.last_seen)})` : ""),
    n.away ? "bad" : ""),
    cell(n.flag || "", n.flag ? "bad" : ""),
    btn,
  ];
}

function listCell(items, render) {
  const td = document.createElement("td");
  const ul = document.createElement("ul");
  items.forEach((it) => {
    const li = document.createElement("li");
    render(it, li);
    ul.appendChild(li);
  });
  td.appendChild(ul);
  return td;
}

// A drift alert with its evidence: what the field said against what the manual says.
function renderDrift(a) {
  return [
    cell(ago(a.updated_at)),
    cell(a.error_code, "bad"),
    cell(a.machine_ids.join(", ")),
    listCell(a.corrections, (c, li) => {
      li.textContent = c.received
        ? `${c.machine_id} (${c.author}, ${c.origin}): ${c.text}`
        : `${c.id}: not received at central yet`;
    }),
    listCell(a.manual_sections, (m, li) => {
      const q = document.createElement("blockquote");
      q.textContent = m.text ? `${m.section || m.id}: ${m.text}` : m.id;
      li.appendChild(q);
    }),
    cell(a.origin, "muted"),
  ];
}

async function refresh() {
  if (!token()) { $("#login").style.display = "flex"; $("#status").textContent = "token?"; return; }
  try {
    const o = await api("/api/v1/admin/overview");
    $("#login").style.display = "none";
    fill($("#nodes tbody"), o.nodes, renderNode);
    fill($("#dead tbody"), o.dead_letters, (d) => [
      cell(new Date(d.at).toLocaleString()),
      cell(d.node_id ? `${d.tenant_id}/${d.site_id}/${d.node_id}` : "?"),
      cell(d.topic), cell(d.reason, "wrap bad"),
    ]);
    fill($("#corrections tbody"), o.corrections, (c) => [
      cell(new Date(c.received_at).toLocaleString()), cell(c.origin), cell(c.machine_id),
      cell(c.text, "wrap"), cell(c.hlc, "muted"), cell(c.embedded ? "yes" : "pending"),
    ]);
    fill($("#feedback tbody"), o.feedback || [], (f) => [
      cell(new Date(f.received_at).toLocaleString()), cell(f.origin), cell(f.memory_id),
      cell(f.verdict === "fixed" ? "this fixed it" : "not relevant"),
      cell(f.query, "wrap"), cell(f.author, "muted"),
    ]);
    fill($("#drift tbody"), o.drift_alerts || [], renderDrift);
    $("#drift-note").textContent = o.scope === "operator"
      ? "The operator token shows no tenant's drift alerts: use that tenant's console token."
      : `${(o.drift_alerts || []).length} open`;
    fill($("#audit tbody"), o.audit || [], (r) => [
      cell(`${r.tenant_id}/${r.site_id}/${r.node_id}`), cell(r.text, r.ok ? "ok" : "bad"),
    ]);
    // The operator token sees fleet health only; a tenant's token sees its corrections.
    $("#corrections-note").textContent = o.scope === "operator"
      ? "The operator token shows no tenant's corrections: use that tenant's console token."
      : `Tenant ${o.scope}`;
    $("#status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (e) {
    $("#status").textContent = `error: ${e.message}`;
    if (/token/.test(e.message)) $("#login").style.display = "flex";
  }
}

$("#login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("raeAdminToken", $("#token").value.trim());
  refresh();
});
refresh();
setInterval(refresh, REFRESH_MS);
