"""An accepted upload is ingested even when the node stopped before its job ran: the
next node on the same data folder resumes it (ingest is idempotent)."""

from __future__ import annotations

import json
from pathlib import Path

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_sync.domain import Machine

CSV = (b"timestamp,machine,code,message,action\n"
       b"2026-11-20T05:00:00,P1,E77,Coolant pump cavitating,Bled the pump\n")


def test_unfinished_job_is_resumed_by_the_next_node(tmp_path: Path) -> None:
    settings = config.load(None, data_dir=tmp_path / "n", node={"tenant_id": "acme"})
    first = EdgeNode(settings)
    first.duck.upsert_machines([Machine(tenant_id="acme", id="P1", name="P1", qr_code="P1")])
    jobs = first.memory.jobs
    job_id, folder = jobs.new_upload_dir()
    (folder / "log.csv").write_bytes(CSV)
    # As the API leaves it just before the worker picks it up: row written, file complete.
    with first.duck.transaction() as cur:
        cur.execute("INSERT INTO jobs (tenant_id, id, kind, status, params) VALUES "
                    "('acme', ?, 'ingest', 'running', ?)",
                    [job_id, json.dumps({"path": str(folder / "log.csv"), "kind": "errors",
                                         "machine_id": None, "filename": "log.csv"})])
    first.close()
    second = EdgeNode(settings)
    try:
        job = second.memory.jobs.wait("acme", job_id, 120)
        assert job["status"] == "done", job
        assert job["result"]["added"] == 1 and job["result"]["files"][0]["path"] == "log.csv"
        assert [i.symptom for i in second.duck.incidents_for_machine("acme", "P1")] == [
            "Coolant pump cavitating"]
        # New incidents of a job are announced on the push bus (one per machine).
        msgs = second.push.since("acme", ["P1"], 0)
        assert [m.type for m in msgs] == ["incident"]
        assert msgs[0].payload["incident"]["symptom"] == "Coolant pump cavitating"
    finally:
        second.close()
