"""The committed JSON Schemas match the message classes, validate real messages, and the
CI check fails (naming the file) when they are stale."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema_rs
import pytest

from rae_sync import schemas
from rae_sync.envelope import seal
from rae_sync.messages import MESSAGE_CLASSES, CorrectionMsg
from rae_sync.signing import generate_key
from rae_sync.topics import Direction
from tests.conftest import ROOT
from tests.sync.test_protocol import CORRECTION, _examples

SCHEMA_DIR = ROOT / "sync" / "schemas"
SCRIPT = ROOT / "scripts" / "check_schemas.py"


def test_committed_schemas_are_current() -> None:
    assert schemas.stale(SCHEMA_DIR) == []
    names = {p.name for p in SCHEMA_DIR.glob("*.json")}
    assert {f"{c.TYPE}.json" for c in MESSAGE_CLASSES} | {"envelope.json"} <= names


def test_schemas_validate_the_wire_form() -> None:
    for msg, _ in _examples():
        schema = json.loads((SCHEMA_DIR / f"{msg.TYPE}.json").read_text())
        validator = jsonschema_rs.validator_for(schema)
        assert validator.is_valid(json.loads(msg.model_dump_json())), msg
    env = seal(CorrectionMsg(correction=CORRECTION), key=generate_key(), tenant_id="acme",
               site_id="p1", node_id="n1", direction=Direction.UP, seq=1,
               hlc="1764000000000-000000")
    env_schema = jsonschema_rs.validator_for(json.loads((SCHEMA_DIR / "envelope.json").read_text()))
    assert env_schema.is_valid(json.loads(env.encode()))
    assert not env_schema.is_valid({"schema_version": 1})
    corr = jsonschema_rs.validator_for(json.loads((SCHEMA_DIR / "correction.json").read_text()))
    assert not corr.is_valid({"correction": {"text": "x"}})


def _check(folder: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--dir", str(folder), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_check_script_fails_when_stale_and_write_fixes_it(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    shutil.copytree(SCHEMA_DIR, folder)
    assert _check(folder).returncode == 0
    ack = folder / "ack.json"
    ack.write_text(ack.read_text().replace('"seqs"', '"sequence_numbers"'))
    (folder / "gone.json").write_text("{}")
    (folder / "incident.json").unlink()
    res = _check(folder)
    assert res.returncode == 1
    assert "ack.json is stale" in res.stderr
    assert "incident.json is missing" in res.stderr
    assert "gone.json is not generated" in res.stderr
    assert "--write" in res.stderr
    assert _check(folder, "--write").returncode == 0
    assert _check(folder).returncode == 0
    assert not (folder / "gone.json").exists()


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_each_schema_names_its_type(cls: type) -> None:
    schema = json.loads((SCHEMA_DIR / f"{cls.TYPE}.json").read_text())  # type: ignore[attr-defined]
    assert schema["title"] == cls.__name__
