"""rae_central: central's ingest of every edge node's sync stream, its stores, and the
admin sync console.

Modules:
- ``config``: the settings tree (file < ``RAE_CENTRAL_*`` environment < flags; unknown keys
  are errors), e.g. ``RAE_CENTRAL_ADMIN__TOKEN`` for the console;
- ``db``: the PostgreSQL tables (``db.models``), Alembic migrations run from code
  (``db.migrate``; the revisions live in ``migrations/``) and engine creation;
- ``store``: the database operations: enroll/revoke nodes, the one-transaction batch
  ingest (idempotent on ``message_id``), seq watermark/gaps, the down log (a fan-out row
  per node kept until that node acks applying it; resumes; due rows in windows), dead
  letters, the admin audit and the console's read side;
- ``ingest``: from wire to rows (verify schema, signature, sender, tenant, clock skew) and central's
  signed down messages (acks, replay requests, fan-out of corrections and verdicts);
- ``worker``: the MQTT 5 shared-subscription ingest worker (acks after the commit);
- ``vectors``: the Qdrant repository (URL or local folder; the collection records its
  embedding model) and the background indexer that keeps embedding off the ack path;
- ``keys``: central's Ed25519 signing key; ``enroll``: issuing a node's identity;
- ``serve``: ``rae-central serve`` (supervised workers + indexer + console);
- ``admin``: the console page and its JSON API under ``/api/v1/admin``;
- ``cli``: the ``rae-central`` command (serve, worker, migrate, enroll, revoke, audit
  verify, pki init, broker-config);
- ``rls``: PostgreSQL row-level security by tenant (migrations 0002-0004);
- ``audit_chain``: verifying a node's synced audit hash chain;
- ``audit_verify``: running it over every (tenant, node)'s synced entries, incrementally
  for the console (``audit_verified`` keeps the last verified hash) and in full for
  ``rae-central audit verify``;
- ``drift_alerts``: the edges' drift alerts per tenant (newest version by HLC) and their
  evidence for the console (the corrections' texts, machines, the manual sections);
- ``feedback``: the edges' "this fixed it" / "not relevant" verdicts per tenant (one row
  per verdict id, the signed sender's plant), their fanned-out form and the console's read;
- ``pki``: the MQTT TLS PKI and mosquitto configuration (ACL file or dynamic security);
- ``broker_setup``: central's own broker credentials, a node's certificate and broker
  password at enrollment, and ``rae-central broker-config``;
- ``embedded_pg``: a PostgreSQL server in one folder on loopback (the demo and the tests).

It imports ``rae_sync`` (and ``rae_models`` for embeddings), nothing else of ours.
"""
