"""``MemoryFields``: structure found in each memory's text (error codes, part/serial
numbers, components; :mod:`rae_edge.ingest.structure`), kept in DuckDB ``memory_fields``.

Written by the indexer for every row it adds (the one place every memory, whatever its
source, becomes searchable), read by search for exact matches and by the briefing to group
incidents by the error code their text names.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from rae_edge.ingest.structure import extract
from rae_edge.store.duck import DuckStore
from rae_sync.domain import Incident

_ARROW = pa.schema([("tenant_id", pa.string()), ("memory_id", pa.string()),
                    ("machine_id", pa.string()), ("field", pa.string()),
                    ("value", pa.string())])
EXACT_FIELDS = ("code", "part")
MAX_EXACT = 500  # memories an exact lookup returns at most (a code on every row is no key)


def row_text(row: Mapping[str, Any]) -> str:
    """What a memory's structure is read from: its heading (section) and its text."""
    section = row.get("section") or ""
    text = str(row.get("text") or "")
    return f"{section}\n{text}" if section and section not in text else text


def incident_text(inc: Incident) -> str:
    """An incident as one searchable line: code, symptom, then what was done (the text it
    is indexed and its fields are extracted from)."""
    parts = [f"{inc.error_code}:" if inc.error_code else "", inc.symptom]
    if inc.action:
        parts.append(f"— {inc.action}")
    return " ".join(p for p in parts if p)


def text_code(inc: Incident) -> str | None:
    """The first error code an incident's text names, as its ``memory_fields`` hold it once
    indexed, computed from the text itself: a regex pass costs microseconds, while looking
    a list of ids up scans ``memory_fields`` (DuckDB uses no index for an id list), and an
    incident not indexed yet has its code too."""
    return _first_code(incident_text(inc))


@functools.lru_cache(maxsize=8192)
def _first_code(text: str) -> str | None:
    # Remembered per text: every briefing of a machine asks again for the same incidents
    # (4.5% of the node's busy time under the load test went to re-extracting them).
    codes = extract(text).codes
    return codes[0] if codes else None


class MemoryFields:
    """Read and write ``memory_fields`` of one node."""

    def __init__(self, duck: DuckStore) -> None:
        self.duck = duck

    def write(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Extracts and stores the fields of new memory rows (``id``, ``tenant_id``,
        ``machine_id``, ``text``, ``section``); one set-based insert. Returns the count."""
        cols: dict[str, list[Any]] = {n: [] for n in _ARROW.names}
        for r in rows:
            for field, value in extract(row_text(r)).fields():
                cols["tenant_id"].append(r["tenant_id"])
                cols["memory_id"].append(str(r["id"]))
                cols["machine_id"].append(r.get("machine_id"))
                cols["field"].append(field)
                cols["value"].append(value)
        if not cols["value"]:
            return 0
        with self.duck.transaction() as cur:
            cur.register("_new_fields", pa.table(cols, schema=_ARROW))
            cur.execute("INSERT INTO memory_fields SELECT tenant_id, memory_id, machine_id, "
                        "field, value FROM _new_fields")
        return len(cols["value"])

    def exact(self, tenant_id: str, values: Sequence[str], machine_id: str | None = None,
              include_general: bool = True) -> dict[str, set[str]]:
        """Memories naming any of ``values`` as a code or part number: ``{id: values}``;
        with ``machine_id`` only that machine's (and, with ``include_general``, those of
        no machine)."""
        if not values:
            return {}
        marks = ", ".join("?" for _ in values)
        params: list[Any] = [tenant_id, *values]
        mine = ""
        if machine_id is not None:
            mine = " AND (machine_id = ?" + (" OR machine_id IS NULL)" if include_general
                                              else ")")
            params.append(machine_id)
        rows = self.duck.query(
            "SELECT memory_id, list(DISTINCT value) FROM memory_fields WHERE tenant_id = ? "
            f"AND field IN ('code', 'part') AND value IN ({marks}){mine} GROUP BY memory_id "
            "LIMIT ?", [*params, MAX_EXACT])
        return {str(m): set(v) for m, v in rows}

    def of(self, tenant_id: str, memory_ids: Sequence[str]) -> dict[str, dict[str, list[str]]]:
        """``{memory id: {field: [values]}}`` for the given memories."""
        if not memory_ids:
            return {}
        out: dict[str, dict[str, list[str]]] = {}
        for m, f, v in self.duck.query(
                "SELECT memory_id, field, value FROM memory_fields WHERE tenant_id = ? AND "
                "list_contains(?, memory_id) ORDER BY rowid", [tenant_id, list(memory_ids)]):
            out.setdefault(str(m), {}).setdefault(str(f), []).append(str(v))
        return out
