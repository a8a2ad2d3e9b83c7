"""Central's database layer on a real PostgreSQL: migrations, idempotent ingest, seq
watermark and gaps, fan-out rows, revocation, dead letters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from rae_central.db import migrate
from rae_central.db.engine import make_engine
from rae_central.store import Accepted, CentralStore, NodeNotFoundError, NodeStatus

A = ("acme", "plant-1", "node-a")
B = ("acme", "plant-2", "node-b")
OTHER = ("globex", "plant-9", "node-x")


def _cor(node: tuple[str, str, str], seq: int, target: str | None = None) -> Accepted:
    return Accepted(node=node, message_id=f"msg-{node[2]}-{seq}", seq=seq,
                    hlc=f"{1000 + seq:016d}-0000-{node[2]}", type="correction",
                    kind="correction", record={
                        "id": f"cor-{node[2]}-{seq}", "machine_id": "press-7",
                        "text": f"sensor {seq} was loose", "author": "tech",
                        "target_id": target, "method": "typed",
                        "valid_from": datetime(2026, 1, 1, tzinfo=UTC), "valid_to": None,
                        "audio_sha256": None, "hlc": f"{1000 + seq:016d}-0000-{node[2]}"})


@pytest.fixture
def store(pg_url: str) -> CentralStore:
    assert migrate.upgrade(pg_url) == migrate.head()
    s = CentralStore(make_engine(pg_url))
    for n in (A, B, OTHER):
        s.enroll(n, f"key-{n[2]}")
    return s


def test_migrate_is_idempotent_and_checked(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with pytest.raises(migrate.SchemaMismatchError, match="rae-central migrate"):
        migrate.check_current(engine)
    migrate.upgrade(pg_url)
    migrate.upgrade(pg_url)
    migrate.check_current(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaMismatchError, match="newer than this code"):
        migrate.check_current(engine)
    engine.dispose()


def test_ingest_is_idempotent_and_fans_out(store: CentralStore) -> None:
    built: list[tuple[str, tuple[str, str, str]]] = []

    def build(a: Accepted, peer: tuple[str, str, str]) -> tuple[str, bytes]:
        built.append((a.message_id, peer))
        return f"rae/v1/{'/'.join(peer)}/down/correction", a.message_id.encode()

    out = store.ingest([_cor(A, 1), _cor(A, 2)], build)
    assert [a.seq for a in out.new] == [1, 2] and not out.duplicates
    # one fan-out per correction to the tenant's other node only (not to globex)
    assert sorted(f.node for f in out.fanout) == [B, B]
    again = store.ingest([_cor(A, 2), _cor(A, 1)], build)
    assert not again.new and len(again.duplicates) == 2 and not again.fanout
    assert store.count("corrections") == 2 and store.count("messages") == 2
    store.fanout_sent(out.fanout)
    assert store.count("fanout") == 0


def test_out_of_order_seqs_move_the_watermark_and_gaps_show(store: CentralStore) -> None:
    store.ingest([_cor(A, 3), _cor(A, 4)])
    assert store.gaps(A) == [(1, 2)]
    row = next(n for n in store.nodes_overview() if n["node_id"] == "node-a")
    assert (row["last_seq"], row["max_seq"], row["missing_seqs"]) == (0, 4, 2)
    assert [g.node for g in store.due_replays(grace_s=0, every_s=60)] == [A]
    assert store.due_replays(grace_s=0, every_s=60) == []  # claimed once, not again at once
    store.ingest([_cor(A, 1), _cor(A, 2), _cor(A, 6)])
    assert store.gaps(A) == [(5, 5)]
    store.ingest([_cor(A, 5)])
    assert store.gaps(A) == []
    row = next(n for n in store.nodes_overview() if n["node_id"] == "node-a")
    assert (row["last_seq"], row["missing_seqs"]) == (6, 0)


def test_two_plants_correcting_one_target_both_survive_in_hlc_order(
        store: CentralStore) -> None:
    store.ingest([_cor(B, 5, target="inc-1")])
    store.ingest([_cor(A, 1, target="inc-1")])
    got = store.corrections_of("acme", "inc-1")
    assert [c["origin"] for c in got] == ["plant-1/node-a", "plant-2/node-b"]
    assert store.corrections_of("globex", "inc-1") == []


def test_status_revoke_and_dead_letters(store: CentralStore) -> None:
    store.ingest([Accepted(A, "st-1", 1, "h", "node_status", "status",
                           status=NodeStatus(outbox_depth=17, lag_s=3.5))])
    row = next(n for n in store.nodes_overview("acme") if n["node_id"] == "node-a")
    assert (row["outbox_depth"], row["lag_s"], row["last_seq"]) == (17, 3.5, 1)
    assert store.node_state(A) == "active"
    store.revoke(A)
    assert store.node_state(A) == "revoked" and A not in store.active_keys()
    assert store.node_state(("acme", "x", "y")) == "unknown"
    with pytest.raises(NodeNotFoundError):
        store.revoke(("acme", "x", "y"))
    store.dead_letter([("rae/v1/acme/plant-1/node-a/up/correction", b"{nope", "malformed", A)])
    dl = store.dead_letters()
    assert dl[0]["reason"] == "malformed" and dl[0]["node_id"] == "node-a"
