"""rae_sync: the contract shared by edge nodes and central.

Modules:
- ``domain``: frozen pydantic types for tenants, machines and the three kinds of memory
  (incidents, document chunks, corrections) plus audit entries;
- ``topics``: ``rae/v1/{tenant}/{site}/{node}/{up|down}/{type}`` topics, filters and shared
  subscriptions, built and parsed with every id checked;
- ``messages``: one typed class per wire message (incident, correction, ack, replay
  request, node status, audit entry, drift alert, resume), each with its wire form;
- ``envelope``: the signed envelope (schema version, message id, seq, HLC, node, type,
  payload, Ed25519 signature), :func:`~rae_sync.envelope.seal` and
  :func:`~rae_sync.envelope.open_envelope` (verification with distinct errors);
- ``errors``: ``Malformed``, ``TopicMismatch``, ``UnknownSchemaVersion``, ``UnknownNode``,
  ``BadSignature``, ``ClockSkew`` (each with a dead-letter ``reason``), ``TransportError``;
- ``hlc``: the hybrid logical clock;
- ``validation``: checks of the ordering fields on arrival (a clock stamp too far ahead
  is refused as ``ClockSkew``);
- ``signing``: Ed25519 keys (PEM), canonical JSON, sign/verify;
- ``identity``: :class:`~rae_sync.identity.NodeIdentity`, the file ``rae-central enroll``
  writes and ``rae-edge serve --enroll`` reads;
- ``layered_settings``: a deployable's settings tree from file < environment < flags,
  unknown keys named (edge and central build theirs with it);
- ``schemas``: JSON Schemas of the wire, generated into ``sync/schemas/``;
- ``supervisor``: runs parts of the system as supervised child processes (the demo, the
  test stack and the benchmarks share it);
- ``transport``: the MQTT transport interface, its paho-mqtt implementation and an
  in-memory broker for tests and single-process setups.

It imports nothing else of ours, so both sides of the wire can depend on it.
"""
