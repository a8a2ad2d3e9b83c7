"""Edge → central sync throughput, on a real mosquitto and PostgreSQL on loopback.

Figures:
- sustained ingest: a node publishes signed corrections as fast as its MQTT session
  allows; rate = corrections committed to Postgres (and acked back) per second, with
  ``rae-central worker`` processes (2 by default) sharing the subscription and one peer
  node receiving every correction as fan-out;
- backlog drain: the broker is down while the edge's outbox fills; the broker comes back,
  the edge sends its whole outbox; time until every correction is in Postgres;
- both with plain MQTT and with TLS (client certificates) and per-node ACL (dynamic
  security), in the same run, each on a broker and database of its own (the TLS one made
  as an operator does: ``pki init``, ``enroll``, ``broker-config``);
- Qdrant write rate beside it: embedding (packaged ONNX model) and upserts into a local
  Qdrant folder by the background indexer, plus raw upserts of random vectors in memory.

``quick`` sizes: 3,000 sustained, 10,000 backlog, 300 embedded; full: 20,000 / 100,000 /
2,000. Run: ``.venv/bin/python -m bench.bench_sync [--quick]``.
The publisher, two workers, mosquitto and PostgreSQL all share this machine's cores.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from bench.common import main_for, row
from bench.nodeproc import child_pids, cpu_seconds
from rae_central.broker_setup import write_broker_config
from rae_central.config import CentralSettings
from rae_central.db import migrate
from rae_central.db.engine import make_engine
from rae_central.enroll import enroll
from rae_central.pki import PkiLayout
from rae_central.store import CentralStore
from rae_central.vectors import VectorIndexer, VectorPoint, VectorStore, default_embedder
from rae_sync.envelope import Envelope
from tests.central.edge_sim import EdgeSim
from tests.fixtures.mosquitto import Mosquitto, free_port
from tests.fixtures.postgres import PgServer, find_pg_bin

WORKERS = 2
RESEND_AFTER_S = 30.0  # the edge sync agent's default: a shorter one floods a loaded central


def _say(msg: str) -> None:
    print(f"[bench_sync {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM corrections")).scalar_one())


def _wait_count(engine: sa.Engine, n: int, timeout: float, edge: EdgeSim | None = None,
                ) -> float:
    """Waits for ``n`` rows; like the edge agent (``resend_after_s``), re-sends what is
    unacked when nothing has moved for 30 s."""
    t0 = last_change = time.perf_counter()
    last = -1
    while (c := _count(engine)) < n:
        now = time.perf_counter()
        if now - t0 > timeout:
            raise RuntimeError(f"only {c} of {n} corrections after {timeout}s")
        if c != last:
            if now - last_change > 5 or last < 0:
                _say(f"{c} of {n} in Postgres after {now - t0:.1f}s")
            last, last_change = c, now
        elif edge is not None and now - last_change > RESEND_AFTER_S:
            _say(f"stuck at {c} of {n}: re-sending the unacked")
            edge.send(edge.unacked())
            last_change = now
        time.sleep(0.05)
    return time.perf_counter()


def _envelopes(edge: EdgeSim, n: int) -> list[Envelope]:
    return [edge.correction(f"bearing {i} on line {i % 7} ran hot: regrease every 200 h")
            for i in range(n)]


def _secure_broker(tmp: Path, url: str, key: Path, nodes: list[tuple[str, str, str]],
                   ) -> tuple[Mosquitto, CentralSettings, dict[str, Path]]:
    """The production setup on loopback, built as an operator does (``pki init``,
    ``enroll``, ``broker-config``): a TLS listener requiring a client certificate, dynamic
    security binding each node to its own topics and client id; central's workers use
    their own certificate."""
    port = free_port()
    mqtts = f"mqtts://127.0.0.1:{port}"
    pki = tmp / "pki"
    PkiLayout(pki).init(["127.0.0.1", "localhost"])
    settings = CentralSettings(database_url=url, mqtt_url=mqtts, mqtt_pki_dir=pki,
                               signing_key_file=key)
    ids = {n[2]: enroll(settings, n, tmp / f"{n[2]}.json") for n in nodes}
    broker = Mosquitto(tmp / "mqtt", port=port)
    broker.conf = write_broker_config(settings, tmp / "broker", port=port, bind="127.0.0.1")
    return broker, settings, ids


def _throughput(tmp: Path, pg: PgServer, *, tls: bool, n_sustained: int, n_backlog: int,
                ) -> tuple[list[dict[str, Any]], str]:
    """Sustained rate and backlog drain on a broker of its own (``tls``: TLS with client
    certificates and per-node ACL; else plain MQTT); returns the rows and the database."""
    mode = "TLS + ACL" if tls else "plain"
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.chmod(0o755)
    url = pg.create_database("bench_tls" if tls else "bench_plain")
    migrate.upgrade(url)
    nodes = [("acme", f"plant-{n}", f"node-{n}") for n in ("a", "b")]
    key = tmp / "central-key.pem"
    env = {**os.environ, "RAE_CENTRAL_INGEST__BATCH_SIZE": "1000"}
    if tls:
        broker, settings, by_node = _secure_broker(tmp, url, key, nodes)
        env["RAE_CENTRAL_MQTT_PKI_DIR"] = str(settings.mqtt_pki_dir)
    else:
        broker = Mosquitto(tmp / "mqtt")
        settings = CentralSettings(database_url=url, mqtt_url=broker.url,
                                   allow_plain_mqtt=True, signing_key_file=key)
        by_node = {n[2]: enroll(settings, n, tmp / f"{n[2]}.json") for n in nodes}
        env["RAE_CENTRAL_ALLOW_PLAIN_MQTT"] = "true"
    mqtt_url = str(settings.mqtt_url)
    procs: list[subprocess.Popen[bytes]] = []
    rows: list[dict[str, Any]] = []
    try:
        broker.start()
        for i in range(WORKERS):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "rae_central.cli", "worker", "--database-url", url,
                 "--mqtt-url", mqtt_url, "--signing-key", str(key), "--index", str(i)],
                env=env, stdout=(tmp / f"worker-{i}.log").open("wb"),
                stderr=subprocess.STDOUT))
        engine = make_engine(url)
        a = EdgeSim.from_file(by_node["node-a"], mqtt_url).connect()
        b = EdgeSim.from_file(by_node["node-b"], mqtt_url).connect()
        _say(f"[{mode}] workers started; warming up")
        warm = _envelopes(a, 20)
        a.deliver_all(timeout=60)  # workers are subscribed once the warm-up is acked
        base = _count(engine)

        # -- sustained --------------------------------------------------------------------
        _say(f"[{mode}] sealing {n_sustained} corrections")
        envs = _envelopes(a, n_sustained)
        _say(f"[{mode}] sustained phase")
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        central_pids = [p.pid for p in procs]
        pg_pids = [postmaster, *child_pids(postmaster)]
        assert broker.proc is not None
        cpu0 = (cpu_seconds(central_pids), cpu_seconds(pg_pids), cpu_seconds([broker.proc.pid]))
        t0 = time.perf_counter()
        a.send(envs)
        t_db = _wait_count(engine, base + n_sustained, timeout=600, edge=a)
        a.deliver_all(timeout=120)
        t_ack = time.perf_counter()
        pg_pids = [postmaster, *child_pids(postmaster)]
        cpu1 = (cpu_seconds(central_pids), cpu_seconds(pg_pids), cpu_seconds([broker.proc.pid]))
        per_msg = [(c1 - c0) / n_sustained * 1000 for c0, c1 in zip(cpu0, cpu1, strict=True)]
        load = os.getloadavg()[0]
        rate = n_sustained / (t_db - t0)
        rows.append(row(f"sustained edge->central into Postgres ({mode})", rate, "corr/s",
                        target=">= 2000", ok=rate >= 2000, higher_is_better=True,
                        notes=f"{n_sustained} signed corrections, {WORKERS} workers, 1 fan-out "
                        f"peer; all acked back after {t_ack - t0:.1f}s; load average "
                        f"{load:.1f} on {os.cpu_count()} cores during the run"))
        rows.append(row(f"central CPU per correction (workers, {mode})", per_msg[0], "ms",
                        notes=f"PostgreSQL {per_msg[1]:.3f} ms, mosquitto {per_msg[2]:.3f} ms "
                        "per correction (CPU time, not wall)"))
        capacity = 2000 / sum(per_msg)  # two free cores' worth of CPU
        rows.append(row(f"capacity of 2 idle cores from CPU cost ({mode})", capacity, "corr/s",
                        target=">= 2000", ok=capacity >= 2000, higher_is_better=True,
                        notes="2 cores / (worker + Postgres + broker CPU per correction): "
                        "what the same code does when it has the machine to itself"))

        # -- backlog after an outage ------------------------------------------------------
        _say(f"[{mode}] backlog phase: broker down, outbox filling")
        broker.stop()
        probe = _envelopes(a, 1)
        backlog = _envelopes(a, n_backlog)  # queued in the edge's outbox meanwhile
        # Held aside while the probe goes alone (deliver_all re-sends every unacked
        # envelope each second: with the backlog in it, that was a storm of duplicates).
        held = {e.message_id: a.outbox.pop(e.message_id) for e in backlog}
        base = _count(engine)
        broker.start()
        t0 = time.perf_counter()
        # The probe, sent again until acked: the workers are back on their sessions (their
        # reconnect backoff counts in the drain time, as it would in the field).
        a.deliver_all(timeout=120, resend_after=1.0)
        t_probe = time.perf_counter() - t0
        a.outbox.update(held)
        a.send(backlog)
        _say(f"[{mode}] backlog sent ({t_probe:.1f}s to the probe's ack)")
        t_db = _wait_count(engine, base + n_backlog + len(probe), timeout=900, edge=a)
        drain = t_db - t0
        scaled = drain * 100_000 / n_backlog
        rows.append(row(f"backlog of {n_backlog} drained after the broker returns ({mode})",
                        drain, "s", target="<= 60 (100k)", ok=scaled <= 60,
                        notes=f"{n_backlog / drain:.0f} corr/s; workers back (probe acked) "
                        f"after {t_probe:.1f}s; load average {os.getloadavg()[0]:.1f}; "
                        f"scaled to 100k: {scaled:.0f}s"
                        + ("" if n_backlog == 100_000 else " (quick size)")))
        a.deliver_all(timeout=300)
        total = _count(engine)
        with engine.connect() as conn:
            distinct = conn.execute(sa.text("SELECT count(DISTINCT id) FROM corrections")
                                    ).scalar_one()
        rows.append(row(f"corrections stored exactly once ({mode})", float(
            total == distinct == len(warm) + n_sustained + n_backlog + 1), "bool",
            ok=total == distinct, notes=f"{total} rows, {distinct} distinct"))
        store = CentralStore(engine)
        dead = store.count("dead_letters")
        rows.append(row(f"dead letters during the run ({mode})", float(dead), "count",
                        ok=dead == 0))
        a.close()
        b.close()
        engine.dispose()
        return rows, url
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.kill()


def run(quick: bool = False) -> list[dict[str, Any]]:
    n_sustained, n_backlog, n_embed = (3_000, 10_000, 300) if quick else (20_000, 100_000, 2_000)
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin)")
    # SIGTERM (e.g. `timeout`) unwinds through the finally below: no server left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="rae-bench-sync-"))
    tmp.chmod(0o755)  # PostgreSQL runs as user postgres when we are root
    pg = PgServer(bin_dir, tmp / "pg")
    rows: list[dict[str, Any]] = []
    try:
        pg.init()
        pg.start()
        # the same run, plain MQTT and then TLS with per-node ACL, side by side
        plain, url = _throughput(tmp / "plain", pg, tls=False, n_sustained=n_sustained,
                                 n_backlog=n_backlog)
        secure, _ = _throughput(tmp / "tls", pg, tls=True, n_sustained=n_sustained,
                                n_backlog=n_backlog)
        for a_row, b_row in zip(plain, secure, strict=True):
            rows += [b_row, a_row]
        engine = make_engine(url)

        _say("vector phase")
        # -- Qdrant beside it -------------------------------------------------------------
        emb = default_embedder()
        vs = VectorStore(str(tmp / "qdrant"), embedder_tag=emb.tag, dim=emb.dim)
        with engine.begin() as conn:  # index only n_embed rows: leave the rest marked done
            conn.execute(sa.text(
                "UPDATE corrections SET embedded_at = now() WHERE id NOT IN "
                "(SELECT id FROM corrections ORDER BY received_at DESC LIMIT :n)"),
                {"n": n_embed})
        idx = VectorIndexer(engine, vs, emb, batch_size=256)
        t0 = time.perf_counter()
        done = idx.drain(timeout_s=900)
        wall = time.perf_counter() - t0
        vs.close()
        rows.append(row("vector indexer (embed + local Qdrant upsert)", done / wall, "pts/s",
                        higher_is_better=True,
                        notes=f"{done} corrections; embed {idx.stats.embed_s:.1f}s, upsert "
                        f"{idx.stats.upsert_s:.1f}s; off the ack path (background thread)"))
        rows.append(row("local Qdrant folder upsert alone", done / idx.stats.upsert_s,
                        "pts/s", higher_is_better=True))
        mem = VectorStore(":memory:", embedder_tag="random", dim=384)
        rng = np.random.default_rng(0)
        n_mem = 5_000 if quick else 20_000
        vecs = rng.standard_normal((n_mem, 384)).astype(np.float32)
        t0 = time.perf_counter()
        for i in range(0, n_mem, 500):
            mem.upsert([VectorPoint("acme", "correction", f"c{j}", vecs[j])
                        for j in range(i, min(i + 500, n_mem))])
        mem_rate = n_mem / (time.perf_counter() - t0)
        mem.close()
        rows.append(row("in-memory Qdrant upsert (random vectors)", mem_rate, "pts/s",
                        higher_is_better=True, baseline="issue: 100k in 12s",
                        baseline_value=100_000 / 12))
        engine.dispose()
        return rows
    finally:
        pg.destroy()


if __name__ == "__main__":
    main_for(run)
