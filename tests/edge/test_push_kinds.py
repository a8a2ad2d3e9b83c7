"""Typed push messages: the committed JSON Schemas (sync/schemas/push/) match the classes,
the messages a real write stores validate against them (and a payload with a field not
declared does not), and the CI check names a stale push schema."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema_rs

from rae_edge import config, push_kinds, push_schemas
from rae_edge.node import EdgeNode
from rae_edge.write import CorrectionFacts, IncidentFacts
from rae_sync.domain import Correction, Incident, Machine
from tests.conftest import ROOT

PUSH_DIR = ROOT / "sync" / "schemas" / push_kinds.SCHEMA_SUBDIR


def _validator(type_: str) -> object:
    return jsonschema_rs.validator_for(json.loads((PUSH_DIR / f"{type_}.json").read_text()))


def test_committed_push_schemas_are_current() -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in PUSH_DIR.glob("*.json")}
    generated = {n: push_schemas.render(s) for n, s in push_schemas.generate().items()}
    assert committed == generated
    assert sorted(committed) == sorted(f"{c.TYPE}.json" for c in push_schemas.all_push_classes())


def test_stored_pushes_validate_against_their_schema(tmp_path: Path) -> None:
    node = EdgeNode(config.load(None, data_dir=tmp_path / "n", node={"tenant_id": "acme"}))
    try:
        node.duck.upsert_machines([Machine(tenant_id="acme", id="M1", name="M1",
                                           qr_code="QR-M1")])
        inc = Incident(tenant_id="acme", machine_id="M1", error_code="E1", symptom="jams",
                       occurred_at=datetime(2026, 1, 2, tzinfo=UTC))
        node.writer.write(IncidentFacts(announce=node.memory._incident_push), [inc], "api")
        node.writer.write(CorrectionFacts(), [Correction(
            tenant_id="acme", machine_id="M1", text="belt was loose", author="ana",
            target_id=inc.id)], "typed")
        node.memory.briefing("acme", "QR-M1")
        assert node.push.flush(10)
        stored = node.push.since("acme", [], 0)
    finally:
        node.close()
    assert [m.type for m in stored] == ["incident", "correction", "briefing"]
    for m in stored:
        v = _validator(m.type)
        assert v.is_valid(m.payload), (m.type, m.payload)  # type: ignore[attr-defined]
        assert not v.is_valid({**m.payload, "undeclared": 1})  # type: ignore[attr-defined]


def test_check_script_names_a_stale_push_schema(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    shutil.copytree(ROOT / "sync" / "schemas", folder)
    run = [sys.executable, str(ROOT / "scripts" / "check_schemas.py"), "--dir", str(folder)]
    assert subprocess.run(run, capture_output=True, text=True, cwd=ROOT,
                          timeout=120).returncode == 0
    (folder / "push" / "correction.json").unlink()
    res = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 1 and "push/correction.json is missing" in res.stderr
