"""The memory service: what a scan, a search, a correction and an LLM prompt draw on.

Modules:
- ``models``: the typed answers (briefing, search hits, context pack, corrections);
- ``briefing``: a machine's briefing from its own records, and its one-paragraph summary;
- ``search``: hybrid search (LanceDB vector + full text, reciprocal rank fusion,
  corrections boosted, superseded memories demoted and marked);
- ``context``: context packs under a token budget, corrections before what they correct;
- ``jobs``: background document ingest jobs (persisted, resumed after a restart);
- ``service``: :class:`MemoryService` (``node.memory``), the facade the API and workers use.
"""

from rae_edge.memory.service import MemoryService

__all__ = ["MemoryService"]
