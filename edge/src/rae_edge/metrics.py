"""The node's Prometheus metrics: timings measured where the work happens, and the node's
queues read at scrape time.

- :data:`EMBED_SECONDS` / :data:`EMBED_TEXTS`: every call of the embedding model;
- :data:`TRANSCRIBE_SECONDS` / :data:`AUDIO_SECONDS`: every voice note transcribed;
- :data:`WRITE_SECONDS`: each step of every write (:class:`rae_edge.write.Writer`);
- :class:`NodeCollector`: push sockets and messages, outbox depth and age (the sync lag),
  the sync agent's counters, voice notes by status (the transcription queue), ingest jobs
  by status and the progress of running ones, the memory DuckDB and LanceDB's caches
  hold; read from the node when scraped;
- :func:`register`: the hook for parts that bring their own state. An alarm connector
  registers a collector of its sources' state and keeps the returned callable to
  unregister on stop, e.g.::

      from prometheus_client.core import GaugeMetricFamily
      from rae_edge import metrics

      class AlarmSourcesCollector:
          def collect(self):
              up = GaugeMetricFamily("rae_alarm_source_up", "1 while the source is connected",
                                     labels=["source", "kind"])
              for s in connector.sources:
                  up.add_metric([s.name, s.kind], 1.0 if s.connected else 0.0)
              yield up

      unregister = metrics.register(AlarmSourcesCollector())

Metric objects here are process-wide and registered in no registry of their own: the
HTTP layer builds one registry per app from :func:`collectors` (a test may run several
nodes in one process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from rae_edge.store.duck import DuckStore
    from rae_edge.store.lance import LanceStore

EMBED_SECONDS = Histogram(
    "rae_embedding_seconds", "Wall time of one call of the embedding model (a batch)",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None)
EMBED_TEXTS = Counter("rae_embedding_texts", "Texts embedded", registry=None)
TRANSCRIBE_SECONDS = Histogram(
    "rae_transcription_seconds", "Wall time to transcribe one voice note",
    buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160), registry=None)
AUDIO_SECONDS = Counter("rae_transcribed_audio_seconds",
                        "Seconds of audio transcribed", registry=None)
WRITE_SECONDS = Histogram(
    "rae_write_step_seconds", "Wall time of each step of the one write path, by kind of fact",
    ["fact", "step"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
    registry=None)


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


_lock = threading.Lock()
_registered: list[Collector] = []


def register(collector: Collector) -> Callable[[], None]:
    """Adds ``collector`` to every node registry (scraped on each ``GET /metrics``); returns
    the callable that removes it again."""
    with _lock:
        _registered.append(collector)

    def unregister() -> None:
        with _lock:
            if collector in _registered:
                _registered.remove(collector)

    return unregister


class _Registered:
    """One collector standing for whatever is registered at scrape time."""

    def collect(self) -> Iterator[Metric]:
        with _lock:
            current = list(_registered)
        for c in current:
            yield from c.collect()


class _Sockets(Protocol):
    @property
    def subscribers(self) -> int: ...


class _Stats(Protocol):
    @property
    def stats(self) -> Any: ...


class _Jobs(Protocol):
    def get(self, tenant_id: str, job_id: str) -> dict[str, Any]: ...


class MetricsHost(Protocol):
    """What the collector reads of the node when scraped (the built node has these)."""

    @property
    def duck(self) -> DuckStore: ...

    @property
    def lance(self) -> LanceStore: ...

    @property
    def push(self) -> _Sockets: ...

    @property
    def sync(self) -> _Stats | None: ...

    def started_jobs(self) -> _Jobs | None:
        """The document jobs when the node has started them (a scrape starts nothing)."""


def collectors(node: MetricsHost) -> list[Any]:
    """What one node's registry holds: the process-wide timings, the node's state, and
    every registered collector."""
    return [EMBED_SECONDS, EMBED_TEXTS, TRANSCRIBE_SECONDS, AUDIO_SECONDS, WRITE_SECONDS,
            NodeCollector(node), _Registered()]


class NodeCollector:
    """The node's queues and counters, read when scraped (cheap queries, no scans of the
    big tables)."""

    def __init__(self, node: MetricsHost) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        node, duck = self.node, self.node.duck
        yield _gauge("rae_push_sockets", "Open push WebSockets (tablets listening)",
                     node.push.subscribers)
        head = duck.query("SELECT coalesce(max(seq), 0) FROM push_messages")[0][0]
        push = CounterMetricFamily("rae_push_messages", "Push messages published (the bus's "
                                   "cursor: each message has the next number)")
        push.add_metric([], float(head))
        yield push
        depth, oldest = duck.query("SELECT count(*), min(created_at) FROM outbox")[0]
        yield _gauge("rae_outbox_depth", "Facts waiting in the outbox to be sent to central",
                     depth)
        yield _gauge("rae_outbox_oldest_age_seconds", "Age of the oldest fact not yet sent "
                     "(the sync lag; 0 when the outbox is empty)", _age(oldest))
        yield from self._sync()
        notes = GaugeMetricFamily("rae_voice_notes", "Voice notes by status (queued and "
                                  "transcribing: the transcription queue)", labels=["status"])
        for status, n in duck.query("SELECT status, count(*) FROM voice_notes GROUP BY status "
                                    "ORDER BY status"):
            notes.add_metric([str(status)], float(n))
        yield notes
        yield from self._jobs()
        yield from self._store_memory()

    def _store_memory(self) -> Iterator[Metric]:
        # The stores' own memory, next to the process RSS: what a growing node holds.
        duck = GaugeMetricFamily("rae_duckdb_memory_bytes", "Memory held by DuckDB's buffer "
                                 "manager, by use", labels=["tag"])
        for tag, used in self.node.duck.query(
                "SELECT tag, memory_usage_bytes FROM duckdb_memory() ORDER BY tag"):
            duck.add_metric([str(tag)], float(used))
        yield duck
        yield _gauge("rae_lancedb_cache_bytes", "Bytes in LanceDB's index and metadata "
                     "caches", self.node.lance.cache_bytes())
        yield _gauge("rae_lancedb_index_cache_capacity_bytes", "The most LanceDB's index "
                     "cache holds (grows with the table)", self.node.lance.cache_capacity)
        renewals = CounterMetricFamily("rae_lancedb_cache_renewals", "Times LanceDB's "
                                       "caches were replaced by fresh ones (stale index "
                                       "files, or a larger index cache for a larger table)")
        renewals.add_metric([], float(self.node.lance.cache_renewals))
        yield renewals

    def _sync(self) -> Iterator[Metric]:
        agent = self.node.sync
        yield _gauge("rae_sync_enabled", "1 when the sync agent runs", agent is not None)
        # With sync off the families are announced without samples (dashboards stay valid).
        connected = GaugeMetricFamily("rae_sync_connected", "1 while connected to the broker")
        unacked = GaugeMetricFamily("rae_sync_unacked", "Envelopes sent and not yet "
                                    "acknowledged by central")
        since_ack = GaugeMetricFamily("rae_sync_seconds_since_ack", "Seconds since central "
                                      "last acknowledged (no sample before the first ack)")
        counts = CounterMetricFamily("rae_sync_messages", "Sync agent message counts",
                                     labels=["what"])
        if agent is not None:
            st = agent.stats
            connected.add_metric([], float(st.connected))
            unacked.add_metric([], float(st.unacked))
            if st.last_ack_at is not None:
                since_ack.add_metric([], _age(st.last_ack_at))
            for what in ("published", "acked", "applied", "rejected"):
                counts.add_metric([what], float(getattr(st, what)))
        yield from (connected, unacked, since_ack, counts)

    def _jobs(self) -> Iterator[Metric]:
        duck = self.node.duck
        by_status = GaugeMetricFamily("rae_ingest_jobs", "Document ingest jobs by status",
                                      labels=["status"])
        rows = duck.query("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
        for status, n in rows:
            by_status.add_metric([str(status)], float(n))
        yield by_status
        done = GaugeMetricFamily("rae_ingest_job_items_done", "Items (rows, chunks) done by "
                                 "a running ingest job", labels=["tenant", "job"])
        total = GaugeMetricFamily("rae_ingest_job_items_total", "Items known to a running "
                                  "ingest job", labels=["tenant", "job"])
        running = duck.query("SELECT tenant_id, id FROM jobs WHERE status = 'running'")
        jobs = self.node.started_jobs() if running else None
        for tenant, job in running:
            progress = (jobs.get(str(tenant), str(job)).get("progress") if jobs else None) or {}
            done.add_metric([str(tenant), str(job)], float(progress.get("items_done", 0)))
            total.add_metric([str(tenant), str(job)], float(progress.get("items_total", 0)))
        yield done
        yield total


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _age(at: datetime | None) -> float:
    if at is None:
        return 0.0
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - at).total_seconds())
