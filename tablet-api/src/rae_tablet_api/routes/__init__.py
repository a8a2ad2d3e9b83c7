"""Route modules; each exposes ``ROUTES`` (Litestar handlers/controllers), collected by
:func:`rae_tablet_api.app.create_app` in name order.

Modules:
- ``health``: ``GET /api/v1/health``.
"""
