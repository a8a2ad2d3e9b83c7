"""The admin sync console served by central.

Modules:
- ``app``: the Litestar app: ``/health``, the console page at ``/`` and the JSON API under
  ``/api/v1/admin`` (nodes, dead letters, recent corrections, revoke), guarded by the
  admin bearer token from the settings (``RAE_CENTRAL_ADMIN__TOKEN``);
- ``web/``: the page itself (plain HTML + JS, no CDN), refreshing every few seconds.
"""
