"""A broken or hostile node is contained at central (real mosquitto, PostgreSQL and
worker): a correction whose clock stamp lies far in the future, or is no clock stamp at
all, or a seq beyond a bigint, is dead-lettered with its reason, the node is flagged in
the console, and the same node's next good message goes through (the stream never
stalls); nothing of the bad ones reaches the tenant's other node."""

from __future__ import annotations

import json
import time

from rae_central.worker import IngestWorker
from rae_sync.domain import Correction
from rae_sync.envelope import seal
from rae_sync.messages import CorrectionMsg
from rae_sync.topics import Direction
from tests.central.conftest import Central
from tests.central.edge_sim import wait_for

FAR_FUTURE = "9999999999999-999998"


def test_far_future_and_malformed_clock_stamps_are_dead_lettered_and_flagged(
        central: Central, worker: IngestWorker) -> None:
    a, b = central.edge("a"), central.edge("b")
    try:
        assert a.transport is not None
        key, (t, s, n) = a.identity.private_key, a.node

        def sealed(text: str, *, env_hlc: str | None = None, cor_hlc: str | None = None,
                   seq: int | None = None) -> tuple[str, bytes]:
            now = str(a.clock.now())
            c = Correction(tenant_id=t, machine_id="press-7", text=text, author="eve",
                           origin_node=n, hlc=cor_hlc or now)
            a.seq += 1
            env = seal(CorrectionMsg(correction=c), key=key, tenant_id=t, site_id=s,
                       node_id=n, direction=Direction.UP, seq=a.seq if seq is None else 1,
                       hlc=env_hlc or now)
            raw = json.loads(env.encode())
            if seq is not None:  # a seq no bigint holds: the signature covers what we sent
                raw["seq"] = seq
            return env.topic, json.dumps(raw).encode()

        # 1) the envelope stamped far in the future (the stamp itself is well formed)
        a.transport.publish(*sealed("wins forever", env_hlc=FAR_FUTURE))
        # 2) the correction's own stamp in the future (it orders corrections everywhere)
        ahead = f"{int(time.time() * 1000) + 3_600_000:013d}-000000"  # an hour ahead
        a.transport.publish(*sealed("an hour early", cor_hlc=ahead))
        # 3) not a clock stamp at all inside the payload, signed by the node
        a.seq += 1
        garbled = Correction.model_construct(**{
            **Correction(tenant_id=t, machine_id="press-7", text="garbled clock",
                         author="eve").model_dump(), "hlc": "tomorrow"})
        env = seal(CorrectionMsg(correction=garbled), key=key, tenant_id=t, site_id=s,
                   node_id=n, direction=Direction.UP, seq=a.seq, hlc=a.clock.now())
        a.transport.publish(env.topic, env.encode())
        # 4) a seq beyond any stream position PostgreSQL can hold
        a.transport.publish(*sealed("huge seq", seq=2**70))
        good = a.correction("the good one after the bad ones")
        a.deliver_all(timeout=30)
        assert good.message_id in a.acked
        wait_for(lambda: central.store.count("dead_letters") >= 4, what="4 dead letters")
        reasons = [d["reason"] for d in central.store.dead_letters()]
        assert len(reasons) == 4, reasons
        assert sum(r.startswith("clock_skew") for r in reasons) == 2, reasons
        assert sum(r.startswith("malformed") for r in reasons) == 2, reasons
        assert any("tomorrow" in r for r in reasons) and any("seq" in r for r in reasons)
        # only the good correction was stored and fanned out
        texts = [c["text"] for c in central.store.recent_corrections(tenant="acme")]
        assert texts == ["the good one after the bad ones"]
        wait_for(lambda: len(b.received(CorrectionMsg)) == 1, what="the good one at B")
        time.sleep(1.0)
        assert [e.message_as(CorrectionMsg).correction.text
                for e in b.received(CorrectionMsg)] == ["the good one after the bad ones"]
        # the console shows the node flagged, with why; the other node is not
        nodes = {x["node_id"]: x for x in central.store.nodes_overview()}
        assert nodes["node-a"]["flag"] and nodes["node-a"]["flag"].startswith("clock_skew")
        assert nodes["node-a"]["dead_letters"] == 4 and nodes["node-b"]["flag"] is None
        fleet = {x["node_id"]: x for x in central.store.fleet_overview()}
        assert fleet["node-a"]["flag"] == nodes["node-a"]["flag"]
    finally:
        a.close()
        b.close()
