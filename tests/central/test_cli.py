"""``rae-central migrate / enroll / revoke`` on a real PostgreSQL, and the settings tree."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from rae_central import config
from rae_central.cli import main
from rae_central.db.engine import make_engine
from rae_central.store import CentralStore
from rae_sync.identity import NodeIdentity
from rae_sync.signing import load_private_key


def test_migrate_enroll_revoke(pg_url: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "central.pem"
    out = tmp_path / "node.json"
    common = ["--database-url", pg_url, "--signing-key", str(key)]
    node = ["--tenant", "acme", "--site", "plant-1", "--node", "node-1"]
    # enrolling before the schema exists says what to do
    assert main(["enroll", *common, *node, "--out", str(out)]) == 2
    assert "rae-central migrate" in capsys.readouterr().err
    assert main(["migrate", *common]) == 0
    assert main(["enroll", *common, *node, "--out", str(out)]) == 0
    ident = NodeIdentity.load(out)
    assert ident.node == ("acme", "plant-1", "node-1")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    # the identity trusts central's key, and central registered the node's public key
    central_pub = load_private_key(key.read_bytes()).public_key()
    assert ident.central_public_key.public_bytes_raw() == central_pub.public_bytes_raw()
    engine = make_engine(pg_url)
    assert CentralStore(engine).active_keys()[ident.node] == ident.public_key_pem
    assert main(["enroll", *common, *node, "--out", str(out)]) == 2  # no silent overwrite
    assert "--force" in capsys.readouterr().err
    assert main(["revoke", *common, *node]) == 0
    assert CentralStore(engine).node_state(ident.node) == "revoked"
    assert main(["revoke", *common, "--tenant", "acme", "--site", "x", "--node", "y"]) == 2
    assert "no enrolled node acme/x/y" in capsys.readouterr().err
    engine.dispose()


def test_settings_reject_unknown_keys_and_read_env(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "central.yaml"
    f.write_text("ingest:\n  workers: 3\n  batchsize: 10\n")
    with pytest.raises(ValueError, match="batchsize"):
        config.load(f)
    f.write_text("ingest:\n  workers: 3\nadmin:\n  port: 9000\n")
    monkeypatch.setenv("RAE_CENTRAL_ADMIN__TOKEN", "s3cret")
    monkeypatch.setenv("RAE_CENTRAL_INGEST__WORKERS", "4")
    s = config.load(f, admin={"port": 9100})
    assert s.ingest.workers == 4 and s.admin.port == 9100
    assert s.admin.token is not None and s.admin.token.get_secret_value() == "s3cret"
