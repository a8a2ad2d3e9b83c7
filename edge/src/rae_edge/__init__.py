"""rae_edge: the edge node.

Modules:
- ``config``: the node's settings tree (file + ``RAE_*`` environment, unknown keys rejected);
- ``errors``: the exception hierarchy the tablet API maps to HTTP statuses;
- ``store``: DuckDB (relational, outbox, audit) and LanceDB (text + vectors) stores;
- ``node``: :class:`EdgeNode`, the service object that owns the stores and services;
- ``backup``: consistent snapshots of a live node's data (DuckDB, LanceDB, audio, keys)
  and their checked restore onto an empty data folder;
- ``audit``: the append-only, hash-chained audit log and its verification;
- ``drift``: drift alerts when field corrections contradict a manual's documented fix;
- ``tls``: the tablet API's self-signed HTTPS certificate; plain HTTP on loopback only;
- ``cli``: the ``rae-edge`` commands other than ``serve`` (which lives in the tablet API).

It imports ``rae_sync`` (domain, wire) and ``rae_models`` (packaged models) only.
"""
