"""Route modules; each exposes ``ROUTES`` (Litestar handlers/controllers), collected by
:func:`rae_tablet_api.app.create_app` in name order.

Modules:
- ``health``: ``GET /api/v1/health``;
- ``admin_security``: ``/api/v1/admin/audit/verify`` and ``/api/v1/admin/tokens[...]`` (admin;
  what ``rae-edge audit``/``token`` use beside a running node);
- ``drift``: ``GET /api/v1/drift-alerts``, ``POST /api/v1/drift-alerts/{id}/acknowledge``;
- ``web``: the tablet web page at ``/`` and its assets at ``/static/...`` (no token; the
  files live in ``rae_tablet_api/web``, the QR decoder vendored, no CDN);
- ``pwa``: ``/sw.js``, the service worker (offline briefings, queued writes; no token);
- ``machines``: ``POST /api/v1/machines`` (admin), ``GET /api/v1/machines``;
- ``briefing``: ``GET /api/v1/machines/{code}/briefing`` and ``GET /api/v1/briefing?code=``
  (QR payload or id; also pushed to the machine's watchers);
- ``incidents``: ``POST /api/v1/incidents`` (supervisor; pushed, then indexed);
- ``documents``: ``POST /api/v1/documents`` (supervisor; streamed upload, 202 + job);
- ``jobs``: ``GET /api/v1/jobs/{id}``, an ingest job's progress and result;
- ``search``: ``GET /api/v1/search``, hybrid search;
- ``corrections``: ``POST /api/v1/corrections`` (technician);
- ``feedback``: ``POST /api/v1/feedback`` (technician), "this fixed it" / "not relevant";
- ``context``: ``GET /api/v1/context``, a context pack under a token budget;
- ``push``: ``WS /api/v1/push`` (cursor resume) and ``GET /api/v1/push/messages``;
- ``metrics``: ``GET /metrics`` (Prometheus text; loopback or an admin token);
- ``voice``: voice notes, upload (streamed, checked, stored before 202), status, confirm;
- ``mcp``: ``/mcp``, the MCP server for agents (:mod:`rae_tablet_api.mcp`); a module may
  also export ``LIFESPANS`` (async context managers run while the app runs).
"""
