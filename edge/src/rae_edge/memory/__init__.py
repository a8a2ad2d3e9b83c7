"""The memory service: what a scan, a search, a correction and an LLM prompt draw on.

Modules:
- ``models``: the typed answers (briefing, search hits, context pack, corrections);
- ``briefing``: a machine's briefing from its own records, and its one-paragraph summary;
- ``search``: hybrid search (LanceDB vector + full text + exact codes, fused by
  ``ranking``, corrections boosted, superseded memories demoted and marked);
- ``ranking``: fusion weights per query type (code-like / plain), exact codes kept in the
  top 3, "this fixed it" / "not relevant" verdicts applied;
- ``fields``: codes, part numbers and components extracted from each memory (DuckDB);
- ``feedback``: verdicts on memories, stored with who and when, synced like corrections;
- ``context``: context packs under a token budget, corrections before what they correct;
- ``jobs``: background document ingest jobs (persisted, resumed after a restart);
- ``service``: :class:`MemoryService` (``node.memory``), the facade the API and workers use.
"""

from rae_edge.memory.service import MemoryService

__all__ = ["MemoryService"]
