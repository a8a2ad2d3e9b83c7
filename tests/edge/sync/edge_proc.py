"""An edge node with its sync agent in a process of its own, for kill -9 tests.

    python -m tests.edge.sync.edge_proc --data-dir D --identity F --port P [--fill N]

``--fill N`` first writes N corrections, each with its outbox row.
Prints ``ready`` once the agent runs, then a stats line every 0.2 s, until killed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rae_edge import config
from rae_edge.node import EdgeNode
from rae_edge.store import DuckStore
from rae_edge.store.outbox import enqueue
from rae_edge.sync_agent import SyncAgent, SyncOptions
from rae_sync.domain import Correction
from rae_sync.identity import NodeIdentity
from rae_sync.messages import CorrectionMsg
from rae_sync.transport import PahoTransport


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--identity", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fill", type=int, default=0)
    args = ap.parse_args()
    ident = NodeIdentity.load(args.identity)
    settings = config.load(None, data_dir=args.data_dir, node={
        "tenant_id": ident.tenant_id, "site_id": ident.site_id, "node_id": ident.node_id})
    node = EdgeNode(settings)
    # one transaction for the lot (a commit per row costs ~20 ms here): the same rows
    # insert_correction writes, the correction and its outbox row
    with node.duck.transaction() as cur:
        for i in range(args.fill):
            c = Correction(tenant_id=ident.tenant_id, machine_id=f"press-{i % 5}",
                           author="ana", text=f"correction {i}", origin_node=ident.node_id)
            DuckStore.store_correction(cur, c)
            enqueue(cur, [CorrectionMsg(correction=c)])
    transport = PahoTransport("127.0.0.1", args.port, "rae-edge-node-1", reconnect_max_s=1)
    agent = SyncAgent(node, ident, transport, SyncOptions(poll_s=0.05, batch_size=100),
                      index=False)
    agent.start()
    print("ready", flush=True)
    while True:
        st = agent.stats
        print(f"depth={st.outbox_depth} last_seq={st.last_seq} acked={st.acked}", flush=True)
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
