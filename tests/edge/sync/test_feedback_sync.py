"""Verdicts ("this fixed it" / "not relevant") over sync, against the central stub on the
in-memory broker: a local verdict goes up and leaves the outbox on central's ack; one
from another plant is stored once (a redelivery changes nothing) and counts here."""

from __future__ import annotations

import time
from collections.abc import Callable

from rae_sync.domain import Feedback, Verdict
from rae_sync.messages import FeedbackMsg, NodeRef
from tests.edge.sync.conftest import NODE, Rig


def _wait(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_local_verdict_goes_up_and_one_from_another_plant_is_applied_once(rig: Rig) -> None:
    rig.agent()
    mine = Feedback(tenant_id="acme", memory_id="inc_1", verdict=Verdict.FIXED,
                    query="pump leaking", machine_id="press-1", author="ana#1",
                    origin_node="plant-1/node-1")
    assert rig.node.memory.feedback.store(mine, outbox=True)
    assert _wait(lambda: any(e.message_as(FeedbackMsg).feedback == mine
                             for e in rig.central.of_type("feedback")))
    assert _wait(lambda: rig.node.duck.outbox_depth() == 0)

    theirs = Feedback(tenant_id="acme", memory_id="inc_1", verdict=Verdict.FIXED,
                      author="bo#2", origin_node="plant-2/node-7")
    msg = FeedbackMsg(feedback=theirs,
                      origin=NodeRef(tenant_id="acme", site_id="plant-2", node_id="node-7"))
    env = rig.central.send(NODE, msg)
    rig.central.send(NODE, msg, message_id=env.message_id)  # a redelivery
    assert _wait(lambda: len(rig.node.memory.feedback.entries("acme", "inc_1")) == 2)
    time.sleep(0.5)  # the redelivery has had its chance to store a second copy
    got = rig.node.memory.feedback.entries("acme", "inc_1")
    assert [(f.id, f.author, f.origin_node) for f in got] == [
        (mine.id, "ana#1", "plant-1/node-1"), (theirs.id, "bo#2", "plant-2/node-7")]
    tally = rig.node.memory.feedback.for_memories("acme", ["inc_1", "inc_2"])
    assert list(tally) == ["inc_1"]
    assert (tally["inc_1"].confirmations, sorted(tally["inc_1"].plants)) == (
        2, ["plant-1", "plant-2"])
    assert rig.node.duck.outbox_depth() == 0  # what came from central is not sent back
