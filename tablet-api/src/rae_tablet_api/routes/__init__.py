"""Route modules; each exposes ``ROUTES`` (Litestar handlers/controllers), collected by
:func:`rae_tablet_api.app.create_app` in name order.

Modules:
- ``health``: ``GET /api/v1/health``;
- ``drift``: ``GET /api/v1/drift-alerts``, ``POST /api/v1/drift-alerts/{id}/acknowledge``;
- ``web``: the tablet web page at ``/`` and its assets at ``/static/...`` (no token; the
  files live in ``rae_tablet_api/web``, the QR decoder vendored, no CDN).
"""
