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

    def build(a: Accepted, peer: tuple[str, str, str], pos: int) -> tuple[str, bytes, str]:
        built.append((a.message_id, peer))
        return (f"rae/v1/{'/'.join(peer)}/down/correction", a.message_id.encode(),
                f"down-{pos}")

    out = store.ingest([_cor(A, 1), _cor(A, 2)], build)
    assert [a.seq for a in out.new] == [1, 2] and not out.duplicates
    # one fan-out per correction to the tenant's other node only (not to globex)
    assert sorted(f.node for f in out.fanout) == [B, B]
    again = store.ingest([_cor(A, 2), _cor(A, 1)], build)
    assert not again.new and len(again.duplicates) == 2 and not again.fanout
    assert store.count("corrections") == 2 and store.count("messages") == 2
    # published (the broker has them) is not delivered: the rows stay until B acks
    assert store.count("fanout") == 2
    assert store.pending_down(B) == sorted(f.id for f in out.fanout)


def _from(node: tuple[str, str, str], seq: int, kind: str, **record: object) -> Accepted:
    return Accepted(node=node, message_id=f"msg-{node[2]}-{seq}", seq=seq,
                    hlc=f"{2000 + seq:013d}-000000", type=kind, kind=kind, record=record)


def test_down_rows_stay_until_the_node_acks_and_resume_replays_them(
        store: CentralStore) -> None:
    def build(a: Accepted, peer: tuple[str, str, str], pos: int) -> tuple[str, bytes, str]:
        return f"rae/v1/{'/'.join(peer)}/down/correction", b"x", f"down-{pos}"

    out = store.ingest([_cor(A, s) for s in range(1, 6)], build)
    ids = [f.id for f in out.fanout]
    assert len(ids) == 5 and store.pending_down(B) == ids
    # sent just now: nothing is due again yet, also not to a node heard from since
    store.ingest([_from(B, 1, "node_status")], build)
    assert store.claim_due_fanout(resend_after_s=60, window=100) == []
    # B resumes (a reconnect, the broker may have lost everything): all five are due,
    # in windows of 2, oldest first, and the same row is never handed out twice
    res = store.ingest([_from(B, 2, "resume", cursor=0, applied=0)], build)
    assert res.resumed == [B]
    first = store.claim_due_fanout(resend_after_s=60, window=2)
    assert [f.id for f in first] == ids[:2]
    assert store.claim_due_fanout(resend_after_s=60, window=2) == []
    # B acks the first two as applied (an ack of another node's row deletes nothing)
    foreign = store.ingest([_from(A, 90, "ack", seqs=[ids[2]],
                                  message_ids=[f"down-{ids[2]}"])], build)
    assert foreign.resumed == []
    freed = store.ingest([_from(B, 3, "ack", seqs=ids[:2],
                                message_ids=[f"down-{i}" for i in ids[:2]])], build)
    assert freed.resumed == [B], "acks free B's window: its next rows go at once"
    assert store.pending_down(B) == ids[2:]
    second = store.claim_due_fanout(resend_after_s=60, window=2)
    assert [f.id for f in second] == ids[2:4]
    store.ingest([_from(B, 4, "ack", seqs=ids[2:4],
                        message_ids=[f"down-{i}" for i in ids[2:4]])], build)
    assert [f.id for f in store.claim_due_fanout(60, 2)] == ids[4:]
    store.ingest([_from(B, 5, "ack", seqs=ids[4:], message_ids=[f"down-{ids[4]}"]),
                  _from(B, 6, "resume", cursor=ids[4], applied=5)], build)
    assert store.pending_down(B) == [] and store.count("fanout") == 0
    [b] = [n for n in store.nodes_overview() if n["node_id"] == "node-b"]
    assert (b["down_pending"], b["down_cursor"], b["down_acked"], b["away"]) == (0, ids[4], 5,
                                                                                False)


def test_a_node_away_past_the_horizon_shows_what_it_has_not_received(
        store: CentralStore) -> None:
    def build(a: Accepted, peer: tuple[str, str, str], pos: int) -> tuple[str, bytes, str]:
        return f"rae/v1/{'/'.join(peer)}/down/correction", b"x", f"down-{pos}"

    store.ingest([_from(B, 1, "node_status")], build)
    store.ingest([_cor(A, s) for s in range(1, 4)], build)
    with store.engine.begin() as conn:  # B was last heard from 30 days ago
        conn.execute(sa.text("UPDATE nodes SET last_seen = now() - interval '30 days' "
                             "WHERE node_id = 'node-b'"))
    [b] = [n for n in store.nodes_overview(away_after_s=7 * 86_400) if n["node_id"] == "node-b"]
    assert b["away"] is True and b["down_pending"] == 3 and b["down_oldest_at"]
    [b] = [n for n in store.fleet_overview(away_after_s=7 * 86_400) if n["node_id"] == "node-b"]
    assert b["away"] is True and b["down_pending"] == 3
    # nothing was dropped for it
    assert store.count("fanout") == 3


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


def test_corrections_with_one_stamp_order_as_at_the_nodes(store: CentralStore) -> None:
    """Two nodes' clocks can give the same stamp; the tie goes as in the nodes'
    briefings (``rae_edge.store.duck``): the origin's wall clock first, then the id."""
    stamp = "1764000000000-000007"
    later, earlier = _cor(A, 1, target="inc-1"), _cor(B, 1, target="inc-1")
    later.record.update(id="cor-0-later", hlc=stamp,
                        valid_from=datetime(2026, 1, 1, 0, 2, tzinfo=UTC))
    earlier.record.update(id="cor-1-earlier", hlc=stamp)
    store.ingest([later])
    store.ingest([earlier])
    got = store.corrections_of("acme", "inc-1")
    assert [c["id"] for c in got] == ["cor-1-earlier", "cor-0-later"]


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
