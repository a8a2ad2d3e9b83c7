"""The edge stores: migrations, durability across a hard kill, idempotence, validity."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from rae_edge import config
from rae_edge.errors import SchemaTooNewError
from rae_edge.node import EdgeNode
from rae_edge.store.duck import DuckStore
from rae_edge.store.migrations import SCHEMA_VERSION
from rae_sync.domain import Correction, Incident, Machine

T0 = datetime(2026, 11, 12, 8, 0, tzinfo=UTC)


def incident(**kw: object) -> Incident:
    base: dict[str, object] = dict(tenant_id="acme", machine_id="M1", occurred_at=T0,
                                   error_code="E404", symptom="sensor X fault",
                                   action="replaced sensor X")
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_fresh_store_is_migrated_to_current_version(tmp_path: Path) -> None:
    store = DuckStore(tmp_path / "n.duckdb")
    assert store.schema_version() == SCHEMA_VERSION
    tables = {r[0] for r in store.query("SELECT table_name FROM information_schema.tables")}
    assert {"machines", "incidents", "corrections", "audit_log", "outbox", "tokens"} <= tables
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    store = DuckStore(tmp_path / "n.duckdb")
    store.query("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                [str(SCHEMA_VERSION + 1)])
    store.close()
    with pytest.raises(SchemaTooNewError, match="newer release"):
        DuckStore(tmp_path / "n.duckdb")


def test_older_schema_is_migrated_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rae_edge.store import duck, migrations

    DuckStore(tmp_path / "n.duckdb").close()
    extra = [*migrations.MIGRATIONS, (SCHEMA_VERSION + 1, "ALTER TABLE machines ADD COLUMN x INT")]
    monkeypatch.setattr(duck, "MIGRATIONS", extra)
    monkeypatch.setattr(duck, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    store = DuckStore(tmp_path / "n.duckdb")
    assert store.schema_version() == SCHEMA_VERSION + 1
    cols = {r[0] for r in store.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'machines'")}
    assert "x" in cols
    store.close()


def test_incident_insert_is_idempotent_by_content_hash(node: EdgeNode) -> None:
    a = incident()
    again = incident(symptom="  Sensor X   FAULT ")  # same content, other spacing and case
    assert a.id == again.id
    assert [i.id for i in node.duck.insert_incidents([a, again])] == [a.id]
    assert node.duck.insert_incidents([a]) == []
    other = incident(action="cleaned the lens")
    assert node.duck.insert_incidents([other]) == [other]
    assert len(node.duck.incidents_for_machine("acme", "M1")) == 2


def test_incidents_never_cross_machines_or_tenants(node: EdgeNode) -> None:
    node.duck.insert_incidents([incident(), incident(machine_id="M2"),
                                incident(tenant_id="other")])
    mine = node.duck.incidents_for_machine("acme", "M1")
    assert [(i.tenant_id, i.machine_id) for i in mine] == [("acme", "M1")]


def test_correction_validity_window_and_as_of(node: EdgeNode) -> None:
    fix = incident()
    node.duck.insert_incidents([fix])
    t1 = T0 + timedelta(days=3)
    c1 = Correction(tenant_id="acme", machine_id="M1", text="sensor X was actually loose",
                    author="ana", target_id=fix.id, valid_from=t1)
    t2 = T0 + timedelta(days=5)
    c2 = Correction(tenant_id="acme", machine_id="M1", text="connector corroded, not loose",
                    author="raj", target_id=fix.id, valid_from=t2)
    assert node.duck.insert_correction(c1) and node.duck.insert_correction(c2)
    assert not node.duck.insert_correction(c1)  # same correction twice is one
    # The fix is never deleted; what amends it depends on the moment asked about.
    assert node.duck.get_incident("acme", fix.id) == fix
    assert node.duck.corrections_for_targets("acme", [fix.id], as_of=T0 + timedelta(days=1)) == {}
    at4 = node.duck.corrections_for_targets("acme", [fix.id], as_of=T0 + timedelta(days=4))
    assert [c.id for c in at4[fix.id]] == [c1.id]
    now = node.duck.corrections_for_targets("acme", [fix.id])
    assert [c.id for c in now[fix.id]] == [c1.id, c2.id]  # both survive, in order
    # Each correction entered the sync outbox with it.
    assert [k for _, _, k, _ in node.duck.outbox_peek(10)] == ["correction", "correction"]


def test_correction_window_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="valid_to must be after valid_from"):
        Correction(tenant_id="acme", machine_id="M1", text="x", author="a",
                   valid_from=T0, valid_to=T0 - timedelta(seconds=1))


def test_acknowledged_writes_survive_a_kill_9(tmp_path: Path) -> None:
    """A child process writes, reports each acknowledged write, then is killed -9."""
    data = tmp_path / "node"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from datetime import UTC, datetime
        from rae_edge import config
        from rae_edge.node import EdgeNode
        from rae_sync.domain import Incident, Machine
        node = EdgeNode(config.load(None, data_dir={str(data)!r}, node={{"tenant_id": "acme"}}))
        node.duck.upsert_machines([Machine(tenant_id="acme", id="M1", name="P", qr_code="Q1")])
        for i in range(50):
            node.duck.insert_incidents([Incident(tenant_id="acme", machine_id="M1",
                occurred_at=datetime(2026, 1, 1, tzinfo=UTC), symptom=f"fault {{i}}")])
            print(i, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9
    acked = [int(x) for x in proc.stdout.split()]
    assert acked == list(range(50))
    node = EdgeNode(config.load(None, data_dir=data))
    assert len(node.duck.incidents_for_machine("acme", "M1")) == 50
    assert node.duck.get_machine("acme", "M1") == Machine(tenant_id="acme", id="M1", name="P",
                                                          qr_code="Q1")
    node.close()


def test_unknown_config_key_is_named(tmp_path: Path) -> None:
    f = tmp_path / "edge.yaml"
    f.write_text("api:\n  port: 9000\n  colour: blue\n")
    with pytest.raises(ValidationError, match="colour"):
        config.load(f)


def test_config_layers_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "edge.yaml"
    f.write_text("api:\n  port: 9000\n  host: 0.0.0.0\nnode:\n  tenant_id: fromfile\n")
    monkeypatch.setenv("RAE_API__PORT", "9100")
    s = config.load(f)
    assert (s.api.port, s.api.host, s.node.tenant_id) == (9100, "0.0.0.0", "fromfile")
    assert config.load(f, api={"port": 9200}).api.port == 9200
