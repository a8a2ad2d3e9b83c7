"""The indexer on a real node: rows in LanceDB with vectors, expanded search text, model
id; nothing indexed twice; corrections findable by machine."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.store.lance import sql_literal
from rae_sync.domain import Correction, DocumentChunk, Incident, MemoryKind


def _incident(symptom: str, action: str, code: str | None = None) -> Incident:
    return Incident(tenant_id="acme", machine_id="press-1", error_code=code,
                    occurred_at=datetime(2026, 3, 1, 8, tzinfo=UTC), symptom=symptom,
                    action=action, source="test")


def test_incidents_chunks_and_corrections_are_indexed_once(node: EdgeNode) -> None:
    inc = _incident("L/H CYL LEAKING at the bucket", "R&R seal kit", "E404")
    assert node.indexer.index_incidents([inc, inc]) == 1
    assert node.indexer.index_incidents([inc]) == 0  # already there: not embedded again

    chunk = DocumentChunk(tenant_id="acme", id="chk_1", document_id="doc_1",
                          document_title="Press manual", page=3, section="4.2 Sensor faults",
                          text="E404 means the light barrier sensor does not answer.",
                          error_codes=("E404",), machine_ids=("press-1", "press-2"))
    assert node.indexer.index_chunks([chunk]) == 2  # one row per named machine
    cor = Correction(tenant_id="acme", machine_id="press-1", author="ana",
                     text="The E404 was a loose sensor cable, not the sensor", target_id=inc.id)
    assert node.indexer.index_corrections([cor]) == 1

    rows = {r["id"]: r for r in node.lance.rows(
        f"tenant_id = {sql_literal('acme')}",
        ["id", "kind", "machine_id", "text", "search_text", "vector", "error_codes",
         "model_id", "target_id", "page", "section", "document_id"], 100)}
    assert set(rows) == {inc.id, "chk_1~press-1", "chk_1~press-2", cor.id}
    r = rows[inc.id]
    assert r["text"] == "E404: L/H CYL LEAKING at the bucket — R&R seal kit"
    assert "left hand" in r["search_text"] and "remove and replace" in r["search_text"]
    assert r["error_codes"] == ["E404"] and r["kind"] == MemoryKind.INCIDENT.value
    assert r["model_id"] == node.embedder.model_id
    v = np.asarray(r["vector"], dtype=np.float32)
    assert np.allclose(v, node.embedder.embed([r["search_text"]])[0], atol=1e-5)
    c = rows["chk_1~press-2"]
    assert (c["page"], c["section"], c["document_id"], c["machine_id"]) == (
        3, "4.2 Sensor faults", "doc_1", "press-2")
    assert rows[cor.id]["target_id"] == inc.id and rows[cor.id]["error_codes"] == ["E404"]

    # A plain-words query finds the terse incident through the expanded search text.
    hits = node.lance.text_search("left hand cylinder", f"machine_id = {sql_literal('press-1')}",
                                  5, ["id"])
    assert hits and hits[0]["id"] == inc.id


def test_reindex_re_embeds_rows_of_another_model(node: EdgeNode) -> None:
    incs = [_incident(f"hydraulic hose {n} leaking", "replaced hose") for n in range(3)]
    node.indexer.index_incidents(incs)
    assert node.indexer.stale_count() == 0
    # Rows written by an older model: other id, other (here: zero) vectors.
    node.lance.table.update(where=f"id = {sql_literal(incs[0].id)}",
                            values={"model_id": "old-model@0", "vector": [0.0] * 384})
    assert node.indexer.stale_count() == 1
    assert node.indexer.reindex() == 1
    assert node.indexer.stale_count() == 0
    row = node.lance.rows(f"id = {sql_literal(incs[0].id)}", ["vector", "model_id", "text"], 1)[0]
    assert row["model_id"] == node.embedder.model_id
    assert np.allclose(row["vector"], node.embedder.embed(
        [node.indexer.incident_row(incs[0])["search_text"]])[0], atol=1e-5)
    assert node.lance.count() == 3  # rewritten in place, nothing added or lost


def test_reindex_command(tmp_path: Path) -> None:
    settings = config.load(None, data_dir=tmp_path / "node")
    node = EdgeNode(settings)
    inc = _incident("conveyor belt slipping", "tensioned belt")
    node.indexer.index_incidents([inc])
    node.lance.table.update(where=f"id = {sql_literal(inc.id)}", values={"model_id": "old@0"})
    node.close()
    cmd = [str(Path(sys.executable).parent / "rae-edge"), "reindex", "--data-dir",
           str(tmp_path / "node")]
    check = subprocess.run([*cmd, "--check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and check.stdout.startswith("1 of 1 rows")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "re-embedded 1 row(s)" in done.stdout
    assert subprocess.run([*cmd, "--check"], capture_output=True, timeout=120).returncode == 0
