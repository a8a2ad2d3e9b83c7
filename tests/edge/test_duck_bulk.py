"""DuckStore's set-based paths: the bulk incident insert (duplicates in the batch and in
the store skipped, outbox rows in input order, all in one transaction) and the per-tenant
machine cache (a changed QR code is seen at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rae_edge.store.duck import DuckStore
from rae_sync.domain import Incident, Machine


def _inc(i: int, machine: str = "M1", tenant: str = "acme") -> Incident:
    return Incident(tenant_id=tenant, machine_id=machine,
                    occurred_at=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
                    error_code="E404" if i % 2 else None, symptom=f"pump {i} leaking",
                    action="replaced seal", source="log.csv")


def test_bulk_insert_skips_duplicates_and_queues_in_order(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "n.duckdb")
    first = [_inc(i) for i in range(300)]
    added = duck.insert_incidents(first + first[:10], outbox=True)  # repeats in the batch
    assert [i.id for i in added] == [i.id for i in first]
    again = duck.insert_incidents([*first[100:120], _inc(1000), _inc(0, tenant="globex")],
                                  outbox=True)
    assert [i.id for i in again] == [_inc(1000).id, _inc(0, tenant="globex").id]
    assert duck.query("SELECT count(*) FROM incidents")[0][0] == 302
    stored = duck.get_incident("acme", first[7].id)
    assert stored == first[7]  # every field (time zone, null code) read back as written
    queued = duck.outbox_peek(1000)
    assert [p["id"] for _, _, kind, p in queued if kind == "incident"] == \
        [i.id for i in first] + [i.id for i in again]
    duck.close()


def test_bulk_insert_is_one_transaction(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "n.duckdb")
    duck.query("DROP TABLE outbox")  # the outbox insert, last in the transaction, fails
    with pytest.raises(Exception, match="outbox"):
        duck.insert_incidents([_inc(i) for i in range(50)], outbox=True)
    assert duck.query("SELECT count(*) FROM incidents")[0][0] == 0  # nothing half-stored
    duck.close()


def test_machine_cache_sees_upserts_at_once(tmp_path: Path) -> None:
    duck = DuckStore(tmp_path / "n.duckdb")
    duck.upsert_machines([Machine(tenant_id="acme", id="M1", name="Press", qr_code="QR-1"),
                          Machine(tenant_id="globex", id="M1", name="Other", qr_code="QR-9")])
    m = duck.find_machine_by_qr("acme", "QR-1")
    assert m is not None and m.name == "Press"
    assert duck.find_machine_by_qr("acme", "M1") == m  # by id when no QR code matches
    assert duck.find_machine_by_qr("acme", "QR-9") is None  # another tenant's label
    duck.upsert_machines([Machine(tenant_id="acme", id="M1", name="Press 2", qr_code="QR-2")])
    assert duck.find_machine_by_qr("acme", "QR-1") is None
    m2 = duck.get_machine("acme", "M1")
    assert m2 is not None and (m2.name, m2.qr_code) == ("Press 2", "QR-2")
    assert duck.find_machine_by_qr("acme", "QR-2") == m2
    duck.upsert_machines([Machine(tenant_id="acme", id="M2", name="Lathe", qr_code="M1")])
    # A QR code that is another machine's id: the QR code wins, as before the cache.
    found = duck.find_machine_by_qr("acme", "M1")
    assert found is not None and found.id == "M2"
    duck.close()
