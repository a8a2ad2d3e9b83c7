"""rae_tablet_api: the Litestar app a technician's tablet talks to.

Modules:
- ``app``: builds the Litestar application around one :class:`rae_edge.node.EdgeNode`;
- ``cli``: the ``rae-edge`` entry point (caps malloc arenas first, then runs ``serve``);
- ``serve``: the ``rae-edge`` commands: ``serve`` and ``mcp`` added to the edge's own;
- ``demo``: the README's demo command (``scripts/demo``): broker, central and the edge
  nodes of two sample plants as processes (run by ``rae_sync.supervisor``), URLs and
  tokens printed, Ctrl-C stops all; ``demo_plant``: one plant's settings, sample data and
  token;
- ``uploads``: streamed multipart uploads (size limit, form check, ``.partial`` file
  fsynced and renamed only when complete), shared by the document and voice routes;
- ``idempotency``: the ``Idempotency-Key`` middleware (first answer kept and replayed per
  tenant and key on the three write routes);
- ``metrics``: per-route latency middleware and the per-node Prometheus registry that
  ``GET /metrics`` serves;
- ``web/`` (a folder, not a module): the tablet page's HTML, CSS, JS and vendored QR
  decoder, served at ``/`` and ``/static`` by ``routes.web``.

It imports ``rae_edge`` only; nothing imports it.
"""
