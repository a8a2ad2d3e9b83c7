"""Ingest: files in, memories out (incidents in DuckDB, searchable rows in LanceDB).

Modules:
- ``codes``: error/alarm codes (E404, F-12, ALM 3001) found in free text;
- ``structure``: codes, part/serial numbers and components of a text (stored per memory by
  the indexer as ``memory_fields``);
- ``result``: :class:`IngestResult`, what one run added, skipped and rejected (with why);
- ``mapping``: column mappings (YAML/JSON) for error logs and work orders;
- ``pdf``: PDF manuals to page-aware chunks that keep their section headings;
- ``tables``: error-log CSV/JSON-lines and work-order CSV rows to incidents;
- ``shift``: shift reports (text/Markdown) to dated entries linked to the machines named;
- ``pipeline``: :func:`ingest_paths`, the entry point of the CLI and the HTTP job; it
  stores into an ``IngestTarget`` (the built node, or an ``IngestContext`` of one tenant).
"""

from __future__ import annotations

from typing import Any

__all__ = ["IngestResult", "ingest_paths"]


def __getattr__(name: str) -> Any:
    # Lazy, so ``rae_edge.indexer`` can use ``ingest.codes`` without an import cycle.
    if name == "ingest_paths":
        from rae_edge.ingest.pipeline import ingest_paths

        return ingest_paths
    if name == "IngestResult":
        from rae_edge.ingest.result import IngestResult

        return IngestResult
    raise AttributeError(name)
