"""The audit log's hash chain: appends verify; any edit, deletion or reordering done
directly in DuckDB makes ``rae-edge audit verify`` exit non-zero naming the first broken seq."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rae_edge.audit import GENESIS, AuditLog, stored_ids
from rae_edge.store.duck import DuckStore
from tests.security.serve import rae_edge_inproc

RAE_EDGE = [sys.executable, "-m", "rae_tablet_api.cli"]


def _seed(data_dir: Path, n: int = 8) -> None:
    duck = DuckStore(data_dir / "node.duckdb")
    log = AuditLog(duck)
    for i in range(n):
        tenant = "acme" if i % 3 else "globex"
        log.record(tenant, f"tok:{i:04x}", "GET /api/v1/search", f"200 q=pump {i}",
                   [f"inc_{i}", f"man_{i}"])
    duck.close()


def _verify(data_dir: Path, capsys: Any = None) -> subprocess.CompletedProcess[str]:
    """``rae-edge audit verify``: as a real process, or in this process given ``capsys``."""
    if capsys is not None:
        return rae_edge_inproc(capsys, "audit", "verify", "--data-dir", str(data_dir))
    return subprocess.run([*RAE_EDGE, "audit", "verify", "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


def _tamper(data_dir: Path, *sql: str) -> None:
    con = duckdb.connect(str(data_dir / "node.duckdb"))
    for s in sql:
        con.execute(s)
    con.close()


def test_intact_log_verifies(tmp_path: Path) -> None:
    _seed(tmp_path)
    r = _verify(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "8 entries checked" in r.stdout


TAMPERINGS: dict[str, tuple[list[str], int]] = {
    # name: (SQL run directly on the file, the first seq verify must name)
    "edit_resource": (["UPDATE audit_log SET resource = '200 q=nothing' WHERE seq = 4"], 4),
    "edit_memory_ids": (["""UPDATE audit_log SET memory_ids = '["inc_x"]' WHERE seq = 2"""], 2),
    "edit_actor_and_rehash_nothing_else": (
        ["UPDATE audit_log SET actor = 'tok:ffff' WHERE seq = 6"], 6),
    "delete_middle": (["DELETE FROM audit_log WHERE seq = 5"], 5),
    "delete_newest": (["DELETE FROM audit_log WHERE seq >= 7"], 7),
    "reorder_swap_seq": ([
        "UPDATE audit_log SET seq = 100 WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = 100",
    ], 3),
    "delete_all": (["DELETE FROM audit_log"], 1),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_tampering_is_detected(tmp_path: Path, name: str, capsys: Any) -> None:
    _seed(tmp_path)
    sql, first_broken = TAMPERINGS[name]
    _tamper(tmp_path, *sql)
    # One case as a real process (its exit status), the rest in this process (quicker).
    r = _verify(tmp_path, None if name == "delete_middle" else capsys)
    assert r.returncode == 1, (name, r.stdout, r.stderr)
    assert f"BROKEN at seq {first_broken}" in r.stderr, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["first_broken_seq"] == first_broken


def test_rehashed_edit_is_still_detected(tmp_path: Path) -> None:
    """An editor who recomputes the edited entry's own hash still breaks the next link."""
    _seed(tmp_path)
    duck = DuckStore(tmp_path / "node.duckdb")
    row = duck.query_dicts("SELECT * FROM audit_log WHERE seq = 4")[0]
    from rae_sync.domain import AuditEntry
    forged = AuditEntry.compute_hash(row["prev_hash"], 4, row["at"], row["tenant_id"],
                                     row["actor"], row["action"], "200 q=forged",
                                     stored_ids(row["memory_ids"]))
    duck.query("UPDATE audit_log SET resource = '200 q=forged', hash = ? WHERE seq = 4", [forged])
    report = AuditLog(duck).verify()
    duck.close()
    assert not report.ok
    assert report.first_broken_seq is not None and report.first_broken_seq > 4


def test_concurrent_writers_do_not_fork_the_chain(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "node.duckdb")
    log = AuditLog(duck)
    errors: list[BaseException] = []

    def writer(k: int) -> Callable[[], None]:
        def run() -> None:
            try:
                for i in range(25):
                    log.record("acme" if i % 2 else "globex", f"tok:{k}", "POST /x", str(i))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
        return run

    threads = [threading.Thread(target=writer(k)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = log.verify()
    assert report.ok, report
    assert report.checked == 150
    links = [e.prev_hash for e in log.entries(limit=1000) if e.prev_hash != GENESIS]
    assert len(links) == 148  # one genesis per tenant
    assert len(links) == len(set(links)), "two entries chain to the same predecessor"
    duck.close()


def test_audit_entries_can_be_queued_for_sync(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "node.duckdb")
    entry = AuditLog(duck, outbox=True).record("acme", "tok:1", "GET /api/v1/context", "200",
                                               ["inc_1"])
    (_seq, tenant, kind, payload), = duck.outbox_peek(10)
    duck.close()
    assert (tenant, kind) == ("acme", "audit_entry")
    assert payload["hash"] == entry.hash and payload["memory_ids"] == ["inc_1"]


def test_central_verifies_the_synced_chain(tmp_path: Path) -> None:
    """What the edge queues for sync verifies at central; a lost or edited entry does not."""
    from rae_central.audit_chain import verify_chain
    from rae_sync.domain import AuditEntry

    duck = DuckStore(tmp_path / "node.duckdb")
    log = AuditLog(duck, outbox=True)
    for i in range(6):
        log.record("acme" if i % 2 else "globex", "tok:1", "GET /api/v1/search", str(i),
                   [f"inc_{i}"])
    sent = [AuditEntry(**p) for _, _, kind, p in duck.outbox_peek(100) if kind == "audit_entry"]
    duck.close()
    acme = [e for e in sent if e.tenant_id == "acme"]
    assert len(acme) == 3
    assert verify_chain(reversed(acme)).ok  # arrival order does not matter
    assert verify_chain(acme[1:], start_hash=acme[0].hash).ok  # batch by batch
    lost = verify_chain([acme[0], acme[2]])
    assert not lost.ok and lost.first_broken_seq == acme[2].seq
    edited = [acme[0], acme[1].model_copy(update={"resource": "999"}), acme[2]]
    bad = verify_chain(edited)
    assert not bad.ok and bad.first_broken_seq == acme[1].seq
    mixed = verify_chain(sent)
    assert not mixed.ok and "belongs to tenant" in mixed.reason


def test_one_tenants_chain_verifies_on_its_own(tmp_path: Path) -> None:
    _seed(tmp_path)  # seqs 1, 4, 7 are globex's; the rest acme's
    _tamper(tmp_path, "DELETE FROM audit_log WHERE seq = 4")
    duck = DuckStore(tmp_path / "node.duckdb")
    log = AuditLog(duck)
    acme, globex, whole = log.verify("acme"), log.verify("globex"), log.verify()
    duck.close()
    assert acme.ok and acme.checked == 5  # another tenant's loss is not acme's break
    assert not globex.ok and globex.first_broken_seq == 7
    assert not whole.ok and whole.first_broken_seq == 4
