"""One write path: the same correction arriving typed (HTTP), voiced (a real recording,
transcribed by Whisper, confirmed over HTTP) and from another plant (a signed MQTT message
through the node's real sync agent) takes the same steps in the same order, recorded by
the node's own writer (``Writer.observe``), and leaves the same traces: a row, a searchable
LanceDB row, one typed push; an outbox message for the two made here only."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from rae_edge.push_kinds import CorrectionPush
from rae_edge.sync_agent import SyncAgent, SyncOptions
from rae_edge.write import STEPS, WriteStep
from rae_sync.domain import Correction
from rae_sync.identity import NodeIdentity
from rae_sync.messages import CorrectionMsg
from rae_sync.signing import generate_key
from rae_sync.transport import MemoryBroker, MemoryTransport
from tests.edge.sync.central_stub import CentralStub
from tests.voice.conftest import TENANT, VoiceApi

NODE = (TENANT, "plant-1", "node-1")
TEXT = "Error E404 again, sensor X was actually loose, not broken."


def _wait(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_typed_voiced_and_remote_corrections_take_the_same_steps(
        make_api: Callable[..., VoiceApi], say: Callable[..., Path]) -> None:
    api = make_api()
    node = api.node
    assert node.settings.sync_on  # the fixture's node queues for central
    target = next(i for i in api.incidents if i.machine_id == "press-1")
    steps: list[WriteStep] = []
    stop = node.writer.observe(steps.append)

    # typed, over HTTP
    r = api.client.post("/api/v1/corrections", headers=api.headers(),
                        json={"machine_id": "press-1", "text": TEXT, "target_id": target.id})
    assert r.status_code == 201, r.text
    typed = r.json()["id"]

    # voiced: a real recording of the same words, transcribed, then confirmed
    up = api.upload(say(TEXT), machine_id="press-1", target_id=target.id)
    assert up.status_code == 202, up.text
    note = api.wait(up.json()["id"])
    assert note["status"] == "draft", note
    done = api.confirm(note["id"], text=TEXT)
    assert done.status_code == 200, done.text
    voiced = done.json()["correction"]["id"]

    # from another plant: central's signed message through the real sync agent
    central_key = generate_key()
    identity = NodeIdentity.issue(*NODE, central_key.public_key())
    broker = MemoryBroker()
    central = CentralStub(MemoryTransport(broker, "central"), central_key,
                          {NODE: identity.public_key}).start()
    agent = SyncAgent(node, identity, MemoryTransport(broker, "rae-edge-node-1"),
                      SyncOptions(poll_s=0.05), index=True)
    agent.start()
    try:
        remote_c = Correction(tenant_id=TENANT, machine_id="press-1", text=TEXT, author="bo",
                              target_id=target.id, origin_node="node-7")
        central.send_correction(NODE, remote_c, (TENANT, "plant-2", "node-7"))
        assert _wait(lambda: agent.stats.applied == 1), agent.stats
        # the two made here reach central; the remote one never goes back
        assert central.wait_until(lambda c: len(c.of_type("correction")) == 2)
    finally:
        agent.stop()
        central.stop()
        stop()
    remote = remote_c.id

    by_origin: dict[str, list[WriteStep]] = defaultdict(list)
    for s in steps:
        if s.fact == "correction":
            by_origin[s.origin].append(s)
    assert sorted(by_origin) == ["remote", "typed", "voice"]
    ids = {"typed": typed, "voice": voiced, "remote": remote}
    for origin, seen in by_origin.items():
        # every step, once, in the writer's one order, for this correction
        assert [s.step for s in seen] == list(STEPS), (origin, seen)
        assert all(s.ids == (ids[origin],) for s in seen), (origin, seen)
        counts = {s.step: s.count for s in seen}
        local = origin != "remote"
        assert counts == {"store": 1, "outbox": int(local), "wake_sync": int(local),
                          "index": 1, "push": 1, "drift": 1}, (origin, counts)

    # the traces: stored once each, searchable, one typed push each, queued when local
    stored = node.duck.query("SELECT id, method, origin_node FROM corrections "
                             "WHERE target_id = ? ORDER BY id", [target.id])
    assert sorted(r[0] for r in stored) == sorted(ids.values())
    assert sorted(node.lance.existing_ids(TENANT, list(ids.values()))) == sorted(ids.values())
    pushes = [CorrectionPush.model_validate(m.payload)
              for m in node.push.since(TENANT, ["press-1"], 0) if m.type == "correction"]
    assert sorted(p.correction.id for p in pushes) == sorted(ids.values())
    assert [p.origin.node_id if p.origin else None for p in pushes
            if p.correction.id == remote] == ["node-7"]
    sent = [CorrectionMsg.model_validate(e.payload).correction.id
            for e in central.of_type("correction")]
    assert sorted(sent) == sorted([typed, voiced])
