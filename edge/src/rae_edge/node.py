"""``EdgeNode``: the node's composition root, the one place its services are built.

``EdgeNode(settings)`` opens (and migrates) the data folder and makes the stores, the push
bus and the one writer; each service is built once, on first use (like Synapse's
``HomeServer`` builders), and given in ``__init__`` only the parts it needs: stores,
settings, the bus, the writer, and callables for what loads lazily (the embedding model,
the indexer, the memory service). No service module imports this one (``lint-imports``
forbids it, type-only imports included): services reach each other through what is
passed in, upward calls (sync agent, voice, alarms -> writer or memory) through small
Protocols. CLI commands, the tablet API and workers are handed the built node and read
its services as attributes (``node.memory``, ``node.voice``, ``node.writer``...).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from rae_edge.alarms.writer import AlarmDeps
from rae_edge.audit import AuditLog
from rae_edge.config import EdgeSettings
from rae_edge.drift import DriftMonitor
from rae_edge.push import PushBus
from rae_edge.store import DuckStore, LanceStore
from rae_edge.write.writer import Writer

if TYPE_CHECKING:
    from rae_edge.alarms.service import AlarmService
    from rae_edge.embedding import EmbeddingService
    from rae_edge.indexer import Indexer
    from rae_edge.ingest.pipeline import IngestContext
    from rae_edge.memory import MemoryService
    from rae_edge.memory.feedback import FeedbackService
    from rae_edge.memory.jobs import DocumentJobs
    from rae_edge.sync_agent import SyncAgent
    from rae_edge.voice import VoiceService

# Models load from packaged files only: a hub download must never be attempted.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class EdgeNode:
    """Opens (and migrates) the node's data folder and builds its services."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.data_dir: Path = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.duck = DuckStore(self.data_dir / "node.duckdb")
        self.lance = LanceStore(self.data_dir / "lance")
        # The node's audit log (entries go to central when sync is on); the push bus puts
        # every delivery to a tablet on record there.
        self.audit = AuditLog(self.duck, outbox=settings.sync_on)
        # Made here, not lazily: every thread must publish to the one bus.
        self.push = PushBus(self.duck, audit=self.audit)
        self.sync: SyncAgent | None = None  # started by ``start_sync``
        # The node's one drift monitor (its lock serialises refreshes).
        self.drift = DriftMonitor(self.duck, self.lance, sync_on=settings.sync_on)
        # The one path facts take in (made here, not lazily: observers see every write).
        self.writer = Writer(self.duck, sync_on=settings.sync_on, wake=self._wake_sync,
                             indexer=lambda: self.indexer, push=self.push,
                             drift=lambda: self.drift)
        # Pushes a write owed when the node last stopped (crashed between its commit and
        # its push): sent before anything else is served.
        self.push.send_owed()
        self.alarm_deps = AlarmDeps(tenant_id=self.tenant_id, duck=self.duck,
                                    data_dir=self.data_dir, push=self.push,
                                    memory=lambda: self.memory)

    def _wake_sync(self) -> None:
        # The agent polls the outbox every 0.2 s; waking it at once takes that off the
        # edge-to-edge lag of a correction.
        if self.sync is not None:
            self.sync.notify()

    @property
    def tenant_id(self) -> str:
        return self.settings.node.tenant_id

    @cached_property
    def embedder(self) -> EmbeddingService:
        """The embedding service, loaded on first use (the model is shared per process)."""
        from rae_edge.embedding import EmbeddingService

        return EmbeddingService(self.settings.embedding)

    @cached_property
    def indexer(self) -> Indexer:
        """Turns incidents, chunks and corrections into searchable rows (embeds them)."""
        from rae_edge.indexer import Indexer

        return Indexer(self.duck, self.lance, abbreviations=self.settings.abbreviations,
                       embedder=lambda: self.embedder)

    def ingest_target(self, tenant_id: str) -> IngestContext:
        """Where ``ingest_paths`` stores one tenant's files (a node may serve several)."""
        from rae_edge.ingest.pipeline import IngestContext

        return IngestContext(tenant_id=tenant_id, duck=self.duck, settings=self.settings,
                             writer=self.writer, indexer=self.indexer)

    @cached_property
    def memory(self) -> MemoryService:
        """Briefing, hybrid search, corrections, context packs, document jobs."""
        from rae_edge.memory import MemoryService

        return MemoryService(self.duck, self.lance, settings=self.settings, push=self.push,
                             writer=self.writer, indexer=lambda: self.indexer,
                             embedder=lambda: self.embedder, drift=self.drift,
                             ingest_target=self.ingest_target)

    @property
    def feedback(self) -> FeedbackService:
        """"This fixed it" verdicts (the memory service's; the sync agent stores those of
        other plants here)."""
        return self.memory.feedback

    def started_jobs(self) -> DocumentJobs | None:
        """The document jobs if the memory service exists (a metrics scrape builds none)."""
        return self.memory.jobs if "memory" in self.__dict__ else None

    @cached_property
    def voice(self) -> VoiceService:
        """Voice notes: upload, transcription worker (started by ``voice.start()``), confirm."""
        from rae_edge.voice import VoiceService

        return VoiceService(self.duck, self.lance, settings=self.settings.voice,
                            audio_dir=self.data_dir / "audio",
                            node_id=self.settings.node.node_id,
                            corrections=lambda: self.memory, indexer=lambda: self.indexer,
                            push=self.push)

    @cached_property
    def alarms(self) -> AlarmService:
        """Machine alarm sources (``alarms`` settings): ``start()``/``stop()`` with the app."""
        from rae_edge.alarms.service import AlarmService

        return AlarmService(self.alarm_deps, self.settings.alarms)

    def start_sync(self) -> SyncAgent | None:
        """Starts the sync agent with central when ``sync.enroll_file`` (and a broker URL,
        from ``sync.mqtt_url`` or the identity) are set; ``None`` when sync is off."""
        if self.sync is None:
            from rae_edge.sync_agent import SyncAgent

            self.sync = SyncAgent.from_settings(self)
            if self.sync is not None:
                self.sync.start()
        return self.sync

    def close(self) -> None:
        if "alarms" in self.__dict__:  # its writer stores into the stores closed below
            self.alarms.stop()
        if self.sync is not None:  # unacked rows stay in the outbox for the next start
            self.sync.stop()
        if "voice" in self.__dict__:  # stop the transcription worker before the stores close
            self.voice.stop()
        self.push.flush(5.0)  # briefing pushes still being written
        # Index upkeep commits nothing until it ends (an unfinished one is redone later),
        # but a test or a restore that reopens the folder should find it settled.
        self.lance.wait_for_upkeep(30.0)
        self.duck.close()
