"""The edge half of sync: how fast the sync agent empties its outbox into a real
mosquitto on loopback, with a central stand-in that verifies every envelope and acks it.

Figures:
- backlog drain: N corrections (and their outbox rows) are on disk; the agent seals them
  (seq, HLC, Ed25519), publishes QoS 1, and deletes each row when the ack comes back;
  rate = N / time until the outbox is empty. Full: 100,000 (target: ≤ 60 s, i.e.
  ≥ 2,000/s when this is the bottleneck of edge → central); quick: 10,000;
- the same with a central stand-in that acks without verifying (the edge's own ceiling);
- baseline measured in the same run: raw paho publish_many of the same number of
  pre-sealed envelopes (QoS 1, PUBACK awaited), no DuckDB, no signing, no acks: the
  broker's ceiling on this machine;
- seal rate alone (DuckDB transaction + Ed25519 + JSON), no network.

Run: ``.venv/bin/python -m bench.bench_sync_edge [--quick]``. Agent, stub central and
mosquitto share this machine's cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import main_for, row
from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.sync_agent import SyncAgent, SyncLedger, SyncOptions
from rae_sync.domain import Correction
from rae_sync.envelope import seal, seal_encoded
from rae_sync.identity import NodeIdentity
from rae_sync.messages import CorrectionMsg
from rae_sync.signing import generate_key, private_key_pem
from rae_sync.topics import Direction
from rae_sync.transport import PahoTransport
from tests.fixtures.mosquitto import Mosquitto

NODE = ("acme", "plant-1", "node-1")
ROOT = Path(__file__).resolve().parents[1]


def _fill(node: EdgeNode, n: int) -> None:
    """N corrections with their outbox rows, as insert_correction writes them (in bulk)."""
    cs = [Correction(tenant_id="acme", machine_id=f"press-{i % 50}", author="ana",
                     text=f"correction {i}: the proximity sensor on the feeder was loose",
                     origin_node="node-1") for i in range(n)]
    with node.duck.transaction() as cur:
        cur.execute(
            "INSERT INTO corrections (tenant_id, id, machine_id, text, author, method, "
            "valid_from, origin_node, hlc) SELECT 'acme', unnest(?::VARCHAR[]), "
            "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), 'ana', 'typed', "
            "unnest(?::TIMESTAMPTZ[]), 'node-1', ''",
            [[c.id for c in cs], [c.machine_id for c in cs], [c.text for c in cs],
             [c.valid_from for c in cs]])
        cur.execute("INSERT INTO outbox (tenant_id, kind, payload) SELECT 'acme', "
                    "'correction', unnest(?::VARCHAR[])",
                    [[json.dumps(c.model_dump(mode="json")) for c in cs]])


def _node(folder: Path) -> EdgeNode:
    return EdgeNode(config.load(None, data_dir=folder, node={
        "tenant_id": NODE[0], "site_id": NODE[1], "node_id": NODE[2]}))


def _drain(mosq: Mosquitto, folder: Path, n: int, verify: bool = True) -> tuple[float, int]:
    central_key = generate_key()
    ident = NodeIdentity.issue(*NODE, central_key.public_key())
    node = _node(folder)
    _fill(node, n)
    (folder / "central.pem").write_text(private_key_pem(central_key))
    (folder / "node.pub").write_text(ident.public_key_pem)
    # central in a process of its own, as in production (and off this process's GIL)
    central = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.sync.central_stub", "--port", str(mosq.port),
         "--key", str(folder / "central.pem"), "--node-key", str(folder / "node.pub"),
         *([] if verify else ["--no-verify"])],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert central.stdout is not None
    assert central.stdout.readline().strip() == "ready"
    agent = SyncAgent(node, ident, PahoTransport("127.0.0.1", mosq.port, "bench-edge"),
                      SyncOptions(poll_s=0.02), index=False)
    try:
        t0 = time.perf_counter()
        agent.start()
        while node.duck.outbox_depth() > 0:
            time.sleep(0.05)
        dt = time.perf_counter() - t0
        time.sleep(0.6)
    finally:
        agent.stop()
        central.terminate()
        out = central.communicate(timeout=10)[0]
        node.close()
    last = [ln for ln in out.splitlines() if ln.startswith("received ")]
    got = int(last[-1].split()[1]) if last else 0
    return dt, got


def _raw_publish(mosq: Mosquitto, n: int) -> float:
    key = generate_key()
    c = Correction(tenant_id="acme", machine_id="press-1", author="ana",
                   text="correction: the proximity sensor on the feeder was loose")
    envs = [seal(CorrectionMsg(correction=c), key=key, tenant_id=NODE[0], site_id=NODE[1],
                 node_id=NODE[2], direction=Direction.UP, seq=i + 1, hlc=f"{i:013d}-000000")
            for i in range(n)]
    items = [(e.topic, e.encode()) for e in envs]
    t = PahoTransport("127.0.0.1", mosq.port, "bench-raw")
    t.connect()
    try:
        t0 = time.perf_counter()
        for i in range(0, n, 500):
            t.publish_many(items[i:i + 500])
        return time.perf_counter() - t0
    finally:
        t.close()


def _seal_only(folder: Path, n: int) -> float:
    node = _node(folder)
    _fill(node, n)
    ident = NodeIdentity.issue(*NODE, generate_key().public_key())
    ledger = SyncLedger(node.duck, "acme")
    clock = ledger.clock()

    def sealer(msg, seq, hlc):  # type: ignore[no-untyped-def]
        return seal_encoded(msg, key=ident.private_key, tenant_id=NODE[0],
                            site_id=NODE[1], node_id=NODE[2], direction=Direction.UP,
                            seq=seq, hlc=hlc)

    t0 = time.perf_counter()
    done = 0
    while done < n:
        k, _ = ledger.seal_outbox(500, clock, sealer)
        if not k:
            break
        done += len(k)
    dt = time.perf_counter() - t0
    node.close()
    return dt


def run(quick: bool = False) -> list[dict]:
    n = 10_000 if quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        mosq = Mosquitto(Path(tmp) / "broker")
        mosq.start()
        try:
            raw = _raw_publish(mosq, n)
            dt, got = _drain(mosq, Path(tmp) / "edge", n)
            fast_dt, fast_got = _drain(mosq, Path(tmp) / "edge-fast", n, verify=False)
        finally:
            mosq.kill()
        seal_dt = _seal_only(Path(tmp) / "seal", n)
    raw_rate, rate = n / raw, n / dt
    rows.append(row("edge outbox drain: sealed, published, acked", rate, "msg/s",
                    target=">= 2000/s", baseline="raw paho publish", baseline_value=raw_rate,
                    ok=rate >= 2000, higher_is_better=True,
                    notes=f"{n} corrections in {dt:.1f}s; central stand-in (own process) "
                          f"verified and kept {got} distinct"))
    fast = n / fast_dt
    rows.append(row("edge outbox drain, central acks unverified", fast, "msg/s",
                    target=">= 2000/s", baseline="raw paho publish", baseline_value=raw_rate,
                    ok=fast >= 2000, higher_is_better=True,
                    notes=f"{n} in {fast_dt:.1f}s ({fast_got} kept): the edge's own ceiling, "
                          "central's per-envelope verification off"))
    if not quick:
        rows.append(row("100k backlog drain time (edge side)", dt, "s", target="<= 60 s",
                        ok=dt <= 60, notes="with the verifying central stand-in"))
    rows.append(row("seal rate (DuckDB + Ed25519 + JSON)", n / seal_dt, "msg/s",
                    notes=f"{n} outbox rows in {seal_dt:.1f}s, batches of 500"))
    rows.append(row("raw paho publish_many (QoS 1, PUBACK)", raw_rate, "msg/s",
                    notes="pre-sealed envelopes; the broker's ceiling here"))
    return rows


if __name__ == "__main__":
    main_for(run)
