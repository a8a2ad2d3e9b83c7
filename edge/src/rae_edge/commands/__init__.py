"""One module per ``rae-edge`` command family; each registers itself with
:func:`rae_edge.commands.registry.command` when imported.

Modules: ``audit``, ``backup``, ``info``, ``ingest``, ``qr_labels``, ``reindex``, ``tls``,
``token`` (one command family each) and ``live_node`` (no command: the HTTP client they
use when a running node holds the data folder) and ``registry`` (the registry itself)."""
