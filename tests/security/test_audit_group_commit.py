"""The audit log's group commit: many concurrent callers share transactions yet each
returns only with its own entry committed; a failed write leaves no trace in the chain
and the next append continues it from what is on disk."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rae_edge.audit import AuditLog
from rae_edge.store.duck import DuckStore


def test_concurrent_callers_each_get_their_committed_entry(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "node.duckdb")
    log, other = AuditLog(duck), AuditLog(duck, outbox=True)  # two logs, one chain
    got: list[tuple[int, int, str]] = []
    lock = threading.Lock()

    def caller(k: int) -> None:
        for i in range(20):
            e = (other if k % 2 else log).record("acme" if i % 3 else "globex", f"t{k}",
                                                 "GET /x", f"{k}:{i}")
            with lock:
                got.append((k, e.seq, e.resource))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for _, s, _ in got) == list(range(1, 161))  # one seq each, no gap
    stored = {e.seq: e.resource for e in log.entries(limit=1000)}
    assert all(stored[s] == r for _, s, r in got)  # each caller's seq holds its own entry
    assert log.verify().ok
    assert sum(1 for *_, kind, _ in duck.outbox_peek(1000) if kind == "audit_entry") == 80
    duck.close()


def test_failed_write_is_not_in_the_chain_and_the_next_continues(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "node.duckdb")
    log = AuditLog(duck)
    log.record("acme", "t", "GET /a")
    duck.query("ALTER TABLE audit_log RENAME TO audit_away")
    with pytest.raises(Exception, match="audit_log"):
        log.record("acme", "t", "GET /b")
    duck.query("ALTER TABLE audit_away RENAME TO audit_log")
    e = log.record("acme", "t", "GET /c")
    assert e.seq == 2
    assert [x.action for x in log.entries()] == ["GET /a", "GET /c"]
    assert log.verify().ok
    duck.close()


def test_a_store_reopened_continues_the_chain_on_disk(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "node.duckdb")
    AuditLog(duck).record("acme", "t", "GET /a")
    AuditLog(duck).record("globex", "t", "GET /b")
    duck.close()
    duck = DuckStore(tmp_path / "node.duckdb")
    log = AuditLog(duck)
    e = log.record("acme", "t", "GET /c")
    assert e.seq == 3 and e.prev_hash == log.entries("acme")[0].hash
    assert log.verify().ok
    duck.close()
