"""Alarms from the machines: OPC UA and MQTT Sparkplug B sources become incidents and
``alarm`` pushes before anyone scans.

Modules:
- ``config``: the ``alarms`` settings section, a union of source types keyed by ``type``
  (kept in :mod:`rae_edge.alarm_settings`, re-exported here);
- ``events``: the typed :class:`AlarmEvent` a source emits, and value → event mapping;
- ``sources``: the source plugins (``opcua``, ``sparkplug``), found by subclass and keyed
  by ``type``; each reconnects with backoff and reports its state for ``/health``;
- ``sparkplug_proto``: the Sparkplug B protobuf payload, built from a descriptor;
- ``certs``: the node's OPC UA client certificate (generated once, kept in the data dir);
- ``inbox``: the bounded, coalescing queue between the sources and the writer;
- ``processor``: raise/clear → incident (idempotent id, chattering coalesced, duration on
  clear) and the ``alarm`` push with the machine's briefing for that code;
- ``push``: :class:`AlarmPush`, the typed ``alarm`` push message (with its briefing);
- ``store``: the alarms' own state and the payloads set aside (DuckDB tables);
- ``writer``: the one call into the node's incident write, and :class:`AlarmDeps` (what
  the alarm parts need of the node, through small Protocols);
- ``service``: :class:`AlarmService` (``node.alarms``): checks the mapping, starts and
  stops the sources with the app, health;
- ``sim_plc``: the demo's simulated PLC (an asyncua server raising E404 on press-1).

Nothing here writes to a PLC; the only message sent to a source is Sparkplug's NCMD
``Node Control/Rebirth``, which asks an edge node to re-announce its metrics.
"""
