"""The edges' audit logs verified at central: entries synced through the real broker and
ingest worker into PostgreSQL; ``rae-central audit verify`` passes on the intact chains
and exits non-zero naming the seq when an entry is edited or removed at central; the
console shows each node's chain (incrementally verified) to its tenant's token only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from rae_central.admin.app import create_app
from rae_central.audit_verify import verify
from rae_central.cli import main
from rae_central.worker import IngestWorker
from rae_sync.domain import AuditEntry, utcnow
from rae_sync.messages import AuditEntryMsg
from tests.central.conftest import Central
from tests.central.edge_sim import EdgeSim, wait_for

TOKENS = {"acme": "acme-console-token-0123", "globex": "globex-console-token-0123"}
GENESIS = "0" * 64


def _log(edge: EdgeSim, seqs: list[int], prev: str = GENESIS) -> list[AuditEntry]:
    """A tenant's hash chain as the edge's audit log writes it (its seqs are the node's
    global counter, so they may skip numbers), queued for central."""
    out = []
    start = utcnow() - timedelta(minutes=5)
    for i, seq in enumerate(seqs):
        at = start + timedelta(seconds=i)
        fields = {"tenant_id": edge.node[0], "seq": seq, "at": at, "actor": "tok:ana",
                  "action": "briefing", "resource": "/machines/P3/briefing",
                  "memory_ids": (f"inc-{seq}", f"cor-{seq}")}
        digest = AuditEntry.compute_hash(prev, seq, at, edge.node[0], "tok:ana", "briefing",
                                         "/machines/P3/briefing", fields["memory_ids"])
        e = AuditEntry(**fields, prev_hash=prev, hash=digest)  # type: ignore[arg-type]
        env = edge.envelope(AuditEntryMsg(entry=e))
        edge.outbox[env.message_id] = env
        out.append(e)
        prev = digest
    return out


def _cli(central: Central, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    rc = main(["audit", "verify", "--database-url", central.settings.database_url, *extra])
    got = capsys.readouterr()
    return rc, got.out + got.err


def test_audit_chains_verify_at_central(central: Central, worker: IngestWorker,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    a, x = central.edge("a"), central.edge("x")
    app_store = central.app_store()
    try:
        chain = _log(a, [1, 2, 4, 5, 7, 8])
        _log(x, [1, 2, 3])
        a.deliver_all()
        x.deliver_all()
        wait_for(lambda: central.store.count("audit_entries") == 9, what="the audit entries")
        assert chain[-1].seq == 8

        rc, out = _cli(central, capsys)
        assert rc == 0, out
        assert "acme/plant-1/node-a: audit chain ok (6 entries)" in out
        assert "globex/plant-9/node-x: audit chain ok (3 entries)" in out
        assert "acme/plant-2/node-b: audit chain ok (0 entries)" in out  # sent none

        # the console: each tenant's own nodes, verified incrementally
        with TestClient(create_app(app_store, "operator-0123456789",
                                   tenant_tokens=TOKENS)) as client:
            def chains(token: str) -> dict[str, str]:
                r = client.get("/api/v1/admin/audit",
                               headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                return {c["node_id"]: c["text"] for c in r.json()}

            assert chains(TOKENS["acme"]) == {"node-a": "audit chain ok (6 entries)",
                                              "node-b": "audit chain ok (0 entries)"}
            assert chains(TOKENS["globex"]) == {"node-x": "audit chain ok (3 entries)"}
            assert chains("operator-0123456789") == {}

            # new entries are checked from the last verified hash on
            _log(a, [10, 11], prev=chain[-1].hash)
            a.deliver_all()
            assert chains(TOKENS["acme"])["node-a"] == "audit chain ok (8 entries)"
            with central.store.tx("acme") as conn:
                tail = conn.execute(text(
                    "SELECT last_seq, entries FROM audit_verified WHERE node_id = 'node-a'"
                )).one()
            assert tuple(tail) == (11, 8)

            # someone edits an entry in central's database: the full check finds it
            with central.store.tx("acme") as conn:
                conn.execute(text(
                    "UPDATE audit_entries SET entry = jsonb_set(entry, '{actor}', "
                    "'\"tok:mallory\"') WHERE node_id = 'node-a' AND seq = 4"))
            rc, out = _cli(central, capsys)
            assert rc == 1
            assert "acme/plant-1/node-a: broken at seq 4: entry 4 does not match its hash" in out
            assert "globex/plant-9/node-x: audit chain ok (3 entries)" in out
            rc, out = _cli(central, capsys, "--tenant", "globex")
            assert rc == 0 and "node-a" not in out

        # ... or removes one from the middle, or the last one
        with central.store.tx("acme") as conn:
            conn.execute(text("UPDATE audit_entries SET entry = jsonb_set(entry, '{actor}', "
                              "'\"tok:ana\"') WHERE node_id = 'node-a' AND seq = 4"))
        assert _cli(central, capsys)[0] == 0
        with central.store.tx("acme") as conn:
            conn.execute(text("DELETE FROM audit_entries WHERE node_id = 'node-a' AND seq = 5"))
        rc, out = _cli(central, capsys, "--tenant", "acme")
        assert rc == 1
        assert "broken at seq 7: entry 7 does not chain to the entry before it" in out
        (node_a,) = [r for r in verify(app_store, "acme", incremental=True)
                     if r.node_id == "node-a"]
        assert node_a.ok  # the incremental check trusts what it verified before ...
        with central.store.tx("acme") as conn:
            conn.execute(text("DELETE FROM audit_entries WHERE node_id = 'node-a' AND seq > 5"))
        rc, out = _cli(central, capsys, "--tenant", "acme")
        assert rc == 1 and "an entry after seq 4 is missing" in out
        (node_a,) = [r for r in verify(app_store, "acme", incremental=True)
                     if r.node_id == "node-a"]
        # ... but sees that the last entry it verified is gone
        assert not node_a.ok and node_a.line() == (
            "broken at seq 11: entry 11 was verified before and is now gone")
    finally:
        a.close()
        x.close()
        app_store.engine.dispose()
