"""rae_edge: the edge node.

Modules:
- ``config``: the node's settings tree (file + ``RAE_*`` environment, unknown keys rejected);
- ``errors``: the exception hierarchy the tablet API maps to HTTP statuses;
- ``store``: DuckDB (relational, outbox, audit) and LanceDB (text + vectors) stores;
- ``node``: :class:`EdgeNode`, the composition root: it opens the stores and builds each
  service once, passing it only what it needs (no service imports the node; type-only
  imports included, ``rae_edge`` has no import circle: see pyproject's import contracts);
- ``alarm_settings``: the ``alarms`` settings section (part of the settings tree, which
  imports no feature package);
- ``embedding``: the embedding service (one packaged ONNX model per process, batched);
- ``abbreviations``: maintenance shorthand expanded for search (L/H -> left hand);
- ``indexer``: incidents, chunks and corrections to searchable LanceDB rows (+ reindex);
- ``ingest``: manuals, error logs, shift reports and work orders in (``ingest_paths``);
- ``sample_plant``: the demo's machines and files, and ``load_sample_plant``;
- ``backup``: consistent snapshots of a live node's data (DuckDB, LanceDB, audio, keys)
  and their checked restore onto an empty data folder;
- ``audit``: the append-only, hash-chained audit log and its verification;
- ``drift``: drift alerts when field corrections contradict a manual's documented fix;
- ``write``: the one write path (:class:`~rae_edge.write.Writer`): every fact (incident,
  correction, document record) is stored with its typed outbox message in one
  transaction, then sync is woken, it is indexed, pushed and drift recomputed, in that
  order for every origin (API, ingest, typed, voiced, another plant);
- ``push``: the push bus, proactive messages to watching tablets (persisted, cursor resume);
- ``push_kinds``: one typed class per push message kind;
- ``push_schemas``: the JSON Schemas of every push kind (those of features too);
- ``qr``: a scanned QR payload to a machine (id, URL ending in it, the plant's pattern);
- ``memory``: the memory service: briefing, hybrid search, corrections, context packs,
  document ingest jobs;
- ``voice``: voice notes (``node.voice``): upload checks, content-addressed audio, the
  transcription worker (faster-whisper) with the machine's vocabulary, confirm -> correction;
- ``sync_agent``: the sync with central (``node.start_sync()``): durable outbox -> signed
  envelopes over MQTT, rows kept until central's ack, replays, corrections from other
  plants applied and pushed;
- ``metrics``: Prometheus timings (embedding, transcription), the node's queues read at
  scrape time, and ``metrics.register`` for parts with state of their own (alarm sources);
- ``tls``: the tablet API's self-signed HTTPS certificate; plain HTTP on loopback only;
- ``allocator``: caps glibc's malloc arenas for the long-running node process;
- ``cli``: the ``rae-edge`` commands other than ``serve`` (which lives in the tablet API);
- ``commands``: one module per command family, registered in ``commands.registry``.

It imports ``rae_sync`` (domain, wire) and ``rae_models`` (packaged models) only.
"""
