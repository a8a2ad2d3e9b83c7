"""``EdgeNode``: the one service object that owns an edge node's stores and services.

Everything else (CLI commands, the tablet API, workers) is handed an ``EdgeNode`` and
goes through it, so a data folder is opened once per process.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from rae_edge.config import EdgeSettings
from rae_edge.push import PushBus
from rae_edge.store import DuckStore, LanceStore
from rae_edge.write.writer import Writer

if TYPE_CHECKING:
    from rae_edge.alarms.service import AlarmService
    from rae_edge.drift import DriftMonitor
    from rae_edge.embedding import EmbeddingService
    from rae_edge.indexer import Indexer
    from rae_edge.memory import MemoryService
    from rae_edge.sync_agent import SyncAgent
    from rae_edge.voice import VoiceService

# Models load from packaged files only: a hub download must never be attempted.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class EdgeNode:
    """Opens (and migrates) the node's data folder."""

    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        self.data_dir: Path = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.duck = DuckStore(self.data_dir / "node.duckdb")
        self.lance = LanceStore(self.data_dir / "lance")
        # Made here, not lazily: every thread must publish to the one bus.
        self.push = PushBus(self.duck)
        self.sync: SyncAgent | None = None  # started by ``start_sync``
        # The one path facts take in (made here, not lazily: observers see every write).
        self.writer = Writer(self.duck, sync_on=settings.sync_on, wake=self._wake_sync,
                             indexer=lambda: self.indexer, push=self.push,
                             drift=self._drift)

    def _wake_sync(self) -> None:
        # The agent polls the outbox every 0.2 s; waking it at once takes that off the
        # edge-to-edge lag of a correction.
        if self.sync is not None:
            self.sync.notify()

    def _drift(self) -> DriftMonitor:
        from rae_edge.drift import monitor

        return monitor(self)

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

        return Indexer(self)

    @cached_property
    def memory(self) -> MemoryService:
        """Briefing, hybrid search, corrections, context packs, document jobs."""
        from rae_edge.memory import MemoryService

        return MemoryService(self)

    @cached_property
    def voice(self) -> VoiceService:
        """Voice notes: upload, transcription worker (started by ``voice.start()``), confirm."""
        from rae_edge.voice import VoiceService

        return VoiceService(self)

    @cached_property
    def alarms(self) -> AlarmService:
        """Machine alarm sources (``alarms`` settings): ``start()``/``stop()`` with the app."""
        from rae_edge.alarms.service import AlarmService

        return AlarmService(self, self.settings.alarms)

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
        self.duck.close()
