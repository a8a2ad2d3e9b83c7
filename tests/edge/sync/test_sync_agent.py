"""The edge sync agent against a central stub, over the in-memory broker and a real
mosquitto: rows leave the outbox only on central's ack, outages lose and duplicate
nothing, replays re-send the same envelopes, corrections from other plants are applied
once, and bad input is set aside with its reason."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.sync_agent import SyncAgent
from rae_edge.write.writer import WriteStep
from rae_sync.domain import Correction
from rae_sync.envelope import seal
from rae_sync.hlc import Hlc
from rae_sync.identity import NodeIdentity
from rae_sync.messages import CorrectionMsg
from rae_sync.signing import generate_key
from rae_sync.topics import Direction
from rae_sync.transport import PahoTransport
from tests.edge.sync.central_stub import CentralStub
from tests.edge.sync.conftest import NODE, Rig
from tests.fixtures.mosquitto import Mosquitto


def _wait(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def _corrections_at_central(central: CentralStub) -> dict[str, Correction]:
    out: dict[str, Correction] = {}
    for env in central.of_type("correction"):
        c = env.message_as(CorrectionMsg).correction
        assert c.id not in out, f"correction {c.id} stored under two message ids"
        out[c.id] = c
    return out


def test_outbox_is_drained_only_after_central_acks(rig: Rig) -> None:
    rig.central.acking.clear()
    made = rig.correct(30)
    agent = rig.agent(batch_size=7)
    assert rig.central.wait_until(lambda c: len(c.of_type("correction")) == 30)
    time.sleep(0.3)
    # the broker has them all (PUBACKs came back) but central did not ack: nothing leaves
    assert rig.node.duck.outbox_depth() == 30
    assert agent.stats.unacked >= 30
    rig.central.acking.set()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    got = _corrections_at_central(rig.central)
    assert set(got) == {c.id for c in made}
    seqs = sorted(e.seq for e in rig.central.received.values())
    assert seqs == list(range(1, len(seqs) + 1)), "the node's seq is contiguous from 1"
    st = agent.stats
    assert st.connected and st.last_acked_seq >= 30 and st.last_ack_at is not None
    assert st.outbox_depth == 0


def test_corrections_get_the_hlc_of_their_envelope_here_and_at_central(rig: Rig) -> None:
    made = rig.correct(3)
    rig.agent()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    envs = rig.central.of_type("correction")
    hlcs = [e.message_as(CorrectionMsg).correction.hlc for e in envs]
    assert hlcs == [e.hlc for e in envs] and hlcs == sorted(hlcs) and all(hlcs)
    local = {c.id: c.hlc for c in rig.node.duck.corrections_for_machine("acme", "press-0")}
    assert local[made[0].id] == hlcs[0]


def test_survives_a_broker_restart_with_the_outbox_retained(rig: Rig) -> None:
    made = rig.correct(20)
    agent = rig.agent(resend_after_s=2.0)
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    rig.broker.stop()
    assert _wait(lambda: not agent.stats.connected)
    made += rig.correct(25, start=20)  # written while central is unreachable
    time.sleep(0.5)
    assert rig.node.duck.outbox_depth() == 25, "kept in the outbox during the outage"
    rig.broker.start()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0, timeout=60)
    got = _corrections_at_central(rig.central)
    assert set(got) == {c.id for c in made}
    seqs = sorted(e.seq for e in rig.central.received.values())
    assert seqs == list(range(1, len(seqs) + 1)), "no seq lost or used twice"


def test_seq_and_clock_continue_after_a_restart_of_the_agent(rig: Rig) -> None:
    rig.correct(5)
    first = rig.agent()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    last_hlc = max(e.hlc for e in rig.central.received.values())
    first.stop()
    rig.agents.remove(first)
    rig.correct(5, start=5)
    rig.agent()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    envs = rig.central.of_type("correction")
    assert [e.seq for e in envs][-5:] == sorted(e.seq for e in envs)[-5:]
    later = [e for e in envs if e.seq > 5]
    assert len(later) == 5 and all(e.hlc > last_hlc for e in later)
    assert len({e.seq for e in rig.central.received.values()}) == len(rig.central.received)


def test_replay_request_re_sends_the_same_envelopes(rig: Rig) -> None:
    rig.correct(10)
    rig.agent()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    before = rig.central.deliveries
    originals = {e.seq: e for e in rig.central.of_type("correction")}
    rig.central.send_replay(NODE, 3, 6)
    assert rig.central.wait_until(lambda c: c.deliveries >= before + 4)
    time.sleep(0.3)
    # the same message ids came again, so central's dedupe makes the replay a no-op
    assert {e.seq: e for e in rig.central.of_type("correction")} == originals
    assert rig.central.deliveries >= before + 4


def test_correction_from_another_plant_is_applied_once_and_pushed(rig: Rig) -> None:
    agent = rig.agent()
    c = Correction(tenant_id="acme", machine_id="press-9", text="plant 2: swap the fuse",
                   author="bo", origin_node="node-7", hlc="1764000000000-000005")
    env = rig.central.send_correction(NODE, c, ("acme", "plant-2", "node-7"))
    assert _wait(lambda: agent.stats.applied == 1)
    # a duplicate (central re-sends after a lost ack) changes nothing
    rig.central.send(NODE, env.message_as(CorrectionMsg), message_id=env.message_id)
    again = rig.central.send_correction(NODE, c, ("acme", "plant-2", "node-7"))  # same fact
    acked: set[str] = set()

    def acked_up() -> bool:
        acked.update(m for e in rig.central.of_type("ack") for m in e.payload["message_ids"])
        return {env.message_id, again.message_id} <= acked

    assert _wait(acked_up), "the node acks what it applied, duplicates included"
    stored = rig.node.duck.corrections_for_machine("acme", "press-9")
    assert [s.id for s in stored] == [c.id] and stored[0].hlc == c.hlc
    assert rig.node.duck.outbox_depth() == 0, "a correction from central is not sent back"
    pushed = rig.node.duck.query(
        "SELECT payload FROM push_messages WHERE machine_id = 'press-9' AND type = 'correction'")
    assert len(pushed) == 1
    body = json.loads(pushed[0][0])
    assert body["correction"]["id"] == c.id and body["origin"]["site_id"] == "plant-2"
    assert agent.stats.applied == 1
    assert agent.clock.last > Hlc.parse(c.hlc), "the clock moved past the remote stamp"


def test_a_burst_from_central_is_applied_in_batches_each_once(rig: Rig) -> None:
    """What a node that was away receives at once is applied a batch at a time (one
    write each, not one per correction), each correction once although some come twice
    (the same envelope again, the same fact under a new message id), each pushed once,
    and every message id acked up only after it was applied."""
    n = 300
    rig.central.acking.clear()  # no acks of its own messages come down meanwhile
    agent = rig.agent()
    steps: list[WriteStep] = []
    rig.node.writer.observe(steps.append)
    other = ("acme", "plant-2", "node-7")
    made = [Correction(tenant_id="acme", machine_id=f"press-{i % 4}", author="bo",
                       text=f"burst {i}: belt tension set to {40 + i % 17} N")
            for i in range(n)]
    with rig.node.duck.transaction():  # the node is busy: what comes down waits queued
        envs = [rig.central.send_correction(NODE, c, other) for c in made]
        for e in envs[:20]:  # the broker delivers these again
            rig.central.send(NODE, e.message_as(CorrectionMsg), message_id=e.message_id)
        again = [rig.central.send_correction(NODE, c, other) for c in made[:5]]
        # all delivered: queued (the applier took the first few and waits on the store)
        seen: list[int] = []

        def settled() -> bool:
            seen.append(agent.applier.waiting)
            time.sleep(0.5)
            return seen[-1] >= n // 2 and seen[-1] == agent.applier.waiting

        assert _wait(settled), seen
        assert not rig.central.of_type("ack"), "nothing acked before it was applied"
    rig.central.acking.set()
    assert _wait(lambda: agent.stats.applied == n), agent.stats
    want = {e.message_id for e in envs + again}
    assert rig.central.wait_until(lambda c: want <= {
        m for e in c.of_type("ack") for m in e.payload["message_ids"]})
    stored = Counter(str(r[0]) for r in rig.node.duck.query("SELECT id FROM corrections"))
    assert stored == Counter(c.id for c in made), "each correction once"
    pushed = Counter(json.loads(p)["correction"]["id"] for (p,) in rig.node.duck.query(
        "SELECT payload FROM push_messages WHERE type = 'correction'"))
    assert pushed == Counter(c.id for c in made), "each pushed once"
    writes = [s for s in steps if s.step == "store" and s.origin == "remote"]
    assert sum(s.count for s in writes) == n
    assert len(writes) <= 4, f"{len(writes)} writes for {n} corrections: not batched"
    marked = rig.node.duck.query("SELECT message_id FROM sync_applied")
    assert Counter(str(m) for (m,) in marked) == Counter(want), "each message id marked once"
    assert rig.node.duck.outbox_depth() == 0, "nothing from central is sent back"
    assert agent.stats.rejected == 0


def test_forged_or_misaddressed_down_messages_are_dropped_and_the_loop_goes_on(rig: Rig) -> None:
    agent = rig.agent()
    c = Correction(tenant_id="acme", machine_id="press-1", text="forged", author="mallory")
    forged = seal(CorrectionMsg(correction=c), key=generate_key(), tenant_id=NODE[0],
                  site_id=NODE[1], node_id=NODE[2], direction=Direction.DOWN, seq=1,
                  hlc="1764000000000-000000")
    rig.central.transport.publish(forged.topic, forged.encode())
    rig.central.transport.publish(forged.topic, b"{not json")
    other = ("acme", "plant-1", "node-2")
    good = Correction(tenant_id="acme", machine_id="press-1", text="genuine", author="bo")
    misaddressed = rig.central.send_correction(other, good, other)  # node-2's topic
    assert misaddressed.node_id == "node-2"
    rig.central.send_correction(NODE, good, other)
    assert _wait(lambda: agent.stats.applied == 1)
    assert _wait(lambda: agent.stats.rejected == 2)
    texts = [x.text for x in rig.node.duck.corrections_for_machine("acme", "press-1")]
    assert texts == ["genuine"]


def test_outbox_above_its_bound_alerts_and_drops_nothing(rig: Rig) -> None:
    rig.broker.stop()
    agent = rig.agent(wait=False, outbox_limit=5)
    made = rig.correct(12)
    assert _wait(lambda: any("outbox above limit" in a for a in agent.stats.alerts))
    assert rig.node.duck.outbox_depth() == 12
    rig.broker.start()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0, timeout=60)
    assert _wait(lambda: not agent.stats.alerts)
    assert set(_corrections_at_central(rig.central)) == {c.id for c in made}
    status = rig.central.of_type("node_status")
    assert status and status[-1].payload["outbox_limit"] == 5


def test_a_row_that_cannot_be_sent_is_set_aside_with_its_reason(rig: Rig) -> None:
    with rig.node.duck.transaction() as cur:
        cur.execute("INSERT INTO outbox (tenant_id, kind, payload) VALUES ('acme', 'weird', ?)",
                    ['{"x": 1}'])
        cur.execute("INSERT INTO outbox (tenant_id, kind, payload) VALUES "
                    "('acme', 'correction', ?)", ['{"text": ""}'])
    made = rig.correct(3)
    agent = rig.agent()
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)
    assert set(_corrections_at_central(rig.central)) == {c.id for c in made}
    aside = agent.ledger.unsendable()
    assert [a["kind"] for a in aside] == ["weird", "correction"]
    assert "unknown outbox kind 'weird'" in aside[0]["reason"]
    assert "invalid" in aside[1]["reason"]
    assert agent.stats.rejected == 2
    assert any("2 outbox rows could not be sent" in a for a in agent.stats.alerts)


def test_node_status_reaches_central(rig: Rig) -> None:
    rig.correct(2)
    rig.agent()
    assert rig.central.wait_until(lambda c: bool(c.of_type("node_status")))
    st = rig.central.of_type("node_status")[0].payload
    assert st["last_seq"] >= 0 and "outbox_depth" in st


def test_identity_of_another_tenant_is_refused(rig: Rig) -> None:
    other = NodeIdentity.issue("globex", "p", "n", generate_key().public_key())
    with pytest.raises(ValueError, match="tenant"):
        SyncAgent(rig.node, other, rig.broker.make("x"))


def test_a_correction_from_central_becomes_searchable(rig: Rig) -> None:
    """With the real indexer (the packaged embedding model): the applied correction is
    found by the node's hybrid search."""
    agent = SyncAgent(rig.node, rig.identity, rig.broker.make("rae-edge-indexing"), index=True)
    rig.agents.append(agent)
    agent.start()
    assert _wait(lambda: agent.transport.connected)
    c = Correction(tenant_id="acme", machine_id="press-4",
                   text="hydraulic pump cavitation: bleed the air from the suction line",
                   author="bo", origin_node="node-7")
    rig.central.send_correction(NODE, c, ("acme", "plant-2", "node-7"))
    assert _wait(lambda: agent.stats.applied == 1, timeout=120)
    # indexed in the background, off the apply and ack path
    assert agent.index_later is not None and agent.index_later.wait_idle(120)
    hits = rig.node.memory.search("acme", "pump cavitation air in suction", k=5)
    assert c.id in [h.id for h in hits.hits]


def test_a_correction_stored_but_not_indexed_is_indexed_on_the_next_start(rig: Rig) -> None:
    """A crash after an apply committed and before the background indexer got to it:
    the next start's sweep indexes it, and records where it got to."""
    c = Correction(tenant_id="acme", machine_id="press-4", author="bo", origin_node="node-7",
                   text="gearbox whine at 40 Hz: the coupling insert was worn")
    assert rig.node.duck.insert_correction(c)  # stored, never indexed (killed meanwhile)
    assert not rig.node.lance.existing_ids("acme", [c.id])
    agent = SyncAgent(rig.node, rig.identity, rig.broker.make("rae-edge-indexing"), index=True)
    rig.agents.append(agent)
    agent.start()
    assert _wait(lambda: rig.node.lance.existing_ids("acme", [c.id]) == {c.id}, timeout=120)
    assert _wait(lambda: "index_swept_at" in agent.ledger.state())


def test_from_settings_builds_the_agent_serve_runs(tmp_path: Path, mosquitto: Mosquitto) -> None:
    central_key = generate_key()
    ident = NodeIdentity.issue(*NODE, central_key.public_key(), mqtt_url=mosquitto.url)
    ident.save(tmp_path / "node.identity.json")
    plain = config.load(None, data_dir=tmp_path / "off", node={"tenant_id": "acme"})
    off = EdgeNode(plain)
    try:
        assert SyncAgent.from_settings(off) is None, "no identity: sync is off"
    finally:
        off.close()
    settings = config.load(None, data_dir=tmp_path / "node", node={"tenant_id": "acme"},
                           sync={"enroll_file": tmp_path / "node.identity.json",
                                 "outbox_limit": 7, "batch_size": 3})
    node = EdgeNode(settings)
    central = CentralStub(PahoTransport("127.0.0.1", mosquitto.port, "central"), central_key,
                          {NODE: ident.public_key}).start()
    agent = node.start_sync()  # what serve does; broker URL from the identity file
    assert agent is not None and node.start_sync() is agent
    assert agent.options.outbox_limit == 7 and agent.options.batch_size == 3
    try:
        node.duck.insert_correction(Correction(tenant_id="acme", machine_id="press-1",
                                               text="via settings", author="ana"))
        agent.notify()
        assert _wait(lambda: node.duck.outbox_depth() == 0)
        assert [e.message_as(CorrectionMsg).correction.text
                for e in central.of_type("correction")] == ["via settings"]
    finally:
        node.close()  # stops the agent too
        central.stop()
    assert not agent.transport.connected


def test_bad_clock_stamps_coming_down_are_set_aside_and_the_stream_goes_on(rig: Rig) -> None:
    """A stamp far in the future or no stamp at all, each signed by central's key: set
    aside with its reason (never applied, the clock untouched), and the 25 good ones
    after them, more than the broker's in-flight window of 20, all arrive."""
    agent = rig.agent()
    other = ("acme", "plant-2", "node-7")
    key = rig.central.key

    def down(c: Correction, hlc: str, seq: int) -> None:
        env = seal(CorrectionMsg(correction=c), key=key, tenant_id=NODE[0], site_id=NODE[1],
                   node_id=NODE[2], direction=Direction.DOWN, seq=seq, hlc=hlc)
        rig.central.transport.publish(env.topic, env.encode())

    now = f"{time.time_ns() // 1_000_000:013d}-000000"
    ahead = Correction(tenant_id="acme", machine_id="press-1", text="from the far future",
                       author="eve", hlc="9999999999999-999998")
    down(ahead, now, 900_001)
    down(Correction(tenant_id="acme", machine_id="press-1", text="stamped ahead", author="eve"),
         "9999999999999-999998", 900_002)
    garbled = Correction.model_construct(**{
        **Correction(tenant_id="acme", machine_id="press-1", text="garbled clock",
                     author="eve").model_dump(), "hlc": "tomorrow"})
    down(garbled, now, 900_003)
    good = [Correction(tenant_id="acme", machine_id="press-1", text=f"genuine {i}",
                       author="bo", hlc=now) for i in range(25)]
    for c in good:
        rig.central.send_correction(NODE, c, other)
    assert _wait(lambda: agent.stats.applied == 25), agent.stats
    assert _wait(lambda: agent.stats.rejected == 3), agent.stats
    texts = sorted(x.text for x in rig.node.duck.corrections_for_machine("acme", "press-1"))
    assert texts == sorted(c.text for c in good)
    assert agent.clock.last.ms < time.time() * 1000 + 60_000, "the clock was not dragged ahead"
    refused = [json.loads(line) for line in
               (rig.node.duck.path.parent / "sync-refused.jsonl").read_text().splitlines()]
    reasons = sorted(r["reason"].split(":")[0] for r in refused)
    assert reasons == ["clock_skew", "clock_skew", "malformed"], refused


def test_every_connect_resumes_from_the_nodes_own_position(rig: Rig) -> None:
    """On each connect the node sends its down position: the highest fanned-out seq it
    applied, and how many it applied."""
    agent = rig.agent()
    assert rig.central.wait_until(lambda c: len(c.of_type("resume")) == 1)
    assert rig.central.of_type("resume")[0].payload == {"cursor": 0, "applied": 0}
    other = ("acme", "plant-2", "node-7")
    sent = [rig.central.send_correction(NODE, Correction(
        tenant_id="acme", machine_id="press-2", text=f"from plant 2: {i}", author="bo"), other)
        for i in range(3)]
    assert _wait(lambda: agent.stats.applied == 3)
    assert _wait(lambda: agent.ledger.down_position() == (max(e.seq for e in sent), 3))
    agent.stop()
    rig.agent()
    assert rig.central.wait_until(lambda c: len(c.of_type("resume")) == 2)
    assert rig.central.of_type("resume")[1].payload == {"cursor": max(e.seq for e in sent),
                                                        "applied": 3}
