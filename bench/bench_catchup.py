"""Catch-up of a plant that was away: central as the store of record, a real receiving node.

A node (``rae-edge serve``, real process) is enrolled and stopped; it is marked last
seen 30 days ago (the console shows it away); plant A (a signed-message publisher) makes
N corrections that central stores, embeds and owes the node; the broker is then SIGKILLed with
its persistence gone, so nothing of it is held by the broker: every correction must come
from central's down log. The node starts; figure: time from its connect (central's receipt
of its resume message) to central's receipt of its last ack, when central holds nothing
more for it (each correction applied and acked: stored, in the briefings, pushed); both
stamps are central's. Beside it, from the node process's start (model load included) to
the same point. The node's DuckDB is checked afterwards for each correction exactly
once. Also shown: when the last one became searchable (the node embeds them in the
background, after the catch-up: read from its LanceDB folder), and the CPU seconds each
process spent during the catch-up (where the time goes on a shared machine).

``quick``: N = 2,000; full: 10,000 (target: <= 30 s); 300 in the default sweep. Run:
``.venv/bin/python -m bench.bench_catchup [--quick]``. Everything shares this machine's
cores (the node embeds each correction it applies).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from bench.common import main_for, row
from bench.nodeproc import cpu_seconds
from rae_central.db.engine import make_engine
from rae_sync.supervisor import children
from tests.central.edge_sim import EdgeSim
from tests.fixtures.mosquitto import Mosquitto
from tests.fixtures.postgres import PgServer, find_pg_bin
from tests.fixtures.stack import Stack, wait_for


def _say(msg: str) -> None:
    print(f"[bench_catchup {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _tree(pid: int | None) -> list[int]:
    """A process and its descendants."""
    if pid is None:
        return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def _searchable(lance_dir: Path) -> int:
    """Corrections in a node's LanceDB, read from outside the node (a fresh snapshot)."""
    import lancedb

    from rae_edge.store.lance import TABLE

    try:
        return int(lancedb.connect(str(lance_dir)).open_table(TABLE).count_rows(
            "kind = 'correction'"))
    except Exception:  # not created yet
        return 0


def run(quick: bool = False, n: int | None = None) -> list[dict[str, Any]]:
    n = n or (2_000 if quick else 10_000)
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="rae-bench-catchup-"))
    tmp.chmod(0o755)  # PostgreSQL runs as user postgres when we are root
    pg = PgServer(bin_dir, tmp / "pg")
    broker = Mosquitto(tmp / "mqtt")
    stack: Stack | None = None
    try:
        pg.init()
        pg.start()
        broker.start()
        stack = Stack(tmp / "stack", pg, broker, workers=2,
                      central_env={"RAE_CENTRAL_INGEST__FANOUT_SWEEP_S": "1"})
        stack.start_central()
        b = stack.add_node("b", site="plant-b")  # enrolled, started once, stopped
        b.stop()
        a = EdgeSim.from_file(stack.enroll("acme", "plant-a", "node-a",
                                           tmp / "a.identity.json"), broker.url).connect()
        engine = make_engine(stack.database_url, pool_size=1)
        with engine.begin() as conn:  # away for a month
            conn.execute(sa.text("UPDATE nodes SET last_seen = now() - interval '30 days' "
                                 "WHERE node_id = 'node-b'"))
        _say(f"plant A makes {n} corrections")
        envs = [a.correction(f"month away {i}: belt tension on line {i % 9} set to "
                             f"{40 + i % 17} N") for i in range(n)]
        a.send(envs)
        a.deliver_all(timeout=900)
        st = stack

        def owed() -> int:
            return int(st.sql("SELECT count(*) FROM fanout WHERE node_id = 'node-b'")[0][0])

        wait_for(lambda: owed() == n, 300, "every correction owed to B")
        # a month later central has long embedded them: its vector indexer does not take
        # this machine's cores from the catch-up (in the field it runs on other hosts)
        _say("waiting for central's vector indexer")
        stack.wait_embedded(timeout=1800)
        [away] = [x for x in stack.admin("/nodes") if x["node_id"] == "node-b"]
        a.close()
        broker.lose_state()
        broker.start()
        _say("broker state lost; starting B")
        pm = next((tmp / "pg").rglob("postmaster.pid"), None)
        parts = {"central": _tree(st.central.proc.pid if st.central.proc else None),
                 "mosquitto": _tree(broker.proc.pid if broker.proc else None),
                 "postgres": _tree(int(pm.read_text().split()[0]) if pm else None)}
        cpu0 = {k: cpu_seconds(v) for k, v in parts.items()}
        [(t0_db,)] = stack.sql("SELECT now()")
        t_start = time.perf_counter()
        b.start()
        t_up = time.perf_counter()
        cpu0["node"] = 0.0  # its whole life: start-up (model load) included
        _say(f"B up after {t_up - t_start:.1f}s; catching up")
        wait_for(lambda: owed() == 0, 1800, "B caught up", every=0.2)
        t_done = time.perf_counter()
        [(resumed, last_ack)] = stack.sql(
            "SELECT min(received_at) FILTER (WHERE type = 'resume'), max(received_at) FILTER "
            "(WHERE type = 'ack') FROM messages WHERE node_id = 'node-b' AND received_at >= :t",
            t=t0_db)
        catch_up = (last_ack - resumed).total_seconds()
        parts["postgres"] = _tree(int(pm.read_text().split()[0]) if pm else None)
        parts["node"] = _tree(b.process.pid)
        cpu = {k: cpu_seconds(v) - cpu0[k] for k, v in parts.items()}
        _say(f"caught up {catch_up:.1f}s after connecting ({t_done - t_start:.1f}s after the "
             f"process start); CPU s meanwhile {cpu}; waiting for search")
        lance_dir = b.data_dir / "lance"
        wait_for(lambda: _searchable(lance_dir) >= n, 1800, "every correction searchable",
                 every=1.0)
        searchable = time.perf_counter() - t_start
        b.stop()
        con = duckdb.connect(str(b.data_dir / "node.duckdb"), read_only=True)
        ids = [r[0] for r in con.execute("SELECT id FROM corrections").fetchall()]
        con.close()
        want = {e.payload["correction"]["id"] for e in envs}
        once = len(ids) == len(set(ids)) and set(ids) == want
        engine.dispose()
        return [
            row(f"catch-up of {n} corrections after 30 days away", catch_up, "s",
                target="<= 30 (10k)", ok=catch_up * 10_000 / n <= 30,
                notes=f"{n / catch_up:.0f} corr/s applied and acked by a real node; broker "
                f"state lost first (all from central's down log); from the process start: "
                f"{t_done - t_start:.1f}s (its API answered after {t_up - t_start:.1f}s); "
                f"console showed it away="
                f"{away['away']} owing {away['down_pending']}; load average "
                f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"),
            row("each correction once at the node", float(once), "bool", ok=once,
                notes=f"{len(ids)} rows, {len(set(ids))} distinct, {n} made"),
            row(f"... and all {n} searchable (embedded in the background)", searchable, "s",
                notes="from the process start; CPU seconds from the process start to the "
                "last ack: "
                + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())),
        ]
    finally:
        if stack is not None:
            stack.close()
        broker.kill()
        pg.destroy()


if __name__ == "__main__":
    main_for(run)
