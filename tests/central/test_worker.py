"""The ingest worker against a real mosquitto and PostgreSQL: acks after commit, fan-out
to the tenant's other node only, idempotent redelivery, replay request on a seq gap, and
bad messages dead-lettered while the loop goes on."""

from __future__ import annotations

import json

from rae_central.worker import IngestWorker
from rae_sync.messages import CorrectionMsg
from tests.central.conftest import Central
from tests.central.edge_sim import wait_for


def test_corrections_are_stored_acked_and_fanned_out(central: Central,
                                                     worker: IngestWorker) -> None:
    a, b, x = central.edge("a"), central.edge("b"), central.edge("x")
    try:
        envs = [a.correction(f"sensor {i} was loose", target_id="inc_1") for i in range(20)]
        a.send(envs)
        a.deliver_all(timeout=30)
        assert central.store.count("corrections", "acme") == 20
        # every correction reaches the other plant of the tenant, signed by central
        wait_for(lambda: len(b.received(CorrectionMsg)) == 20, what="fan-out to node-b")
        got = {e.message_as(CorrectionMsg).correction.id for e in b.received(CorrectionMsg)}
        assert got == {e.message_as(CorrectionMsg).correction.id for e in envs}
        origin = b.received(CorrectionMsg)[0].message_as(CorrectionMsg).origin
        assert origin is not None and origin.node_id == "node-a"
        assert a.received(CorrectionMsg) == [] and x.received(CorrectionMsg) == []
        # the same messages again (an edge that missed the ack): acked, not stored twice
        a.acked.clear()
        a.deliver_all(timeout=30)
        assert central.store.count("corrections") == 20
        assert central.store.count("messages") == 20
        # sent is not delivered: central keeps B's rows until B acks applying them
        assert central.store.count("fanout") == 20
        assert central.store.pending_down(b.node) == sorted(
            e.seq for e in b.received(CorrectionMsg))
        b.ack_applied(b.received(CorrectionMsg))
        wait_for(lambda: central.store.count("fanout") == 0, what="B's rows dropped on its ack")
        assert len(b.received(CorrectionMsg)) == 20
        # both plants' corrections of one target survive, in HLC order
        b.correction("no, it was the cable", target_id="inc_1")
        b.deliver_all(timeout=30)
        hist = central.store.corrections_of("acme", "inc_1")
        assert len(hist) == 21 and hist[-1]["origin"] == "plant-2/node-b"
        assert [h["hlc"] for h in hist] == sorted(h["hlc"] for h in hist)
    finally:
        for e in (a, b, x):
            e.close()


def test_seq_gap_asks_the_node_to_replay(central: Central, worker: IngestWorker) -> None:
    a = central.edge("a")
    try:
        e1, e2, e3, e4 = (a.correction(f"note {i}") for i in range(4))
        a.send([e1, e2, e4])  # e3 (seq 3) lost on the way
        wait_for(lambda: a.replays(), what="a replay request")
        req = a.replays()[0]
        assert (req.from_seq, req.to_seq) == (3, 3)
        assert central.store.gaps(a.node) == [(3, 3)]
        a.send([e3])  # the replay
        wait_for(lambda: central.store.gaps(a.node) == [], what="the gap to close")
        node = next(n for n in central.store.nodes_overview() if n["node_id"] == "node-a")
        assert node["last_seq"] == 4 and node["missing_seqs"] == 0
    finally:
        a.close()


def test_bad_messages_are_dead_lettered_and_the_loop_goes_on(
        central: Central, worker: IngestWorker) -> None:
    a = central.edge("a")
    try:
        assert a.transport is not None
        good = a.correction("good one")
        # forged: a valid envelope whose text was changed after signing
        forged_env = a.correction("original")
        raw = json.loads(forged_env.encode())
        raw["payload"]["correction"]["text"] = "tampered"
        a.transport.publish(forged_env.topic, json.dumps(raw).encode())
        # an unknown schema version
        newer = json.loads(a.correction("from the future").encode())
        newer["schema_version"] = 99
        a.transport.publish(forged_env.topic, json.dumps(newer).encode())
        # malformed: not JSON at all
        a.transport.publish(forged_env.topic, b"{not json")
        # a tenant the sender does not belong to, signed correctly by the sender
        c = a.correction("cross-tenant")
        cross = json.loads(c.encode())
        cross["payload"]["correction"]["tenant_id"] = "globex"
        from rae_sync.envelope import Envelope, seal  # re-sign the altered payload
        altered = Envelope.model_validate({**cross, "signature": ""})
        resigned = seal(altered.message(), key=a.identity.private_key, tenant_id="acme",
                        site_id="plant-1", node_id="node-a", direction=altered.direction,
                        seq=altered.seq, hlc=altered.hlc)
        a.transport.publish(resigned.topic, resigned.encode())
        a.send([good])
        wait_for(lambda: central.store.count("dead_letters") >= 4, what="4 dead letters")
        reasons = {d["reason"].split(":")[0] for d in central.store.dead_letters()}
        assert {"bad_signature", "unknown_schema_version", "malformed"} <= reasons
        assert any("tenant 'globex'" in d["reason"] for d in central.store.dead_letters())
        wait_for(lambda: good.message_id in a.acked, what="the good message after the bad")
        assert central.store.count("corrections", "globex") == 0
        # a revoked node is refused from then on
        central.store.revoke(a.node)
        late = a.correction("after revocation")
        a.send([late])
        wait_for(lambda: any(d["reason"].startswith("unknown_node")
                             for d in central.store.dead_letters()), what="refusal")
        assert late.message_id not in a.acked
        assert worker.stats.dead >= 5 and worker.stats.accepted >= 1
    finally:
        a.close()
